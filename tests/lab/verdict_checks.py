"""Checks of a run's verdict against the lab's Redis itself, as a user would look it up after the run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import redis
import yaml

from chaoslab.experiment.redis_snapshot import RESULT_PREFIX, broker_messages, queue_names
from tests.conftest import ROOT

OUTCOMES = ("SUCCESS", "FAILURE", "RETRY", "REVOKED")


def lab_redis(lab: dict, db: int) -> redis.Redis:
    secrets = yaml.safe_load((ROOT / ".lab" / "local" / "secrets.yml").read_text())
    return redis.Redis(host=lab["redis"]["lab_address"], db=db, password=secrets["lab_redis_password"],
                       socket_timeout=30)


def in_broker(lab: dict) -> set[str]:
    """Ids of every task message the broker holds now (queued, or delivered and not acknowledged)."""
    client = lab_redis(lab, 0)
    _, queued, reserved = broker_messages(client, queue_names(client))
    return set(queued) | set(reserved)


def outcomes(lab: dict, ids: list[str]) -> dict[str, str]:
    """The result backend's state of each id that has an outcome (a STARTED record is no outcome)."""
    client = lab_redis(lab, 1)
    found = {}
    for task_id in ids:
        raw = client.get(RESULT_PREFIX + task_id)
        if raw is not None and (state := json.loads(raw)["status"]) in OUTCOMES:
            found[task_id] = state
    return found


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def assert_verdicts_hold_up(lab: dict, run_dir: Path) -> dict:
    """Every task the run calls lost is gone (in the broker nowhere, no outcome in the result backend), and every
    task of the run still in the broker is called pending. Returns the summary."""
    summary = summary_of(run_dir)
    lost = summary["ids"]["lost"]
    held = in_broker(lab)
    assert not set(lost) & held, f"lost tasks still in the broker: {sorted(set(lost) & held)[:5]}"
    told = outcomes(lab, lost)
    assert not told, f"lost tasks with a result: {dict(list(told.items())[:5])}"
    with (run_dir / "tasks.csv").open(newline="", encoding="utf-8") as handle:
        classes = {row["id"]: row["class"] for row in csv.DictReader(handle)}
    mine_in_broker = held & set(classes)
    wrong = {task_id: classes[task_id] for task_id in mine_in_broker if classes[task_id] != "pending"}
    assert not wrong, f"tasks in the broker after the run that the run did not call pending: {wrong}"
    return summary
