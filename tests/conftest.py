"""Shared helpers: run the project's playbooks and read the local lab's state."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chaoslab.experiment.ansible_runner import unwrap_unsafe

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# The tests' lab is the local one, even where this project also has Vagrant VMs (which the default inventory
# would pick); tests/vagrant sets its own.
os.environ.setdefault("ANSIBLE_INVENTORY", str(ROOT / "inventory" / "local.yml"))


def ansible_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    env.update(extra)
    return env


def run_playbook(
    playbook: str, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), playbook, *args],
        cwd=ROOT, env=ansible_env(**(env or {})), capture_output=True, text=True, check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{playbook} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    return proc


def load_plugin(relative: str):
    """A plugin file of the project (plugins/...) as a module."""
    spec = importlib.util.spec_from_file_location(relative.replace("/", "_"), ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def recap(output: str) -> dict[str, dict[str, int]]:
    """The PLAY RECAP of an ansible-playbook run: host -> {ok, changed, failed, ...}."""
    hosts: dict[str, dict[str, int]] = {}
    lines = output.split("PLAY RECAP", 1)[-1].splitlines()[1:]
    for line in lines:
        if ":" not in line or "=" not in line:
            continue
        host, counts = line.split(":", 1)
        hosts[host.strip()] = {key: int(value) for key, value in (item.split("=") for item in counts.split())}
    return hosts


def changed_tasks(output: str) -> list[str]:
    """The tasks of an ansible-playbook run that reported a change, as "TASK NAME: host"."""
    changed, task = [], ""
    for line in output.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line.split("[", 1)[1].rsplit("]", 1)[0]
        elif line.startswith("changed: ["):
            changed.append(f"{task}: {line.split('[', 1)[1].split(']', 1)[0]}")
    return changed


def inventory(env: dict[str, str] | None = None) -> dict:
    proc = subprocess.run(
        [str(BIN / "ansible-inventory"), "--list"],
        cwd=ROOT, env=ansible_env(**(env or {})), capture_output=True, text=True, check=True,
    )
    return json.loads(proc.stdout, object_hook=unwrap_unsafe)


def can_build_lab() -> str | None:
    if os.geteuid() != 0:
        return "the local lab needs root"
    if not shutil.which("ip") or not shutil.which("supervisord") or not shutil.which("redis-server"):
        return "the local lab needs iproute2, supervisor and redis-server (make install)"
    return None


@pytest.fixture(scope="session")
def lab() -> dict:
    """The local lab, up and provisioned (default inventory: 2 workers)."""
    reason = can_build_lab()
    if reason:
        pytest.skip(reason)
    run_playbook("playbooks/lab-up.yml")
    run_playbook("playbooks/site.yml")
    return inventory()["_meta"]["hostvars"]
