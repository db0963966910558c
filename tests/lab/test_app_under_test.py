"""A user's own Celery app under test, unchanged: examples/minimal (one module, one task, no lab code) runs on the
lab's workers, every task of it is in the ledger, and bad app specs stop before anything changes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from chaoslab.experiment.lab import LabControl, lab_info
from chaoslab.ledger import LedgerWriter, read_records
from chaoslab.node.loadgen import LoadGenerator, LoadProfile, MixEntry
from chaoslab.node.publisher import Publisher
from lab_state import service_pid, service_processes, snapshot
from tests.conftest import ROOT, run_playbook

MINIMAL = {"app": "minimal_app:app", "source": "examples/minimal"}
WORKERS = ("worker-1", "worker-2")


def ledger(node: str) -> Path:
    return Path(f"/var/lib/chaoslab/nodes/{node}/ledger/{node}.jsonl")


def ends_of(ids: set[str], sizes: dict[str, int], timeout: float = 30.0) -> dict[str, dict]:
    """The end records of *ids* the workers write after the ledger sizes *sizes*, once all are there or *timeout*
    passed."""
    deadline = time.monotonic() + timeout
    ends: dict[str, dict] = {}
    while time.monotonic() < deadline and set(ends) != ids:
        time.sleep(1)
        for worker in WORKERS:
            with ledger(worker).open("rb") as handle:
                handle.seek(sizes[worker])
                lines = handle.read().decode().splitlines()
            for line in lines:
                record = json.loads(line)
                if record.get("type") == "end" and record["id"] in ids:
                    ends[record["id"]] = record
    return ends


def registered(control: LabControl, timeout: float = 60.0) -> dict[str, list[str]]:
    """Every worker's registered tasks, once every worker answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = control._inspect("registered")
        if replies is not None:
            return replies
        time.sleep(0.5)
    raise AssertionError("the workers did not answer")


def test_a_users_app_runs_unchanged_and_every_task_is_ledgered(lab, tmp_path):
    control = LabControl(lab_info())
    source = (ROOT / "examples" / "minimal" / "minimal_app.py").read_text()
    assert "chaoslab" not in source.replace('"""', "").split("from celery")[1], "the example must need no lab code"
    try:
        proc = run_playbook("playbooks/site.yml", "--limit", "workers", "-e",
                            json.dumps({"celery_worker_app": MINIMAL}))
        assert "failed=0" in proc.stdout
        replies = registered(control)
        for worker in WORKERS:
            assert replies[f"celery@{worker}"] == ["minimal_app.add"], replies
            main = service_processes(worker, "celery-worker")[0]
            assert "chaoslab.node.worker_app" in " ".join(main.cmdline())
        sizes = {worker: ledger(worker).stat().st_size for worker in WORKERS}
        published = tmp_path / "publish.jsonl"
        profile = LoadProfile(rate=20, mix=(MixEntry("minimal_app.add", task="minimal_app.add", positional=(2, 3)),),
                              duration=3, publish_timeout=2.0)
        with LedgerWriter(published) as writer:
            stats = LoadGenerator(profile, Publisher(lab_info().broker_url(), 2.0), writer).run()
        assert stats.published == 60 and stats.errors == 0
        ids = {record["id"] for record in read_records(published)}
        ends = ends_of(ids, sizes)
        assert set(ends) == ids, f"{len(ids) - len(ends)} of the app's tasks have no end record"
        assert {record["kind"] for record in ends.values()} == {"minimal_app.add"}
        assert {record["outcome"] for record in ends.values()} == {"success"}
        assert {record["node"] for record in ends.values()} == set(WORKERS)
        assert control.task_results(list(ids))  # the lab's result backend holds the app's results
    finally:
        pids = {worker: service_pid(worker, "celery-worker") for worker in WORKERS}
        run_playbook("playbooks/site.yml", "--limit", "workers")
    for worker in WORKERS:
        assert service_pid(worker, "celery-worker") != pids[worker], "the lab's own app was not put back"
    assert all("chaoslab.noop" in tasks for tasks in registered(control).values())


BAD_APPS = {
    "app-does-not-import": ({**MINIMAL, "app": "no_such_module:app"},
                            "celery_worker_app: app no_such_module:app does not import: ModuleNotFoundError: "
                            "No module named 'no_such_module'"),
    "attribute-missing": ({**MINIMAL, "app": "minimal_app:application"},
                          "celery_worker_app: app minimal_app:application: module minimal_app has no application"),
    "not-an-app": ({**MINIMAL, "app": "minimal_app:add"},
                   "celery_worker_app: app minimal_app:add is a PromiseProxy, not a Celery app"),
    "app-path-injection": ({**MINIMAL, "app": "minimal_app:app; rm -rf /"},
                           "celery_worker_app: app: name the Celery app as celery -A takes it"),
    "source-as-option": ({**MINIMAL, "source": "--checkpoint-action=exec=sh"},
                         "celery_worker_app: source: a directory's or a distribution's path (printable, not starting "
                         "with '-')"),
    "requirement-option": ({**MINIMAL, "requirements": ["--index-url=http://198.18.0.99/"]},
                           "celery_worker_app: requirements[0]: a requirement such as requests==2.32.3"),
    "requirement-url": ({**MINIMAL, "requirements": ["evil @ http://198.18.0.99/evil.whl"]},
                        "celery_worker_app: requirements[0]: a requirement by name and version, not by URL"),
    "missing-app": ({"source": "examples/minimal"}, "celery_worker_app: app: missing (required)"),
}


