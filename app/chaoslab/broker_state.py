"""What the broker and Celery's result backend held when a run's history was collected: plain data.

The runner takes this snapshot right after the drain (see :mod:`chaoslab.experiment.redis_snapshot`) and keeps
it in the run directory as ``snapshot.json`` (:func:`chaoslab.analysis.run_dir.write_snapshot`); the checker reads it
beside the ledgers, so that a task still
queued, reserved or reported by Celery is never called lost. Nothing here talks to a broker.

``snapshot.json``::

    {"version": 1, "taken": <epoch>, "broker": "redis",
     "queues": {"celery": 12},                     # messages per queue list at the snapshot
     "queued": {"ids": [...], "queues": [...]},    # one entry per message waiting in a queue
     "reserved": {"ids": [...], "since": [...]},   # one entry per message delivered and not acknowledged
     "broker_started": <epoch> | null,             # when the broker (re)started, if it did during the run
     "evicted_keys": 0,                            # keys the broker evicted during the run (maxmemory)
     "unnamed_unacked": 0,                         # unacknowledged messages no worker named (RabbitMQ)
     "results": {"ids": [...], "states": [...], "exc_types": [...], "workers": [...], "done": [...]},
     "result_lookups": 40}                         # ids looked up in the result backend

Columns rather than one object per message keep a snapshot of a million messages small to write and to read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

VERSION: Final = 1
# Failures Celery's worker records for a task itself, in its main process, when the task could not report: the pool
# process died (WorkerLostError), the hard time limit killed it (TimeLimitExceeded), a revoke terminated it.
WORKER_MADE_FAILURES: Final = frozenset({"WorkerLostError", "TimeLimitExceeded", "Terminated"})


class TaskMeta(NamedTuple):
    """The result backend's record of one task (Celery's ``celery-task-meta-<id>``)."""

    state: str
    """PENDING is never stored; STARTED (task_track_started), RETRY, SUCCESS, FAILURE, REVOKED."""
    exc_type: str | None
    """The exception's type for FAILURE and RETRY, e.g. WorkerLostError."""
    worker: str | None
    """The worker that stored it (``celery@worker-1``; needs ``result_extended``)."""
    done: float | None
    """``date_done`` as epoch seconds, on the storing worker's clock."""


@dataclass(frozen=True, slots=True)
class BrokerState:
    """The broker and result backend at the end of a run."""

    taken: float
    broker: str = "redis"
    queues: dict[str, int] = field(default_factory=dict)
    queued: dict[str, str] = field(default_factory=dict)
    """Task id -> the queue whose list holds its message."""
    reserved: dict[str, float | None] = field(default_factory=dict)
    """Task id -> when its message was delivered (Redis' ``unacked_index``), for messages not acknowledged."""
    results: dict[str, TaskMeta] = field(default_factory=dict)
    result_lookups: int = 0
    broker_started: float | None = None
    evicted_keys: int = 0
    unnamed_unacked: int = 0
    """RabbitMQ names no unacknowledged message: the workers name those they hold; how many they did not."""
    queue_types: dict[str, str] = field(default_factory=dict)
    """RabbitMQ: each task queue's type and durability (``classic durable``, ``quorum durable``, ...); {} on Redis."""

    def where(self, task_id: str) -> str | None:
        """``queued``, ``reserved`` or None (not in the broker)."""
        if task_id in self.queued:
            return "queued"
        if task_id in self.reserved:
            return "reserved"
        return None

    def to_dict(self) -> dict[str, Any]:
        results = self.results
        return {
            "version": VERSION, "taken": self.taken, "broker": self.broker, "queues": self.queues,
            "queued": {"ids": list(self.queued), "queues": list(self.queued.values())},
            "reserved": {"ids": list(self.reserved), "since": list(self.reserved.values())},
            "broker_started": self.broker_started, "evicted_keys": self.evicted_keys,
            "unnamed_unacked": self.unnamed_unacked, "queue_types": self.queue_types,
            "results": {"ids": list(results), "states": [m.state for m in results.values()],
                        "exc_types": [m.exc_type for m in results.values()],
                        "workers": [m.worker for m in results.values()], "done": [m.done for m in results.values()]},
            "result_lookups": self.result_lookups,
        }

    def counts(self) -> dict[str, Any]:
        """The snapshot in numbers, for the summary."""
        states: dict[str, int] = {}
        for meta in self.results.values():
            states[meta.state] = states.get(meta.state, 0) + 1
        return {"taken": self.taken, "broker": self.broker, "queued": len(self.queued),
                "reserved": len(self.reserved), "result_lookups": self.result_lookups, "results": states,
                "broker_started": self.broker_started, "evicted_keys": self.evicted_keys,
                "unnamed_unacked": self.unnamed_unacked, "queue_types": self.queue_types}


def _column(data: Mapping[str, Any], key: str, length: int) -> list[Any]:
    values = data.get(key)
    if not isinstance(values, list) or len(values) != length:
        raise ValueError(f"snapshot: column {key!r} does not match its ids")
    return values


def from_dict(data: Mapping[str, Any]) -> BrokerState:
    """A BrokerState from its JSON form; ValueError when the columns do not line up."""
    if data.get("version") != VERSION:
        raise ValueError(f"snapshot: version {data.get('version')!r}, expected {VERSION}")
    queued, reserved, results = data["queued"], data["reserved"], data["results"]
    queued_ids, reserved_ids, result_ids = queued["ids"], reserved["ids"], results["ids"]
    metas = zip(_column(results, "states", len(result_ids)), _column(results, "exc_types", len(result_ids)),
                _column(results, "workers", len(result_ids)), _column(results, "done", len(result_ids)), strict=True)
    return BrokerState(
        taken=float(data["taken"]),
        broker=str(data.get("broker", "redis")),
        queues={str(k): int(v) for k, v in (data.get("queues") or {}).items()},
        queued=dict(zip(queued_ids, _column(queued, "queues", len(queued_ids)), strict=True)),
        reserved=dict(zip(reserved_ids, _column(reserved, "since", len(reserved_ids)), strict=True)),
        results={task_id: TaskMeta(*meta) for task_id, meta in zip(result_ids, metas, strict=True)},
        result_lookups=int(data.get("result_lookups", len(result_ids))),
        broker_started=data.get("broker_started"),
        evicted_keys=int(data.get("evicted_keys") or 0),
        unnamed_unacked=int(data.get("unnamed_unacked") or 0),
        queue_types={str(k): str(v) for k, v in (data.get("queue_types") or {}).items()},
    )

