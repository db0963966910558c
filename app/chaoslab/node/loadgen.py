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
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge

from chaoslab import celery_settings
from chaoslab.ledger import LedgerWriter
from chaoslab.node import trace
from chaoslab.node.canvas_publisher import CanvasPublisher
from chaoslab.node.celery_publisher import CeleryPublisher
from chaoslab.node.load_mix import CanvasEntry, MixEntry, MixItem, mix_item
from chaoslab.node.publisher import MessageTemplate, Outcome, RawPublisher
from chaoslab.node.trace import Trace

PUBLISHED = Counter("chaoslab_loadgen_published", "Tasks the load generator tried to publish", ["kind", "outcome"])
PUBLISH_ERRORS = Counter("chaoslab_loadgen_publish_errors", "Publishes that failed (error or timeout)", ["kind"])
LAG = Gauge("chaoslab_loadgen_schedule_lag_seconds", "How late the last batch was against the schedule")
RATE = Gauge("chaoslab_loadgen_target_rate", "Tasks per second the load generator is asked for")
MAX_BATCH = 500


@dataclass(frozen=True)
class LoadProfile:
    rate: float
    mix: tuple[MixItem, ...]
    seed: int = 0
    publish_timeout: float = 2.0
    duration: float | None = None  # None: until stopped
    delivery_mode: int = 2
    """The messages' AMQP delivery mode (the run's ``task_default_delivery_mode``): 2 persistent, 1 transient."""
    publisher: str = "raw"
    """``raw``: the lab's batched, bounded LPUSH of protocol-2 messages; ``celery``: the app's own apply_async."""
    replay: Trace = ()
    """A recorded trace (:mod:`chaoslab.node.trace`) published in its own time instead of the rate and the mix."""

    @property
    def total(self) -> int | None:
        if self.replay:
            return len(self.replay) if self.duration is None else bisect_left(self.offsets, self.duration)
        return None if self.duration is None else round(self.rate * self.duration)

    @property
    def offsets(self) -> list[float]:
        return [offset for offset, _entry in self.replay]


@dataclass
class LoadStats:
    published: int = 0
    errors: int = 0
    max_lag: float = 0.0
    lags: list[float] = field(default_factory=list)