@pytest.mark.parametrize("case", sorted(BAD_APPS))
def test_a_bad_app_gets_one_line_and_the_workers_keep_running(lab, case):
    spec, message = BAD_APPS[case]
    before = {worker: service_pid(worker, "celery-worker") for worker in WORKERS}
    nodes = ["redis", "monitor", *WORKERS]
    state = snapshot(nodes)
    proc = run_playbook("playbooks/site.yml", "--limit", "workers", "-e", json.dumps({"celery_worker_app": spec}),
                        check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr, proc.stdout[-3000:]
    assert {worker: service_pid(worker, "celery-worker") for worker in WORKERS} == before
    if case not in ("app-does-not-import", "attribute-missing", "not-an-app"):
        assert snapshot(nodes) == state  # refused before anything on a node changed


def test_a_celery_release_under_test_runs_in_a_venv_of_its_own_and_the_labs_comes_back(lab, tmp_path):
    """celery_version 5.4.0: each worker runs that Celery (as it reports it) from a venv of its own, runs tasks with
    it, and the lab's Celery is back once the setting is gone."""
    def reported() -> dict[str, str]:
        return {worker: json.loads(Path(f"{ledger(worker)}.settings.json").read_text())["settings"]["celery"]
                for worker in WORKERS}

    try:
        proc = run_playbook("playbooks/site.yml", "--tags", "celery_worker", "-e",
                            json.dumps({"celery_worker_settings": {"celery_version": "5.4.0"}}))
        assert "failed=0" in proc.stdout
        deadline = time.monotonic() + 30
        while reported() != dict.fromkeys(WORKERS, "5.4.0") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert reported() == dict.fromkeys(WORKERS, "5.4.0")
        for worker in WORKERS:
            main = service_processes(worker, "celery-worker")[0]
            assert "/venv-celery-5.4.0/bin/python" in main.cmdline()[0]
        sizes = {worker: ledger(worker).stat().st_size for worker in WORKERS}
        published = tmp_path / "publish.jsonl"
        profile = LoadProfile(rate=20, mix=(MixEntry("noop"),), duration=1, publish_timeout=2.0)
        with LedgerWriter(published) as writer:
            stats = LoadGenerator(profile, Publisher(lab_info().broker_url(), 2.0), writer).run()
        assert stats.published == 20 and stats.errors == 0
        ends = ends_of({record["id"] for record in read_records(published)}, sizes)
        assert len(ends) == 20 and {end["outcome"] for end in ends.values()} == {"success"}
    finally:
        run_playbook("playbooks/site.yml", "--tags", "celery_worker")
    import celery

    deadline = time.monotonic() + 30
    while reported() != dict.fromkeys(WORKERS, celery.__version__) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert reported() == dict.fromkeys(WORKERS, celery.__version__)


def test_an_app_given_as_a_wheel_is_installed_into_the_workers_venv(lab, tmp_path):
    """source: a wheel of the example shop (built here): pip installs it into the workers' venv, no code directory
    on the Python path, and the workers register the shop's tasks."""
    import shutil
    import subprocess
    import sys

    project = tmp_path / "project"
    shutil.copytree(ROOT / "examples" / "shop" / "shop", project / "shop")
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "shop-example"\nversion = "1.0"\n[tool.setuptools]\npackages = ["shop"]\n',
        encoding="utf-8")
    def build() -> Path:
        shutil.rmtree(tmp_path / "dist", ignore_errors=True)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
                        str(project)], check=True, timeout=300)
        (built,) = (tmp_path / "dist").glob("shop_example-1.0-*.whl")
        return built

    wheel = build()
    control = LabControl(lab_info())
    app = json.dumps({"celery_worker_app": {"app": "shop.celery:app", "source": str(wheel)}})
    try:
        proc = run_playbook("playbooks/site.yml", "--tags", "celery_worker", "-e", app)
        assert "failed=0" in proc.stdout
        replies = registered(control)
        for worker in WORKERS:
            assert "shop.charge_payment" in " ".join(replies[f"celery@{worker}"]), replies
            main = service_processes(worker, "celery-worker")[0]
            assert "PYTHONPATH" not in main.environ()
        app_dir = Path(f"/var/lib/chaoslab/nodes/{WORKERS[0]}/app")
        assert (app_dir / "dist" / wheel.name).is_file()
        assert list(app_dir.glob("venv/lib/python3*/site-packages/shop/tasks.py"))  # installed, not on a path
        # a rebuilt wheel of the same version replaces the installed app; an unchanged one changes nothing
        with (project / "shop" / "tasks.py").open("a", encoding="utf-8") as tasks:
            tasks.write('\n\n@app.task(name="shop.audit")\ndef audit() -> int:\n    return 0\n')
        assert build().name == wheel.name
        assert "failed=0" in run_playbook("playbooks/site.yml", "--tags", "celery_worker", "-e", app).stdout
        assert all("shop.audit" in " ".join(tasks) for tasks in registered(control).values())
        again = run_playbook("playbooks/site.yml", "--tags", "celery_worker", "--limit", "workers", "-e", app)
        assert all(f"{worker}" in line and "changed=0" in line for worker in WORKERS
                   for line in again.stdout.splitlines() if line.startswith(worker)), again.stdout[-1500:]
    finally:
        run_playbook("playbooks/site.yml", "--tags", "celery_worker")
