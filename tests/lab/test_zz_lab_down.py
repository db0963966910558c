"""lab-down removes every trace of the lab; it runs last (the lab is gone afterwards)."""

from __future__ import annotations

import os

from lab_state import lab_cgroups, lab_links, lab_namespaces, lab_processes
from tests.conftest import recap, run_playbook


def test_lab_down_leaves_nothing_and_is_safe_twice(lab):
    assert lab_namespaces() and lab_processes(), "the lab should be up before it is taken down"
    first = run_playbook("playbooks/lab-down.yml")
    assert recap(first.stdout)["localhost"]["changed"] >= 1
    assert lab_namespaces() == []
    assert lab_links() == []
    assert lab_cgroups() == []
    assert lab_processes() == []
    assert not [name for name in os.listdir("/etc/netns") if name.startswith("chaoslab-")] \
        if os.path.isdir("/etc/netns") else True
    for parent in ("/etc/chaoslab/nodes", "/var/lib/chaoslab/nodes", "/var/log/chaoslab/nodes", "/run/chaoslab/nodes"):
        assert not os.path.exists(parent), parent
    second = run_playbook("playbooks/lab-down.yml")
    assert recap(second.stdout)["localhost"]["changed"] == 0
