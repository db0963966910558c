"""The app under test as an inventory names it, and the pieces that carry its tasks: pure logic."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from chaoslab.app_spec import AppSpec, errors, parse
from chaoslab.ledger import task_kind
from chaoslab.node.load_mix import MixEntry, mix_entry
from chaoslab.node.publisher import MessageTemplate
from chaoslab.node.worker_ledger import canvas_ids
from tests.conftest import ROOT


def test_an_app_spec():
    assert parse({}) is None and parse(None) is None
    spec = parse({"app": "shop.celery:app", "source": "../shop", "requirements": ["requests==2.32.3",
                                                                                   "boto3[crt]>=1.34"]})
    assert spec == AppSpec("shop.celery:app", "../shop", ("requests==2.32.3", "boto3[crt]>=1.34"))
    assert parse({"app": "shop", "source": "/srv/shop"}).requirements == ()
    assert parse({"app": "shop", "source": "/srv/shop"}).kind == "directory"
    assert parse({"app": "shop", "source": "dist/shop-1.0-py3-none-any.whl"}).kind == "distribution"
    assert parse({"app": "shop", "source": "dist/shop-1.0.tar.gz"}).kind == "distribution"
    assert parse({"app": "shop", "package": "shop-app==1.2"}) == AppSpec("shop", package="shop-app==1.2")


@pytest.mark.parametrize(("spec", "message"), [
    (["shop"], "must be a mapping with keys from app, source, package, requirements"),
    ({"app": "shop:app", "source": "s", "version": 1},
     "version: unknown key (allowed: app, source, package, requirements)"),
    ({"source": "s"}, "app: missing (required)"),
    ({"app": "shop:app"}, "source: give a source (a directory, a wheel or an sdist) or a package, one of them"),
    ({"app": "shop:app", "source": "s", "package": "shop==1"}, "source: give a source (a directory, a wheel or an"),
    ({"app": "shop:app", "package": "--index-url=http://198.18.0.9/ shop"},
     "package: a requirement such as requests==2.32.3 (no pip options)"),
    ({"app": "shop:app", "package": "shop @ https://198.18.0.9/shop.whl"},
     "package: a requirement by name and version, not by URL"),
    ({"app": "shop:app:x", "source": "s"}, "app: name the Celery app as celery -A takes it"),
    ({"app": "shop; id", "source": "s"}, "app: name the Celery app as celery -A takes it"),
    ({"app": "{{ lookup('pipe', 'id') }}", "source": "s"}, "app: name the Celery app as celery -A takes it"),
    ({"app": "shop:app", "source": "-rf"},
     "source: a directory's or a distribution's path (printable, not starting with '-')"),
    ({"app": "shop:app", "source": "a\nb"}, "source: a directory's or a distribution's path"),
    ({"app": "shop:app", "source": "s", "requirements": "requests"}, "requirements: must be a list"),
    ({"app": "shop:app", "source": "s", "requirements": ["-e ."]}, "requirements[0]: a requirement such as"),
    ({"app": "shop:app", "source": "s", "requirements": ["requests>=>1"]}, "requirements[0]: "),
    ({"app": "shop:app", "source": "s", "requirements": ["x @ https://198.18.0.9/x.whl"]},
     "requirements[0]: a requirement by name and version, not by URL"),
])
def test_bad_app_specs_get_one_line_naming_the_key(spec, message):
    found = errors(spec)
    assert found.startswith(message) and "\n" not in found, found


def test_task_kinds_in_the_ledger():
    assert task_kind("chaoslab.cpu") == "cpu"
    assert task_kind("shop.tasks.charge") == "shop.tasks.charge"


def test_an_app_task_in_the_mix_round_trips_and_is_published_with_its_arguments():
    entry = mix_entry({"task": "shop.tasks.charge", "weight": 2, "args": [7, "EUR"], "kwargs": {"retry": True}})
    assert entry == MixEntry("shop.tasks.charge", 2.0, {"retry": True}, "shop.tasks.charge", (7, "EUR"))
    assert mix_entry(entry.to_data()) == entry and entry.task_name == "shop.tasks.charge"
    lab = mix_entry({"kind": "sleep", "args": {"ms": 5}})
    assert lab.task_name == "chaoslab.sleep" and mix_entry(lab.to_data()) == lab
    message = json.loads(MessageTemplate(entry.task_name, entry.args, "celery", "o", "r", entry.positional)
                         .render("id-1"))
    args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    assert (args, kwargs) == ([7, "EUR"], {"retry": True})
    assert message["headers"]["task"] == "shop.tasks.charge" and message["headers"]["argsrepr"] == "(7, 'EUR')"


def test_canvas_ids_of_an_execution():
    alone = SimpleNamespace(id="a", parent_id=None, root_id="a", group=None)
    assert canvas_ids(alone) == {}
    link = SimpleNamespace(id="c", parent_id="b", root_id="a", group=None)
    assert canvas_ids(link) == {"parent": "b", "root": "a"}
    header = SimpleNamespace(id="h", parent_id=None, root_id="h", group="g")
    assert canvas_ids(header) == {"group": "g"}


def test_the_example_app_is_checked_as_a_worker_node_would(tmp_path):
    """app_check imports examples/minimal with nothing of the lab on its path but the checker itself."""
    run = subprocess.run([sys.executable, "-m", "chaoslab.node.app_check", "minimal_app:app"],
                         cwd=ROOT / "examples" / "minimal", env={"PYTHONPATH": f"{ROOT / 'examples' / 'minimal'}:"
                                                                             f"{ROOT / 'app'}"},
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads(run.stdout)["tasks"] == ["minimal_app.add"]
    wrong = subprocess.run([sys.executable, "-m", "chaoslab.node.app_check", "minimal_app:nope"],
                           cwd=ROOT / "examples" / "minimal", env={"PYTHONPATH": f"{ROOT / 'app'}:."},
                           capture_output=True, text=True, timeout=60, check=False)
    assert (wrong.returncode, wrong.stdout.strip()) == (1, "app minimal_app:nope: module minimal_app has no nope")


def test_the_lab_puts_its_own_on_top_of_the_apps_configuration(tmp_path, monkeypatch):
    """What the app's code configures stays, unless the run gives the setting; what the lab owns is the lab's."""
    from chaoslab.node.app_under_test import load
    from chaoslab.node.config import LabConfig

    (tmp_path / "shop_app.py").write_text(
        "from celery import Celery\n"
        "app = Celery('shop', broker='redis://localhost:6379/5')\n"
        "app.conf.update(worker_prefetch_multiplier=1, task_acks_late=False, worker_send_task_events=False,\n"
        "                broker_transport_options={'visibility_timeout': 43200, 'polling_interval': 0.5})\n"
        "@app.task\n"
        "def charge(amount):\n"
        "    return amount\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    lab = LabConfig(node="worker-1", broker_url="redis://198.18.0.10:6379/0",
                    result_backend="redis://198.18.0.10:6379/1",
                    celery={"worker_prefetch_multiplier": 4, "visibility_timeout": 3600, "task_acks_late": True},
                    given={"task_acks_late": True, "visibility_timeout": 60}, app="shop_app:app")
    app = load(lab)
    assert (app.conf.broker_url, app.conf.result_backend) == (lab.broker_url, lab.result_backend)
    assert app.conf.task_acks_late is True  # the run gave it
    assert app.conf.worker_prefetch_multiplier == 1  # the app's own: the lab's default for its own app does not apply
    assert app.conf.worker_send_task_events is True and app.conf.result_extended is True  # the lab's
    assert app.conf.broker_transport_options == {"visibility_timeout": 60, "polling_interval": 0.5}
    assert app.conf.chaoslab_given == lab.given and "shop_app.charge" in app.tasks


def test_an_app_that_renames_the_brokers_keys_is_refused_before_its_worker_runs(tmp_path):
    (tmp_path / "keyed_app.py").write_text(
        "from celery import Celery\n"
        "app = Celery('keyed')\n"
        "app.conf.broker_transport_options = {'global_keyprefix': 'shop:'}\n")
    run = subprocess.run([sys.executable, "-m", "chaoslab.node.app_check", "keyed_app:app"], cwd=tmp_path,
                         env={"PYTHONPATH": f"{tmp_path}:{ROOT / 'app'}"}, capture_output=True, text=True, timeout=60,
                         check=False)
    assert run.returncode == 1
    assert run.stdout.strip().startswith("app keyed_app:app: broker_transport_options.global_keyprefix: the lab reads "
                                         "the broker's keys by kombu's default names")
