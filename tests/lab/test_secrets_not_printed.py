"""No secret of the lab is ever printed by its playbooks, even at -vvv with --diff while the files that hold the
secrets are written again."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import yaml

from tests.conftest import ROOT, changed_tasks, run_playbook

# The files whose content holds a secret: written again by the run below, so that --diff would show them.
SECRET_FILES = ("/etc/chaoslab/nodes/*/chaoslab.yml", "/etc/chaoslab/nodes/*/redis.conf",
                "/etc/chaoslab/nodes/*/flower.program.conf", "/etc/chaoslab/nodes/*/redis-exporter.program.conf",
                "/etc/chaoslab/nodes/*/flower.password")


def secret_values() -> list[str]:
    secrets = yaml.safe_load((ROOT / ".lab" / "local" / "secrets.yml").read_text())
    return [value for value in secrets.values() if isinstance(value, str) and len(value) >= 16]


def test_site_yml_at_vvv_with_diff_prints_no_secret(lab):
    values = secret_values()
    names = yaml.safe_load((ROOT / "roles" / "common" / "defaults" / "main.yml").read_text())["common_secret_names"]
    assert len(values) == len(names) == 6  # Redis, Flower, Grafana, the API, RabbitMQ's password and Erlang cookie
    removed = [path for pattern in SECRET_FILES for path in glob.glob(pattern)]
    assert removed, "no file holding a secret found"
    for path in removed:
        os.unlink(path)
    proc = run_playbook("playbooks/site.yml", "-vvv", "--diff")
    output = proc.stdout + proc.stderr
    assert all(Path(path).exists() for path in removed), "site.yml did not write the files again"
    assert len(changed_tasks(proc.stdout)) >= len(removed)
    leaked = [value[:4] + "..." for value in values if value in output]
    assert not leaked, f"secrets printed: {leaked}"


def test_the_runners_playbooks_and_a_fault_at_vvv_print_no_secret(lab):
    values = secret_values()
    outputs = [run_playbook(path, "-vvv", "--diff", *extra) for path, *extra in (
        ("playbooks/ledgers.yml", "-e", "ledgers_action=reset"),
        ("playbooks/load.yml",),
        ("faults/worker-pause.yml", "-e", "duration=2s"),
        ("faults/clear.yml",),
    )]
    for proc in outputs:
        output = proc.stdout + proc.stderr
        assert not [value for value in values if value in output], proc.args
