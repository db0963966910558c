"""Sized nodes on the local lab: each node's cgroup holds it to the inventory's size, a run may size nodes for
itself and puts the inventory's sizes back, shares in fault parameters are of the node's size, and the research
prototype's memory experiment (a worker capped at 1000 MiB, 800 MiB tasks, a 256 MiB stressor) fails tasks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from chaoslab.experiment.lab import LabControl, lab_info
from chaoslab.node.node_size import Size, cgroup_size
from fault_state import is_baseline, node_state
from test_experiments import run_scenario
from tests.conftest import BIN, ROOT, ansible_env, run_playbook
from verdict_checks import assert_verdicts_hold_up

FAULTS = Path("/run/chaoslab/nodes/worker-1/faults")
INVENTORY_SIZES = {"redis": Size(1.0, 1024), "monitor": Size(1.0, 1536), "worker-1": Size(2.0, 1024),
                   "worker-2": Size(2.0, 1024)}


def enforced() -> dict[str, Size | None]:
    return {node: cgroup_size(f"chaoslab/{node}") for node in INVENTORY_SIZES}


def test_every_node_is_held_to_its_size_and_where_shows_it(lab):
    assert enforced() == INVENTORY_SIZES
    out = subprocess.run([str(BIN / "chaoslab"), "where"], cwd=ROOT, env=ansible_env(), capture_output=True,
                         text=True, check=True).stdout
    worker = next(line for line in out.splitlines() if line.strip().startswith("worker-1 "))
    assert worker.split() == ["worker-1", "198.18.0.101", "2", "CPUs,", "1024", "MiB;", "enforced:", "2", "CPUs,",
                              "1024", "MiB"], worker


def test_a_run_sizes_a_node_and_a_share_is_of_that_size(lab):
    control = LabControl(lab_info())
    try:
        control.size({"worker-1": {"cpus": 0.5, "memory_mib": 700}})
        assert enforced() == {**INVENTORY_SIZES, "worker-1": Size(0.5, 700)}
        run_playbook("faults/memory-exhaustion.yml", "-e", "target=worker-1", "-e", "bytes=50%", "-e",
                     "duration=20s")
        state = json.loads((FAULTS / "memory-exhaustion.json").read_text())
        assert state["params"]["bytes"] == 350 * 2**20, state
        run_playbook("faults/clear.yml")
    finally:
        control.size({})
    assert enforced() == INVENTORY_SIZES


def test_a_bad_size_changes_nothing(lab):
    proc = run_playbook("playbooks/size.yml", "-e", '{"lab_node_sizes": {"worker-9": {"cpus": 1}}}', check=False)
    assert proc.returncode != 0
    assert "size: lab_node_sizes must map nodes of the inventory to cpus and memory_mib" in proc.stdout
    assert enforced() == INVENTORY_SIZES


def test_the_prototypes_memory_experiment_fails_memory_tasks_without_late_ack(lab, tmp_path):
    text = (ROOT / "experiments" / "prototype-memory.yml").read_text()
    # short phases: two 800 MiB tasks at once never fit in 1000 MiB, so failures come in every phase
    for name, length in (("baseline", "6s"), ("recovery", "4s"), ("drain", "25s")):
        text = text.replace(f"{{name: {name}, duration: 30s}}", f"{{name: {name}, duration: {length}}}")
        text = text.replace(f"{{name: {name}, duration: 60s}}", f"{{name: {name}, duration: {length}}}")
    text = text.replace("    duration: 30s\n    fault:", "    duration: 10s\n    fault:")
    assert text.count("30s") == 0 and text.count("60s") == 0, text
    path = tmp_path / "prototype-memory.yml"
    path.write_text(text)
    proc, run_dir = run_scenario(path, tmp_path / "results")
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-2000:]
    summary = assert_verdicts_hold_up(lab, run_dir)
    assert summary["classes"]["failed_by_worker"] >= 1, summary["classes"]
    assert summary["classes"]["lost"] == 0, summary["classes"]
    assert "workers:\n    memory: 1000MiB" in (run_dir / "scenario.yml").read_text()
    assert enforced() == INVENTORY_SIZES  # the run put the inventory's sizes back
    assert is_baseline(node_state()) == []
