"""The lab tests: marked ``lab``; the local lab they share is taken down once the last of them has run."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from lab_state import lab_cgroups, lab_links, lab_namespaces, lab_processes, lab_rules
from tests.conftest import can_build_lab, recap, run_playbook

NODE_DIR_PARENTS = ("/etc/chaoslab/nodes", "/var/lib/chaoslab/nodes", "/var/log/chaoslab/nodes", "/run/chaoslab/nodes")


FIRST = "test_site_second_run_changes_nothing"
"""Runs first of the lab tests: the session's own site.yml run (the lab fixture) is its first run."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/tests/lab/" in str(item.path):
            item.add_marker(pytest.mark.lab)
    first = [index for index, item in enumerate(items) if item.name == FIRST]
    lab = [index for index, item in enumerate(items) if "/tests/lab/" in str(item.path)]
    if first and lab and first[0] != lab[0]:
        items.insert(lab[0], items.pop(first[0]))


def lab_traces() -> dict[str, list[str]]:
    """Everything of the local lab on this host: namespaces, links, host firewall rules naming them, cgroups,
    processes, per-node netns files and node directories (all empty once the lab is down)."""
    netns_files = sorted(name for name in os.listdir("/etc/netns") if name.startswith("chaoslab-")) \
        if os.path.isdir("/etc/netns") else []
    return {
        "namespaces": lab_namespaces(),
        "links": lab_links(),
        "rules": lab_rules(),
        "cgroups": lab_cgroups(),
        "processes": [f"{process.pid} {process.as_dict(['name'])['name']}" for process in lab_processes()],
        "netns files": netns_files,
        "node directories": [path for path in NODE_DIR_PARENTS if os.path.exists(path)],
        "loop devices": lab_loop_devices(),
    }


def lab_loop_devices() -> list[str]:
    """Loop devices backed by a file of a lab node (the redis role's disk image)."""
    found = subprocess.run(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"], capture_output=True,
                           text=True, check=False).stdout.split("\n")
    return [line for line in found if any(parent in line for parent in NODE_DIR_PARENTS)]


@pytest.fixture(scope="session", autouse=True)
def lab_down_at_the_end() -> Iterator[None]:
    """Set up by the first lab test of a session (autouse, here), torn down when the session ends, after every test
    that could still use the lab: lab-down leaves no trace of the lab, and a second lab-down changes nothing."""
    yield
    if can_build_lab() is not None:  # not root, or no lab packages: no lab test made a lab
        return
    was_up = bool(lab_namespaces())
    first = run_playbook("playbooks/lab-down.yml")
    if was_up:
        assert recap(first.stdout)["localhost"]["changed"] >= 1, "lab-down changed nothing on a lab that was up"
    traces = lab_traces()
    assert not any(traces.values()), f"lab-down left {traces}"
    second = run_playbook("playbooks/lab-down.yml")
    assert recap(second.stdout)["localhost"]["changed"] == 0, "a second lab-down changed something"
