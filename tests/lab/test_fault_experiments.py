"""Faults whose effect is on tasks, run as experiments: a memory cap OOM-kills pool children, Redis restarts
lose the queue without persistence and keep it with AOF."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import yaml

from chaoslab.ledger import read_records
from fault_state import is_baseline, node_resident, node_state
from lab_state import service_pid
from test_experiments import run_scenario
from tests.conftest import run_playbook


def scenario(tmp_path: Path, name: str, celery: dict, mix: list[dict], rate: float, fault: dict,
             hypothesis: dict) -> Path:
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump({
        "name": name, "celery": celery, "load": {"rate": rate, "seed": 11, "mix": mix},
        "phases": [{"name": "baseline", "duration": "8s"}, {"name": "fault", "duration": "12s", "fault": fault},
                   {"name": "recovery", "duration": "8s"}, {"name": "drain", "duration": "60s"}],
        "hypothesis": hypothesis}))
    return path


def test_memory_limit_oom_kills_pool_children_and_the_worker_survives(lab, tmp_path):
    limit = (node_resident("worker-1") // 2**20) + 120
    path = scenario(tmp_path, "memory-limit", {"task_acks_late": False}, [
        {"kind": "memory", "weight": 1, "args": {"mb": 220, "hold_ms": 800}},
        {"kind": "noop", "weight": 2}], 3, {"playbook": "memory-limit", "target": "workers[0]",
                                            "params": {"limit": f"{limit}MiB"}}, {})
    proc, run_dir = run_scenario(path, tmp_path / "results")
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    hit = summary["classes"]["failed"] + summary["classes"]["lost"]
    assert hit >= 1, f"no task was failed or lost under a {limit}MiB cap: {summary['classes']}"
    records = list(read_records(sorted((run_dir / "ledgers").glob("*.jsonl"))))
    bad = set(summary["ids"]["failed"]) | set(summary["ids"]["lost"])
    nodes = {r.get("node") for r in records if r.get("id") in bad and r["type"] == "start"}
    kinds = {r.get("kind") for r in records if r.get("id") in bad and r["type"] == "start"}
    assert nodes == {"worker-1"} and kinds == {"memory"}, (nodes, kinds)
    assert is_baseline(node_state()) == []
    fault = json.loads((run_dir / "run.json").read_text())["faults"][0]
    # the worker's main process running now is the one that ran through the fault (the run's settings may have
    # restarted it before the fault, so its pid from before the run proves nothing)
    main = psutil.Process(service_pid("worker-1", "celery-worker"))
    assert main.create_time() < fault["start"], "the worker's main process was killed during the fault"
    completed_after = [r for r in records if r["type"] == "end" and r.get("node") == "worker-1"
                       and r.get("outcome") == "success" and r["t"] > fault["end"]]
    assert completed_after, "worker-1 completed nothing after the cap was lifted"


def restart_scenario(tmp_path: Path, name: str) -> Path:
    return scenario(tmp_path, name, {"task_acks_late": False, "worker_prefetch_multiplier": 1},
                    [{"kind": "sleep", "weight": 1, "args": {"ms": 1000}}], 10,
                    {"playbook": "redis-restart", "target": "redis", "params": {"mode": "kill", "down_for": "3s"}},
                    {})


def test_redis_kill_without_persistence_loses_the_queue(lab, tmp_path):
    proc, run_dir = run_scenario(restart_scenario(tmp_path, "redis-kill"), tmp_path / "results")
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["classes"]["lost"] >= 10, summary["classes"]
    assert summary["lost_causes"].get("never_started", 0) >= 10, summary["lost_causes"]


def test_redis_kill_with_aof_keeps_the_queue_and_workers_reconnect(lab, tmp_path):
    run_playbook("playbooks/site.yml", "--tags", "redis", "-e", "redis_aof=true", "-e", "redis_appendfsync=everysec")
    try:
        proc, run_dir = run_scenario(restart_scenario(tmp_path, "redis-kill-aof"), tmp_path / "results")
    finally:
        run_playbook("playbooks/site.yml", "--tags", "redis")
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    fault = json.loads((run_dir / "run.json").read_text())["faults"][0]
    records = list(read_records(sorted((run_dir / "ledgers").glob("*.jsonl"))))
    restarted = fault["start"] + 3
    after = [r for r in records if r["type"] == "end" and r.get("outcome") == "success" and r["t"] > restarted]
    assert {r["node"] for r in after} == {"worker-1", "worker-2"}, "a worker did not reconnect"
    # appendfsync everysec may lose the last second of writes: at most a second of publishing (10/s)
    assert summary["lost_causes"].get("never_started", 0) <= 12, summary["lost_causes"]
