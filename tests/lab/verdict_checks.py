"""Checks of a run's verdict against the lab's Redis itself, as a user would look it up after the run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import amqp
import redis
import yaml

from chaoslab.experiment.lab import LabInfo, lab_info
from chaoslab.experiment.rabbitmq_snapshot import ManagementAPI
from chaoslab.experiment.redis_snapshot import RESULT_PREFIX, broker_messages, queue_names
from tests.conftest import ROOT

OUTCOMES = ("SUCCESS", "FAILURE", "RETRY", "REVOKED")


def lab_redis(lab: dict, db: int) -> redis.Redis:
    secrets = yaml.safe_load((ROOT / ".lab" / "local" / "secrets.yml").read_text())
    return redis.Redis(host=lab["redis"]["lab_address"] if lab else "198.18.0.10", db=db,
                       password=secrets["lab_redis_password"], socket_timeout=30)


def in_broker(lab: dict) -> set[str]:
    """Ids of every task message the broker holds now (queued, or delivered and not acknowledged)."""
    kept = ROOT / ".lab" / "local" / "broker"  # the broker the lab was provisioned with
    if kept.exists() and kept.read_text().strip() == "rabbitmq":
        return in_rabbitmq(lab_info())
    client = lab_redis(lab, 0)
    _, queued, reserved = broker_messages(client, queue_names(client))
    return set(queued) | set(reserved)


def rabbitmq_queues(info: LabInfo) -> list[dict]:
    """RabbitMQ's task queues as its management API gives them (ready and unacknowledged counts)."""
    rabbit = info.rabbitmq
    return ManagementAPI(info.redis_address, rabbit["management_port"], rabbit["user"], rabbit["password"],
                         rabbit["vhost"]).task_queues()


def unacked(queues: list[dict]) -> int:
    """How many messages *queues* (RabbitMQ's management API's) hold delivered and not acknowledged."""
    return sum(queue.get("messages_unacknowledged") or 0 for queue in queues)


def in_rabbitmq(info: LabInfo) -> set[str]:
    """Ids of every ready message RabbitMQ holds, taken over AMQP and given back; RabbitMQ cannot name an
    unacknowledged message, so there must be none for the check to hold."""
    rabbit = info.rabbitmq
    queues = rabbitmq_queues(info)
    assert not unacked(queues), f"unacknowledged messages: {queues}"
    ids = set()
    with amqp.Connection(f"{info.redis_address}:{rabbit['port']}", rabbit["user"], rabbit["password"],
                         virtual_host=rabbit["vhost"], connect_timeout=10) as connection:
        channel = connection.channel()
        for queue in queues:
            while (message := channel.basic_get(queue["name"], no_ack=False)) is not None:
                ids.add(message.properties["application_headers"]["id"])
        channel.close()
    return ids


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
