"""The load generator: an open loop at a fixed rate, a weighted task mix, a publish record per task.

Task *i* is due at ``start + i / rate`` whether or not earlier publishes were slow (open loop, as
a real producer under load). Every task gets its id before it is published and exactly one publish
record (ok, error or timeout) with the time it was due (``scheduled``) and the time the publish
returned (``t``). Tasks that fall due together are sent in one batch, so a slow or dead broker makes
the generator late, never silent: lateness shows as schedule lag, and end-to-end latency, counted
from ``scheduled``, includes it.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge

from chaoslab.ledger import LAB_TASK_PREFIX, LedgerWriter, task_kind
from chaoslab.node.publisher import Publisher

PUBLISHED = Counter("chaoslab_loadgen_published", "Tasks the load generator tried to publish", ["kind", "outcome"])
PUBLISH_ERRORS = Counter("chaoslab_loadgen_publish_errors", "Publishes that failed (error or timeout)", ["kind"])
LAG = Gauge("chaoslab_loadgen_schedule_lag_seconds", "How late the last batch was against the schedule")
RATE = Gauge("chaoslab_loadgen_target_rate", "Tasks per second the load generator is asked for")
MAX_BATCH = 500


@dataclass(frozen=True)
class MixEntry:
    """One kind of task in the load: a lab task kind (``kind``, keyword arguments in ``args``), or a task of the app
    under test by its name (``task``, positional arguments in ``positional``, keyword arguments in ``args``)."""

    kind: str
    weight: float = 1.0
    args: dict[str, Any] = field(default_factory=dict)
    task: str = ""
    positional: tuple[Any, ...] = ()

    @property
    def task_name(self) -> str:
        return self.task or LAB_TASK_PREFIX + self.kind

    def to_data(self) -> dict[str, Any]:
        """The YAML/JSON form :func:`mix_entry` reads back."""
        if self.task:
            return {"task": self.task, "weight": self.weight, **({"args": list(self.positional)} if self.positional
                                                                  else {}),
                    **({"kwargs": dict(self.args)} if self.args else {})}
        return {"kind": self.kind, "weight": self.weight, **({"args": dict(self.args)} if self.args else {})}


@dataclass(frozen=True)
class LoadProfile:
    rate: float
    mix: tuple[MixEntry, ...]
    seed: int = 0
    publish_timeout: float = 2.0
    duration: float | None = None  # None: until stopped

    @property
    def total(self) -> int | None:
        return None if self.duration is None else round(self.rate * self.duration)


@dataclass
class LoadStats:
    published: int = 0
    errors: int = 0
    max_lag: float = 0.0
    lags: list[float] = field(default_factory=list)


class LoadGenerator:
    def __init__(self, profile: LoadProfile, publisher: Publisher, ledger: LedgerWriter | None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 node: str = "") -> None:
        if profile.rate <= 0 or not profile.mix:
            raise ValueError("a load needs a rate > 0 and at least one task kind")
        self.profile = profile
        self.publisher = publisher
        self.ledger = ledger
        self.clock = clock
        self.wall = wall
        self.node = node
        self.stop_event = threading.Event()
        self.stats = LoadStats()
        self._rng = random.Random(profile.seed)
        self._entries = list(profile.mix)
        self._weights = [entry.weight for entry in profile.mix]
        self._templates = [publisher.template(entry.task_name, entry.args, entry.positional) for entry in profile.mix]

    def _next_tasks(self, count: int) -> list[tuple[str, int]]:
        picks = self._rng.choices(range(len(self._entries)), weights=self._weights, k=count)
        return [(str(uuid.uuid4()), index) for index in picks]

    def _record(self, tasks: list[tuple[str, int]], scheduled: list[float], t: float, outcome: str,
                error: str | None) -> None:
        for (task_id, index), due in zip(tasks, scheduled, strict=True):
            kind = self._entries[index].kind
            PUBLISHED.labels(kind, outcome).inc()
            if outcome != "ok":
                PUBLISH_ERRORS.labels(kind).inc()
            if self.ledger is not None:
                self.ledger.write({"type": "publish", "id": task_id, "kind": kind, "node": self.node,
                                   "scheduled": due, "t": t, "outcome": outcome, "error": error})

    def _send(self, tasks: list[tuple[str, int]], due: float, scheduled: list[float]) -> None:
        messages = [self._templates[index].render(task_id) for task_id, index in tasks]
        result = self.publisher.publish(messages)
        t = self.wall()
        self._record(tasks, scheduled, t, result.outcome, result.error)
        lag = max(self.clock() - due, 0.0)
        LAG.set(lag)
        self.stats.published += len(tasks)
        self.stats.errors += 0 if result.outcome == "ok" else len(tasks)
        self.stats.max_lag = max(self.stats.max_lag, lag)
        self.stats.lags.append(lag)

    def run(self) -> LoadStats:
        """Publish until the profile's duration is over or stop() is called."""
        RATE.set(self.profile.rate)
        for entry in self.profile.mix:  # every kind's series exists from the start, errors at 0
            PUBLISHED.labels(entry.kind, "ok")
            PUBLISH_ERRORS.labels(entry.kind)
        interval = 1.0 / self.profile.rate
        total = self.profile.total
        start = self.clock()
        wall_start = self.wall()
        sent = 0
        while not self.stop_event.is_set() and (total is None or sent < total):
            now = self.clock()
            due = int((now - start) / interval) + 1 - sent
            if total is not None:
                due = min(due, total - sent)
            if due <= 0:
                self.stop_event.wait(min(start + sent * interval - now, 0.05))
                continue
            count = min(due, MAX_BATCH)
            # Lag is measured against the first task of the batch, the one that has waited longest.
            scheduled = [wall_start + (sent + offset) * interval for offset in range(count)]
            self._send(self._next_tasks(count), start + sent * interval, scheduled)
            sent += count
        if self.ledger is not None:
            self.ledger.sync()
        return self.stats

    def stop(self) -> None:
        self.stop_event.set()


def mix_entry(data: dict[str, Any]) -> MixEntry:
    """A mix entry from its YAML/JSON form: {kind, weight, args} for a lab task kind, {task, weight, args, kwargs} for
    a task of the app under test (args positional)."""
    weight = float(data.get("weight", 1))
    if data.get("task"):
        return MixEntry(task_kind(data["task"]), weight, dict(data.get("kwargs") or {}), data["task"],
                        tuple(data.get("args") or ()))
    return MixEntry(data["kind"], weight, dict(data.get("args") or {}))


def profile_from_mapping(data: dict[str, Any], duration: float | None = None) -> LoadProfile:
    """A profile from its YAML/JSON form: rate, mix [mix entries], seed, publish_timeout (seconds)."""
    mix = tuple(mix_entry(entry) for entry in data.get("mix") or [])
    return LoadProfile(rate=float(data["rate"]), mix=mix, seed=int(data.get("seed", 0)),
                       publish_timeout=float(data.get("publish_timeout", 2.0)), duration=duration)
