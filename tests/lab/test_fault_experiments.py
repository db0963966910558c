"""Faults whose effect is on tasks, run as experiments: a memory cap OOM-kills pool children, Redis restarts
lose the queue without persistence and keep it with AOF."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import psutil
import yaml

from chaoslab.ledger import read_records
from fault_state import is_baseline, node_resident, node_state
from lab_state import service_pid
from test_experiments import run_scenario
from tests.conftest import run_playbook
from verdict_checks import assert_verdicts_hold_up


def scenario(tmp_path: Path, name: str, celery: dict, mix: list[dict], rate: float, fault: dict,
             hypothesis: dict, drain: str = "60s", settle: str = "8s") -> Path:
    """Baseline and recovery last *settle* each, the fault 12 s."""
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump({
        "name": name, "celery": celery, "load": {"rate": rate, "seed": 11, "mix": mix},
        "phases": [{"name": "baseline", "duration": settle}, {"name": "fault", "duration": "12s", "fault": fault},
                   {"name": "recovery", "duration": settle}, {"name": "drain", "duration": drain}],
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
    summary = assert_verdicts_hold_up(lab, run_dir)
    hit = summary["classes"]["failed"] + summary["classes"]["failed_by_worker"] + summary["classes"]["lost"]
    assert hit >= 1, f"no task was failed or lost under a {limit}MiB cap: {summary['classes']}"
    records = list(read_records(sorted((run_dir / "ledgers").glob("*.jsonl"))))
    bad = set(summary["ids"]["failed"]) | set(summary["ids"]["failed_by_worker"]) | set(summary["ids"]["lost"])
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


# the restart scenarios publish 10 one-second tasks a second to 2 workers x 2 processes (4 a second): a backlog
# builds up, which Redis holds when it is killed. The drain need not work it off: what is still queued or reserved
# at the end is pending, never lost (the checker reads the broker), so 15 s do; 4 s of baseline queue some 20 tasks
# before the kill, and the workers show they reconnected within the recovery and the drain.
RESERVED = 2 * 2  # workers x concurrency x prefetch multiplier 1: taken by a worker, not yet started (not acked)


def restart_scenario(tmp_path: Path, name: str) -> Path:
    return scenario(tmp_path, name, {"task_acks_late": False, "worker_prefetch_multiplier": 1},
                    [{"kind": "sleep", "weight": 1, "args": {"ms": 1000}}], 10,
                    {"playbook": "redis-restart", "target": "redis", "params": {"mode": "kill", "down_for": "3s"}},
                    {}, drain="15s", settle="4s")


def restart_run(run_dir: Path) -> tuple[dict, dict, list[dict]]:
    """The run's summary, its fault's detail (down_at, down_for) and its ledger records."""
    summary = json.loads((run_dir / "summary.json").read_text())
    run = json.loads((run_dir / "run.json").read_text())
    records = list(read_records(sorted((run_dir / "ledgers").glob("*.jsonl"))))
    return summary, run["faults"][0]["nodes"][0]["detail"], records


def lost_published(summary: dict, records: list[dict], start: float, end: float) -> list[str]:
    """Lost tasks whose publish succeeded between start and end (epoch seconds)."""
    lost = set(summary["ids"]["lost"])
    return [r["id"] for r in records if r["type"] == "publish" and r["id"] in lost and start <= r["t"] < end]


def test_redis_kill_without_persistence_loses_the_queue(lab, tmp_path):
    proc, run_dir = run_scenario(restart_scenario(tmp_path, "redis-kill"), tmp_path / "results")
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-2000:]
    assert_verdicts_hold_up(lab, run_dir)  # every lost id is in neither the broker nor the result backend
    summary, detail, records = restart_run(run_dir)
    assert summary["classes"]["lost"] >= 1
    # split: queued in Redis (never received), or prefetched by a worker, dropped when its connection broke
    assert "broker_data_loss" in summary["causes"]["lost"], summary["causes"]
    assert set(summary["causes"]["lost"]) <= {"broker_data_loss", "prefetched_broker_data_loss"}, summary["causes"]
    # prefetched: received before the new Redis started (a reply to BRPOP read as Redis was killed is recorded
    # just after the kill, and was still taken from the old Redis)
    restarted = summary["snapshot"]["broker_started"]
    received_before = {r["id"] for r in records if r["type"] == "received" and r["t"] < restarted}
    tasks = {row["id"]: row for row in csv.DictReader((run_dir / "tasks.csv").open())}
    for task_id in summary["ids"]["lost"]:
        prefetched = tasks[task_id]["cause"] == "prefetched_broker_data_loss"
        assert prefetched == (task_id in received_before), tasks[task_id]
    assert summary["snapshot"]["broker_started"] > detail["down_at"]
    # the fault proved itself: a client on the node saw Redis down about down_for, and a new Redis came back
    effect = summary["faults"][0]["effect"]
    assert effect["effective"] and effect["measured"]["restarted"], effect
    assert 2.7 <= effect["measured"]["down_seen_s"] <= 6.0, effect
    # the backlog queued before the kill is gone: far more than the few tasks the workers had reserved
    queued = lost_published(summary, records, 0, detail["down_at"])
    assert len(queued) >= 10, (len(queued), summary["classes"])


def test_redis_kill_with_aof_keeps_the_queue_and_workers_reconnect(lab, tmp_path):
    run_playbook("playbooks/site.yml", "--tags", "redis", "-e", "redis_aof=true", "-e", "redis_appendfsync=everysec")
    try:
        proc, run_dir = run_scenario(restart_scenario(tmp_path, "redis-kill-aof"), tmp_path / "results")
    finally:
        run_playbook("playbooks/site.yml", "--tags", "redis")
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-2000:]
    summary, detail, records = restart_run(run_dir)
    restarted = detail["down_at"] + detail["down_for"]
    after = [r for r in records if r["type"] == "end" and r.get("outcome") == "success" and r["t"] > restarted]
    assert {r["node"] for r in after} == {"worker-1", "worker-2"}, "a worker did not reconnect"
    # appendfsync everysec may lose up to 2 s of writes before the kill; what was queued before that survives (still
    # queued, or reserved and unacknowledged until the visibility timeout: pending), except at most the few messages
    # the workers had just taken from the queue when Redis died
    kept = lost_published(summary, records, 0, detail["down_at"] - 2)
    assert len(kept) <= RESERVED, (len(kept), summary["causes"])
    assert lost_published(summary, records, restarted, float("inf")) == [], summary["classes"]