class LoadGenerator:
    def __init__(self, profile: LoadProfile, publisher: RawPublisher, ledger: LedgerWriter | None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 node: str = "", canvases: CanvasPublisher | None = None,
                 tasks: CeleryPublisher | None = None) -> None:
        if not profile.replay and (profile.rate <= 0 or not profile.mix):
            raise ValueError("a load needs a rate > 0 and at least one task kind, or a trace to replay")
        if canvases is None and any(isinstance(entry, CanvasEntry) for entry in profile.mix):
            raise ValueError("a load with canvases needs a canvas publisher")
        self.profile = profile
        self.publisher = publisher
        self.canvases = canvases
        self.tasks = tasks  # given: single tasks go out one by one through the app's apply_async
        self.ledger = ledger
        self.clock = clock
        self.wall = wall
        self.node = node
        self.stop_event = threading.Event()
        self.stats = LoadStats()
        self._rng = random.Random(profile.seed)
        self._values = random.Random(profile.seed + 1)  # generated arguments: the same seed makes the same values
        self._seq = 0  # tasks published so far, the number a $seq generator counts from
        self._entries: list[MixItem] = [entry for _offset, entry in profile.replay] or list(profile.mix)
        self._weights = [entry.weight for entry in profile.mix]
        self._offsets = profile.offsets
        # a mix's messages built once per entry; a trace's (each line its own task) as they go out
        self._templates = [] if profile.replay else [
            self._template(entry) if isinstance(entry, MixEntry) and not entry.generated and "eta" not in entry.options
            else None for entry in self._entries]
        self._wall_start = wall()  # when the load started (run() sets it): an eta counts from there

    def _template(self, entry: MixEntry) -> MessageTemplate:
        """The raw publisher's message of *entry* (its arguments and publish options as they are)."""
        return self.publisher.template(entry.task_name, entry.args, entry.positional, entry.options)

    def _timed(self, entry: MixEntry, through_celery: bool) -> MixEntry:
        """*entry* with its ``eta`` (seconds after the load's start) made a time: the absolute ETA for Celery (a
        chain's later link keeps it, published when its turn comes), the countdown left for the raw publisher."""
        if "eta" not in entry.options:
            return entry
        due = self._wall_start + entry.options["eta"]
        options = {name: value for name, value in entry.options.items() if name != "eta"}
        if through_celery:
            options["eta"] = datetime.fromtimestamp(due, tz=UTC)
        else:
            options["countdown"] = max(0.0, due - self.wall())
        return replace(entry, options=options)

    def _entry(self, index: int) -> MixItem:
        """Entry *index* as the next task publishes it: a mix entry's generated arguments made, numbered in order (a
        trace's lines are plain data), and an eta turned into a countdown."""
        entry = self._entries[index] if self._offsets else self._entries[index].rendered(self._values, self._seq)
        if isinstance(entry, CanvasEntry):
            entry = replace(entry, members=tuple(self._timed(member, True) for member in entry.members),
                            callback=self._timed(entry.callback, True) if entry.callback is not None else None)
        else:
            entry = self._timed(entry, self.tasks is not None)
        self._seq += len(entry.members) + (entry.callback is not None) if isinstance(entry, CanvasEntry) else 1
        return entry

    def _prepared(self, task_id: str, index: int) -> Any:
        """What task *index* goes out as, made in the schedule's order (so that a seed makes the same values however
        the tasks fall into batches): the raw publisher's message, or the entry to publish through Celery."""
        template = self._templates[index] if self._templates and self.tasks is None else None
        if template is not None:
            self._seq += 1
            return template.render(task_id)
        entry = self._entry(index)
        if isinstance(entry, MixEntry) and self.tasks is None:
            return self._template(entry).render(task_id)
        return entry

    def _next_tasks(self, sent: int, count: int) -> list[tuple[str, int]]:
        """Ids and entries of the next *count* tasks: a trace's in order, else drawn from the mix by weight."""
        if self._offsets:
            return [(str(uuid.uuid4()), index) for index in range(sent, sent + count)]
        picks = self._rng.choices(range(len(self._entries)), weights=self._weights, k=count)
        return [(str(uuid.uuid4()), index) for index in picks]

    def _offset(self, index: int) -> float:
        """When task *index* is due, in seconds from the start."""
        return self._offsets[index] if self._offsets else index / self.profile.rate

    def _due_by(self, elapsed: float) -> int:
        """How many tasks are due *elapsed* seconds after the start."""
        return bisect_right(self._offsets, elapsed) if self._offsets else int(elapsed * self.profile.rate) + 1

    def _record(self, tasks: list[tuple[str, str]], scheduled: list[float], t: float, result: Outcome) -> None:
        """A publish record per task sent: (id, kind) with the time it was due and its own outcome."""
        for index, ((task_id, kind), due) in enumerate(zip(tasks, scheduled, strict=True)):
            outcome = result.of(index)
            PUBLISHED.labels(kind, outcome.outcome).inc()
            if outcome.outcome != "ok":
                PUBLISH_ERRORS.labels(kind).inc()
            if self.ledger is not None:
                self.ledger.write({"type": "publish", "id": task_id, "kind": kind, "node": self.node,
                                   "scheduled": due, "t": t, "outcome": outcome.outcome, "error": outcome.error})

    def _send_canvas(self, workflow: str, entry: CanvasEntry, due: float) -> Outcome:
        """Publish one canvas: its members' ids first in a ``workflow`` record, then a publish record for each task
        the load sends itself (a chain's first link, every member of a group or a chord's header); the rest are
        published by the workers that run their predecessors."""
        assert self.canvases is not None
        members = [*entry.members, *((entry.callback,) if entry.callback else ())]
        ids = [str(uuid.uuid4()) for _ in members]
        result = self.canvases.publish(entry, ids)
        t = self.wall()
        sent = 1 if entry.shape == "chain" else len(entry.members)
        if self.ledger is not None:
            self.ledger.write({"type": "workflow", "id": workflow, "shape": entry.shape, "node": self.node,
                               "tasks": [[task_id, member.kind] for task_id, member in zip(ids, entry.members,
                                                                                           strict=False)],
                               "callback": [ids[-1], entry.callback.kind] if entry.callback else None,
                               "scheduled": due, "t": t, "outcome": result.outcome})
        self._record([(task_id, member.kind) for task_id, member in zip(ids[:sent], members, strict=False)],
                     [due] * sent, t, result)
        return result

    def _send(self, tasks: list[tuple[str, int]], due: float, scheduled: list[float]) -> None:
        prepared = [(task_id, index, when, self._prepared(task_id, index))
                    for (task_id, index), when in zip(tasks, scheduled, strict=True)]
        failed = sent = 0
        by_queue: dict[str | None, list[tuple[str, int, float, Any]]] = {}
        for task_id, index, when, message in prepared:  # raw messages: one LPUSH per queue (usually one)
            if not isinstance(message, MixEntry | CanvasEntry):
                entry = self._entries[index]
                queue = entry.options.get("queue") if isinstance(entry, MixEntry) else None
                by_queue.setdefault(queue, []).append((task_id, index, when, message))
        for queue, batch in by_queue.items():
            result = self.publisher.publish([message for *_, message in batch], queue)
            self._record([(task_id, self._entries[index].kind) for task_id, index, _, _ in batch],
                         [when for _, _, when, _ in batch], self.wall(), result)
            failed += sum(result.of(index).outcome != "ok" for index in range(len(batch)))
            sent += len(batch)
        for task_id, _index, when, entry in prepared:  # through Celery, one by one
            if not isinstance(entry, MixEntry | CanvasEntry):
                continue
            if self.stop_event.is_set():  # a publish may block on the app's retry policy: stop between them
                break
            if isinstance(entry, CanvasEntry):
                result = self._send_canvas(task_id, entry, when)
            else:
                assert self.tasks is not None
                result = self.tasks.publish(entry, task_id)
                self._record([(task_id, entry.kind)], [when], self.wall(), result)
            failed += result.outcome != "ok"
            sent += 1
        lag = max(self.clock() - due, 0.0)
        LAG.set(lag)
        self.stats.published += sent
        self.stats.errors += failed
        self.stats.max_lag = max(self.stats.max_lag, lag)
        self.stats.lags.append(lag)

    def run(self) -> LoadStats:
        """Publish until the profile's duration is over (a trace: its last task) or stop() is called."""
        RATE.set(self.profile.rate if not self._offsets else len(self._offsets) / max(self._offsets[-1], 1.0))
        kinds = {member.kind for entry in self._entries
                 for member in (entry.members if isinstance(entry, CanvasEntry) else (entry,))}
        for kind in kinds:  # every kind's series exists from the start, errors at 0
            PUBLISHED.labels(kind, "ok")
            PUBLISH_ERRORS.labels(kind)
        total = self.profile.total
        start = self.clock()
        wall_start = self._wall_start = self.wall()
        sent = 0
        while not self.stop_event.is_set() and (total is None or sent < total):
            now = self.clock()
            due = self._due_by(now - start) - sent
            if total is not None:
                due = min(due, total - sent)
            if due <= 0:
                self.stop_event.wait(min(start + self._offset(sent) - now, 0.05))
                continue
            count = min(due, MAX_BATCH)
            # Lag is measured against the first task of the batch, the one that has waited longest.
            scheduled = [wall_start + self._offset(sent + offset) for offset in range(count)]
            self._send(self._next_tasks(sent, count), start + self._offset(sent), scheduled)
            sent += count
        if self.ledger is not None:
            self.ledger.sync()
        if self._offsets and self.profile.duration is None:
            self.stop_event.wait()  # a trace plays once: idle until stopped (a service that exits is started again)
        return self.stats

    def stop(self) -> None:
        self.stop_event.set()


def profile_from_mapping(data: dict[str, Any], duration: float | None = None) -> LoadProfile:
    """A profile from its YAML/JSON form: rate, mix [tasks and canvases], seed, publish_timeout (seconds), publisher
    (raw or celery)."""
    mix = tuple(mix_item(entry) for entry in data.get("mix") or [])
    replay = trace.read(data["replay"]) if data.get("replay") else ()
    return LoadProfile(rate=float(data.get("rate") or 0), mix=mix, seed=int(data.get("seed", 0)),
                       publish_timeout=float(data.get("publish_timeout", 2.0)), duration=duration,
                       publisher=str(data.get("publisher", "raw")), replay=replay,
                       delivery_mode=celery_settings.delivery_mode(data.get("delivery_mode")))
