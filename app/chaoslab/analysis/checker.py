"""The checker: judge a run's recorded history task by task.

Pure Python over plain data: the ledger records of a run (see :mod:`chaoslab.ledger`), and what the broker and
Celery's result backend held when the history was collected (a :class:`~chaoslab.broker_state.BrokerState`). It
needs no lab::

    summary = check(read_records(paths), phases, planned_faults, run_end, snapshot=state, clocks=corrections)

It writes nothing: :mod:`chaoslab.analysis.run_dir` keeps its output in the run directory (``summary.json``,
``tasks.csv``, ``executions.csv``), where every other module reads it.

History
    ``publish`` records (the load generator: when each task was due, ``scheduled``, and when its publish returned,
    ``t``), ``received`` (a worker's main process got the message), ``start`` and ``end`` (an execution), ``alive``
    (the worker processes alive at collection), ``fault`` (a fault taking effect and being reverted, from the node
    agents) and ``clock`` records, in any order and from any number of files. Records of a node whose clock was off
    the controller's are corrected by *clocks* (node -> :class:`~chaoslab.clock.Correction`) as they are read.

Executions
    A start record opens an execution; an end record closes the most recent open execution of the same process
    (node, pid and process start) and attempt. An end without a matching start counts as an execution of its own.
    Records written after the run end still count (a task that ran during collection did run); the figures per
    phase count only what happened inside the phases. ``executions`` lists every one (:class:`Execution`), those of
    ids never published too, in time order.

Classes (every published task id gets exactly one, decided in this order)
    ``publish_failed``
        The publish outcome was ``error`` or ``timeout`` (cause: which). The producer was told the task was not
        sent; one that executed anyway is counted (and listed) as ``publish_failed_executed``.
    ``pending``
        Still in the broker at the end, or still running: a backlog, never a loss. Cause: ``queued`` (in a queue
        list), ``reserved`` (delivered to a worker and not acknowledged: prefetched, waiting for its ETA, or running
        with late acknowledgement; a dead worker's reserved messages are handed out again after the visibility
        timeout), ``completed_unacked`` (reserved, yet it ran to success: its acknowledgement never reached the
        broker, e.g. Redis refused the result's write first, so the broker hands it out again after the visibility
        timeout and it runs twice), ``running`` (its last execution has no end and its process was alive at
        collection, and the result backend does not say it finished), ``running_unverified`` (the same, with no
        ``alive`` record for the node to tell), ``unacked_unnamed`` (RabbitMQ: nowhere to be seen, but the broker
        counted unacknowledged messages no worker named, and a live worker could hold this one).
    ``duplicated_completed``, ``duplicated_not_completed``
        Redelivered: executed more than once because the broker handed the same message out again (an attempt
        number executed twice, or an execution flagged ``redelivered``), split by whether any execution succeeded.
        A not-completed duplicate's cause is how it ended: ``failed``, ``failed_by_worker`` or ``gone``.
        Retries the task asked for (``self.retry``, ``autoretry_for``) are not duplicates: they run with increasing
        attempt numbers, and count in ``retries``. A completed duplicate's cause is ``eta_beyond_visibility_timeout``
        when it waited for an ETA (a countdown) that lay further after its publish than the broker's visibility
        timeout: the worker held the message unacknowledged until then, the broker handed it out again meanwhile.
    ``completed``
        Succeeded: a successful end record, or the result backend's SUCCESS (the pool process stored its result and
        died before it wrote the end record; or it finished after the ledgers were read).
    ``failed``
        The task raised: its last execution ended ``failure``, or the result backend holds a FAILURE Celery's worker
        did not make itself. Cause: the exception's type.
    ``failed_by_worker``
        No end record, and the result backend holds a failure Celery's worker made itself because the task could not
        report: ``WorkerLostError`` (the pool process died), ``TimeLimitExceeded`` (the hard time limit killed it),
        ``Terminated``. The caller was told; the work did not finish and was not run again. Cause: the type.
        Or the worker discarded the task instead of running it, and recorded it REVOKED: cause ``expired`` (it came
        to run after its ``expires``), ``revoked`` or ``terminated`` (from a ``revoked`` record, else the result
        backend's REVOKED).
    ``lost``
        Published successfully and gone: not in the broker, no result, never completed, not running. Cause:
        ``retry_never_ran`` (its last execution ended ``retry`` and the retried message is gone),
        ``killed_running`` (its execution's process was gone at collection: the message had been acknowledged, early
        acknowledgement, and nothing recorded a failure), ``prefetched_by_dead_worker`` (received by a worker
        process that was gone at collection, never started), ``prefetched_broker_data_loss`` (received by a worker
        that lived on, never started, and the broker restarted after it was received: Celery's consumer drops the
        messages it prefetched when its connection breaks, and the restarted broker had forgotten their
        unacknowledged copies), ``received_never_started`` (received by a worker that lived on, never started, and
        nothing explains where it went), ``broker_data_loss`` (never received by a worker, and
        the broker restarted after it was published, or evicted keys), ``taken_by_killed_worker`` (never received,
        and a worker's main process was killed after it was published: kombu's Redis transport moves a message
        from the queue to the unacknowledged set in two steps, and a main process killed between them takes the
        message with it), ``taken_by_cut_off_worker`` (never received, and published while a network partition
        cut a node off: a worker waiting in BRPOP when the cut began has the message popped for it, and the reply
        is lost in the cut before the transport could record it as unacknowledged), ``publisher_killed`` (a chord's
        callback, never received, and a worker's main process was killed while a header execution that may have
        completed the header ran, an execution that never ended: it may have sent the callback in its last instant,
        to the killed consumer's blocked BRPOP, or died before sending it, and Celery sends a chord's callback once:
        the header task run again finds the chord done, or claimed by the dead process; a chain's link is sent
        again when its predecessor runs again), ``never_delivered`` (never
        received, and nothing explains where it went).

    Records for ids that were never published are not classified; their ids and executions count as ``unknown``.

Workflows (canvases)
    A ``workflow`` record (the load generator's) names a canvas's tasks before any runs: a chain's links in order, a
    group's members, a chord's header and callback. The load publishes a chain's first link, a group and a chord's
    header itself (publish records); the workers publish the rest: a chain's next link when the one before
    succeeded, a chord's callback when its whole header did. Those count as published at that success (the last of
    the header's) and are classified like any task; a link whose predecessor never succeeded was never published
    and is ``not_reached``. Each workflow gets one verdict (:class:`WorkflowResult`): ``finished`` (every task
    completed, the callback once), ``pending`` (a task not completed is still pending), ``broken`` (the first task
    in order that did not complete, its position ``link`` from 1 and its class: "its third link was lost"),
    ``callback_repeated`` (a chord's callback ran more than once), ``callback_never`` (the header completed, the
    callback was lost), ``publish_failed``.

Each task's ``final`` state is ``success`` if it succeeded, else the end of its last-started execution: ``failure``,
``retry``, ``unfinished`` (no end), or ``none`` (no execution); a failure only the result backend knows is
``failure``.

Fault windows
    From the nodes' ``fault`` records: each ``applied`` paired with the next ``reverted`` of the same fault on the
    same node (no ``reverted``: open until the run end). Only when the history has no fault record at all (an old
    run, or ledgers that could not be collected) are the *faults* the runner planned used instead.

Phases
    A task belongs to the phase in which it was due (``scheduled``; phases are half-open ``[start, end)``); its
    class, kind, success, queue wait and end to end count there, its run time in the phase in which the execution it
    measures started (a task queued behind others runs under the conditions of then). A completion (the first
    successful end) counts in the phase in which it ended; throughput is completions per second of phase.
    ``fault_throughput`` is the completions per second inside the fault windows (their union); ``target_throughput``
    the same on the nodes the faults were applied to (the windows' targets), inside their own windows, beside those
    nodes' completions per second in the baseline phase (a completion counts on the node of its successful
    execution; None when no window names a node, or none of those nodes ran a task in the baseline). Latencies:
    queue wait = first start - publish returned; run time = end - start of the last successful execution (of the
    last ended one if none succeeded); end to end = last successful end - scheduled (so it includes the load's
    schedule lag). Percentiles are nearest-rank. ``overall`` holds the same figures over the whole run (from the first
    phase start, or the first publish, to the run end).

Recovery time
    Time bins of ``bin_s`` start at the end of the last fault window. Recovered at the first bin start ``t`` where,
    over ``[t, t + window_s)``, the completion rate is within ``tolerance`` of the baseline phase's rate and the mean
    backlog is at most the baseline's backlog level times ``1 + tolerance``. Backlog at ``t`` = tasks published ok by
    ``t`` (scheduled) minus tasks finished (succeeded or failed) by ``t``: a task that never finishes stays in the
    backlog, so wiping the queue is not a recovery. ``None`` when it never happens before the run end.

Delivery guarantee observed (over tasks published ok)
    ``unfinished`` = tasks whose work was cut short and never run again (lost, failed by the worker, and duplicates
    that ended so); ``redelivered`` = duplicated tasks, and pending tasks that ran to success more than once already
    (a message redelivered over and over, never acknowledged). ``exactly-once``: neither; ``at-least-once``:
    redelivered only; ``at-most-once``: unfinished only; ``none``: both (some work was dropped and some ran twice).
    Pending tasks have no outcome yet and are left out otherwise (``pending`` says how many).

Cost
    One pass groups the records by id in plain lists and tuples (repeated strings interned), then each task is
    judged and its events freed; the cyclic garbage collector is paused during the pass (the data has no cycles).
"""

from __future__ import annotations

import gc
import math
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from itertools import chain, pairwise
from operator import itemgetter
from typing import Any, Final, NamedTuple, TypeVar

from chaoslab.broker_state import WORKER_MADE_FAILURES, BrokerState, TaskMeta
from chaoslab.clock import Correction

ResultLookup = Callable[[list[str]], Mapping[str, TaskMeta]]
"""Given the ids published ok that have no successful end record, the result backend's record of those that have
one (the runner reads Redis; a test gives a dict's view)."""

CLASSES: Final = ("completed", "duplicated_completed", "duplicated_not_completed", "failed", "failed_by_worker",
                  "pending", "lost", "publish_failed")
BAD_CLASSES: Final = CLASSES[1:]
DUPLICATED: Final = ("duplicated_completed", "duplicated_not_completed")
CUT_FAULTS: Final = frozenset({"network-partition"})
"""Faults that cut a node off from its peers (the cause ``taken_by_cut_off_worker``)."""
LATENCIES: Final = ("queue_wait", "run_time", "end_to_end")
PERCENTILES: Final = (50, 95, 99)

_START: Final = 0
_END: Final = 1
_TERMINAL: Final = frozenset(("success", "failure"))
_END_T: Final = itemgetter(1)
_HEAD: Final = 5
MALFORMED_EXAMPLES: Final = 5
"""How many malformed records the summary quotes (all are counted)."""
"""A task's state list: [kind, scheduled, outcome, published_at, received, *events]."""

_W = TypeVar("_W", "Phase", "FaultWindow")


@dataclass(frozen=True, slots=True)
class Phase:
    """A named stretch of the run, ``[start, end)`` in epoch seconds."""

    name: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class FaultWindow:
    """When a fault was in force, ``[start, end)`` in epoch seconds, on ``target`` (a node; "" when planned)."""

    fault: str
    start: float
    end: float
    target: str = ""
    source: str = "agent"
    """``agent``: the node's own records; ``planned``: the runner's phase bounds (no records)."""
    effect: dict[str, Any] | None = None
    """What the fault did while in force, as its node measured it (chaoslab.node.fault_effect); None: not
    measured."""


@dataclass(frozen=True, slots=True)
class TargetThroughput:
    """Completions per second on the nodes the faults were applied to: in the baseline phase, and inside those
    nodes' fault windows (their union)."""

    nodes: list[str]
    baseline: float
    fault: float


@dataclass(frozen=True, slots=True)
class RecoveryParams:
    bin_s: float = 1.0
    window_s: float = 5.0
    tolerance: float = 0.10
    baseline_phase: str = "baseline"


DEFAULT_RECOVERY: Final = RecoveryParams()


class TaskResult(NamedTuple):
    """The verdict on one published task; one row of tasks.csv."""

    id: str
    kind: str
    phase: str
    cls: str
    cause: str | None
    final: str
    executions: int
    retries: int
    deliveries: int
    """Received records: how often a worker's main process got the task's message."""
    nodes: str
    publish_t: float
    """When the task was due (the load's schedule)."""
    published_at: float
    """When its publish returned."""
    first_start: float | None
    last_end: float | None
    queue_wait: float | None
    run_time: float | None
    end_to_end: float | None
    successes: int
    completed_at: float | None
    finished_at: float | None
    result: str | None
    """The result backend's state at the end (None: no record, or not looked up)."""
    run_start: float | None = None
    """When the execution run_time measures started (the phase its run time counts in)."""


class WorkflowResult(NamedTuple):
    """The verdict on one published canvas; one row of workflows.csv."""

    id: str
    shape: str
    phase: str
    verdict: str
    link: int | None
    """The position (from 1; a chord's callback after its header) of the first task that did not complete."""
    link_class: str | None
    """That task's class, or ``not_reached``."""
    link_cause: str | None
    tasks: int
    completed: int
    """Its tasks that completed (a chord's callback among them)."""
    duplicated: int
    """Its tasks that ran more than once."""
    callback_runs: int | None
    """How often a chord's callback ran (None for a chain or a group)."""


WORKFLOW_VERDICTS: Final = ("finished", "pending", "broken", "callback_repeated", "callback_never",
                            "publish_failed")
WORKFLOW_HEADER: Final = WorkflowResult._fields


class Execution(NamedTuple):
    """One execution of a task: a start record and the end record that closes it; one row of executions.csv."""

    id: str
    kind: str
    """The task's kind as published; "" for an id never published."""
    node: str
    pid: int
    attempt: int
    redelivered: bool
    start: float | None
    """None for an end record without a start."""
    end: float | None
    """None while it never ended (killed, or still running at collection)."""
    outcome: str | None
    """The end record's: success, failure or retry."""
    error_type: str | None


EXECUTION_HEADER: Final = Execution._fields
_FIELD_GETTERS: Final = {name: itemgetter(index) for index, name in enumerate(TaskResult._fields)}
_PUBLISH_ORDER: Final = itemgetter(TaskResult._fields.index("publish_t"), 0)
CSV_HEADER: Final = tuple("class" if name == "cls" else name for name in TaskResult._fields)


@dataclass(frozen=True, slots=True)
class LatencyStats:
    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None
    mean: float | None = None


@dataclass(frozen=True, slots=True)
class KindStats:
    """The figures of one task kind among the tasks published in a phase; its run time among those that started in
    it (a task queued behind others runs under the conditions of when it starts, not of when it was published)."""

    published: int
    published_ok: int
    succeeded: int
    """Tasks that succeeded, a publish reported failed but executed anyway among them."""
    success_ratio: float | None
    """Of the tasks published ok, those that succeeded (None when none was published ok)."""
    completed: int
    """Completions of the kind inside the phase (whenever the task was published)."""
    throughput: float | None
    run_time: LatencyStats
    end_to_end: LatencyStats


@dataclass(frozen=True, slots=True)
class PhaseStats:
    name: str
    start: float
    end: float
    published: int
    published_ok: int
    classes: dict[str, int]
    completed: int
    throughput: float | None
    success_ratio: dict[str, float]
    latency: dict[str, LatencyStats]
    """Queue wait and end to end of the tasks published in the phase; run time of those whose measured execution (the
    last successful one, else the last that ended) started in it."""
    kinds: dict[str, KindStats] = field(default_factory=dict)
    """Per task kind (those published or started in the phase)."""


@dataclass(frozen=True, slots=True)
class Delivery:
    guarantee: str
    unfinished: int
    redelivered: int
    pending: int


@dataclass(frozen=True, slots=True)
class Recovery:
    time_s: float | None
    note: str
    fault_end: float | None = None
    baseline_rate: float | None = None
    baseline_backlog: float | None = None


@dataclass(slots=True)
class Summary:
    """Everything the checker found. ``tasks`` holds one TaskResult per published id."""

    run_end: float
    phases: list[PhaseStats]
    overall: PhaseStats
    faults: list[FaultWindow]
    fault_source: str
    fault_throughput: float | None
    target_throughput: TargetThroughput | None
    classes: dict[str, int]
    causes: dict[str, dict[str, int]]
    delivery: Delivery
    recovery: Recovery
    records: dict[str, int]
    malformed: list[str]
    """A few of the records the checker could not read (``records["malformed"]`` counts them all)."""
    snapshot: dict[str, Any] | None
    clocks: dict[str, dict[str, float]]
    unknown_ids: list[str]
    unknown_executions: int
    tasks: list[TaskResult] = field(repr=False)
    executions: list[Execution] = field(default_factory=list, repr=False)
    workflows: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per canvas shape, how many workflows got each verdict."""
    workflow_gaps: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per canvas shape, where the workflows that did not finish stopped: ``"<link>: <class> (<cause>)"`` -> how
    many (``"2: lost (killed_running)"``: its second task was lost, killed while it ran)."""
    workflow_results: list[WorkflowResult] = field(default_factory=list, repr=False)
    triggers: list[dict[str, Any]] = field(default_factory=list)
    """Each armed fault's trigger as its node recorded it (:func:`trigger_rows`): whether and when it fired, its
    delay to the fault in force, and the tasks in the window then with their classes."""

    def ids(self, cls: str) -> list[str]:
        """Ids of the tasks of one class, in the order they were due."""
        return [task.id for task in self.tasks if task.cls == cls]

    def count(self, cls: str) -> int:
        return self.classes.get(cls, 0)

    @property
    def duplicated(self) -> int:
        return sum(self.classes.get(cls, 0) for cls in DUPLICATED)

    @property
    def never_completed(self) -> int:
        """Tasks published ok that never succeeded."""
        return sum(task.final != "success" for task in self.tasks if task.cls != "publish_failed")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able view: all figures and the ids of every class but completed (not the task rows)."""
        skipped = {"tasks", "executions", "unknown_ids", "unknown_executions", "workflow_results"}
        data = {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name not in skipped}
        data["tasks"] = len(self.tasks)
        data["duplicated"] = self.duplicated
        data["never_completed"] = self.never_completed
        data["unknown"] = {"ids": len(self.unknown_ids), "executions": self.unknown_executions}
        executed = self.publish_failed_executed()
        data["publish_failed_executed"] = len(executed)
        data["retried"] = sum(task.retries > 0 for task in self.tasks)
        data["ids"] = {**_ids_by_class(self.tasks), "publish_failed_executed": executed, "unknown": self.unknown_ids}
        data["workflow_ids"] = {verdict: [w.id for w in self.workflow_results if w.verdict == verdict]
                                for verdict in WORKFLOW_VERDICTS[1:]} if self.workflow_results else {}
        return data

    def publish_failed_executed(self) -> list[str]:
        """Ids whose publish reported an error or timeout but which executed anyway."""
        return [task.id for task in self.tasks if task.cls == "publish_failed" and task.executions]


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    return value


def _ids_by_class(tasks: Iterable[TaskResult]) -> dict[str, list[str]]:
    ids: dict[str, list[str]] = {cls: [] for cls in BAD_CLASSES}
    for task in tasks:
        bucket = ids.get(task.cls)
        if bucket is not None:
            bucket.append(task.id)
    return ids


# ---------------------------------------------------------------------------------------
# Grouping records by id (one pass, plain tuples)


class _Collector:
    """Groups records by task id.

    Per id a list ``[kind, scheduled, publish_outcome, published_at, received, event, event, ...]``; ``received`` is
    None or ``(count, node, pid, ps)`` of the last received record; an event is ``(t, _START, node, pid, attempt,
    redelivered, ps)`` or ``(t, _END, node, pid, attempt, outcome, ps, error_type)``, so sorting a task's events
    orders them by time, starts before ends. Repeated values (kinds, nodes, outcomes, pids, process start times)
    are interned: a million tasks share a handful of those objects.
    """

    def __init__(self, run_end: float, clocks: Mapping[str, Correction] | None = None) -> None:
        self.run_end = run_end
        self.tasks: dict[str, list[Any]] = {}
        self.counts = dict.fromkeys(("publish", "received", "start", "end", "fault", "clock", "alive", "workflow",
                                     "revoked", "other", "after_run_end", "repeated_publish", "malformed"), 0)
        self.revoked: dict[str, str] = {}
        self.workflows: list[_Workflow] = []
        self.malformed: list[str] = []
        self._atoms: dict[Any, Any] = {}
        # node -> ((pid, process start) pairs, pids) alive when the ledgers were collected (``alive`` records)
        self.alive: dict[str, tuple[frozenset[tuple[int, float]], frozenset[int]]] = {}
        self.faults: list[tuple[float, str, str, str]] = []
        self.effects: list[tuple[float, str, str, dict[str, Any]]] = []
        # when a worker's main process was killed (worker-kill's kill records)
        self.main_kills: list[float] = []
        # a chord's callback -> the earliest instant its publisher may have sent it, when that is before the success
        # it counts as published at: a header execution that never ended (killed) may have sent it in its last
        # instant, its end record never written (a chain's link is sent again by its predecessor's next run)
        self.published_from: dict[str, float] = {}
        self.triggers: list[dict[str, Any]] = []
        self.clocks = {node: c for node, c in (clocks or {}).items() if c.significant()}

    def add_all(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Every record; one the checker cannot read (a missing field, a wrong type) is counted and a few are kept
        as examples (``malformed``), and the check goes on."""
        handlers = {"start": self._add_start, "end": self._add_end, "publish": self._add_publish,
                    "received": self._add_received, "alive": self._add_alive, "fault": self._add_fault,
                    "clock": self._add_clock, "workflow": self._add_workflow, "revoked": self._add_revoked}
        counts = self.counts
        for record in records:
            try:
                kind = record["type"]
                handlers.get(kind, self._add_other)(record)
                counts[kind if kind in handlers else "other"] += 1
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                counts["malformed"] += 1
                if len(self.malformed) < MALFORMED_EXAMPLES:
                    self.malformed.append(f"{type(exc).__name__}: {exc}: {repr(record)[:200]}")

    def _t(self, record: Mapping[str, Any], key: str = "t") -> float:
        t = float(record[key])
        if not math.isfinite(t):
            raise ValueError(f"{key} is not a finite time")
        if self.clocks:
            correction = self.clocks.get(record.get("node", ""))
            if correction is not None:
                t -= correction.at(t)
        return t

    def _add_other(self, record: Mapping[str, Any]) -> None:
        pass

    def _add_clock(self, record: Mapping[str, Any]) -> None:
        pass

    def _add_alive(self, record: Mapping[str, Any]) -> None:
        procs = frozenset((int(pid), float(start)) for pid, start in record.get("procs") or ())
        self.alive[_text(record["node"])] = (procs, frozenset(int(pid) for pid in record["pids"]))

    def _add_fault(self, record: Mapping[str, Any]) -> None:
        event = str(record["event"])
        if event in ("applied", "reverted"):
            self.faults.append((self._t(record), event, str(record["fault"]), str(record["node"])))
        elif event == "measured" and isinstance(record.get("effect"), dict):
            self.effects.append((self._t(record), str(record["fault"]), str(record["node"]), dict(record["effect"])))
        elif event == "kill" and record.get("main"):
            self.main_kills.append(self._t(record))
        elif event == "triggered":  # its instants on the run's clock, as every record's
            self.triggers.append({**record, "t": self._t(record), "at": self._t(record, "at"),
                                  "in_force": self._t(record, "in_force")})
        elif event == "untriggered":
            self.triggers.append({**record, "t": self._t(record)})

    def _add_revoked(self, record: Mapping[str, Any]) -> None:
        reason = "expired" if record.get("expired") else "terminated" if record.get("terminated") else "revoked"
        self.revoked[_text(record["id"])] = reason

    def _add_workflow(self, record: Mapping[str, Any]) -> None:
        intern = self._atoms.setdefault
        members = tuple((_text(task_id), intern(kind, _text(kind))) for task_id, kind in record["tasks"])
        shape, callback = _text(record["shape"]), record.get("callback")
        if not members or shape not in ("chain", "group", "chord") or (shape == "chord") != bool(callback):
            raise ValueError("a workflow names its tasks, a known shape, and a callback for a chord only")
        if callback and (not isinstance(callback, list) or len(callback) != 2):
            raise ValueError("a chord's callback is [id, kind]")
        self.workflows.append(_Workflow(
            _text(record["id"]), intern(shape, shape), members,
            (_text(callback[0]), _text(callback[1])) if callback else None,
            self._t(record, "scheduled") if record.get("scheduled") is not None else self._t(record),
            _text(record["outcome"])))

    def imply_publishes(self, stored: Mapping[str, TaskMeta] | None = None) -> list[str]:
        """The tasks of a workflow the workers published: a chain's link once the one before succeeded, a chord's
        callback once its whole header did (see the module doc), whatever the load's publish said (a publish that
        timed out may have reached the broker). A success is the ledger's first successful end, else the result
        backend's SUCCESS in *stored*. Returns the ids found published by this pass."""
        added: list[str] = []
        for workflow in self.workflows:
            if workflow.shape == "chain":
                for (before, _kind), (task_id, kind) in pairwise(workflow.members):
                    done = self._succeeded_at(before, stored)
                    if done is None:
                        break
                    added += self._implied(task_id, kind, done)
            elif workflow.callback is not None:
                done_times = [self._succeeded_at(task_id, stored) for task_id, _kind in workflow.members]
                if all(done is not None for done in done_times):
                    last = max(done for done in done_times if done is not None)
                    implied = self._implied(*workflow.callback, last)
                    if implied and self.main_kills:  # only a kill can have cut its sender short
                        since = self._earliest_sender(workflow.members, done_times, last)
                        if since is not None:
                            self.published_from[workflow.callback[0]] = since
                    added += implied
        return added

    def _unended_starts(self, task_id: str, before: float) -> list[float]:
        """When the executions of *task_id* that started before *before* and never ended began."""
        state = self.tasks.get(task_id)
        if state is None:
            return []
        return [execution[0] for execution in _pair_executions(state[_HEAD:])
                if execution[1] is None and execution[0] is not None and execution[0] < before]

    def _earliest_sender(self, members: tuple[tuple[str, str], ...], done_times: list[float | None],
                         last: float) -> float | None:
        """For a chord's callback counted as published at *last*: the earliest instant a header execution that
        never ended may have completed the header and sent it (it had started, and every other member had
        succeeded); None when no such execution started before *last*."""
        found = []
        for index, (task_id, _kind) in enumerate(members):
            starts = self._unended_starts(task_id, last)
            if starts:
                others = max((done for other, done in enumerate(done_times) if other != index and done is not None),
                             default=-math.inf)
                found += [max(started, others) for started in starts]
        return min(found, default=None)

    def _succeeded_at(self, task_id: str, stored: Mapping[str, TaskMeta] | None) -> float | None:
        """When a task first ended in success (its ledger's end records, else the result backend's date); None if
        it never did."""
        state = self.tasks.get(task_id)
        if state is not None:
            ended = min((event[0] for event in state[_HEAD:] if event[1] == _END and event[5] == "success"),
                        default=None)
            if ended is not None:
                return ended
        meta = (stored or {}).get(task_id)
        return meta.done if meta is not None and meta.state == "SUCCESS" and meta.done is not None else None

    def _implied(self, task_id: str, kind: str, t: float) -> list[str]:
        state = self._state(task_id)
        if state[2] is not None:
            return []
        state[0], state[1], state[2], state[3] = kind, t, "ok", t
        return [task_id]

    def _state(self, task_id: str) -> list[Any]:
        state = self.tasks.get(task_id)
        if state is None:
            state = self.tasks[_text(task_id)] = [None, None, None, None, None]
        return state

    def _add_received(self, record: Mapping[str, Any]) -> None:
        intern = self._atoms.setdefault
        node, pid, ps = _text(record["node"]), int(record["pid"]), record.get("ps")
        state = self._state(record["id"])
        count = state[4][0] + 1 if state[4] else 1
        state[4] = (count, intern(node, node), intern(pid, pid), intern(ps, ps), self._t(record))

    def _add_start(self, record: Mapping[str, Any]) -> None:
        ps = record.get("ps")
        eta, vt = record.get("eta"), record.get("vt")
        # An execution held for an ETA: the latest publish time from which that ETA lay beyond the visibility timeout.
        # The ETA is on the publisher's clock (it wrote it), not this worker's: left uncorrected; an unreadable one
        # is no ETA (the execution still counts).
        held = (float(eta) - float(vt) if all(isinstance(x, int | float) and not isinstance(x, bool)
                                             and math.isfinite(x) for x in (eta, vt)) else None)
        self._add_event(record, (_START, bool(record["redelivered"]), self._atoms.setdefault(ps, ps), held))

    def _add_end(self, record: Mapping[str, Any]) -> None:
        intern = self._atoms.setdefault
        outcome, error, ps = _text(record["outcome"]), record.get("error_type"), record.get("ps")
        self._add_event(record, (_END, intern(outcome, outcome), intern(ps, ps), intern(error, error)))

    def _add_event(self, record: Mapping[str, Any], detail: tuple[Any, ...]) -> None:
        t = self._t(record)
        intern = self._atoms.setdefault
        node, pid, attempt = _text(record["node"]), int(record["pid"]), int(record["attempt"])
        what, *rest = detail
        event = (t, what, intern(node, node), intern(pid, pid), attempt, *rest)
        self._state(record["id"]).append(event)
        if t > self.run_end:
            self.counts["after_run_end"] += 1

    def _add_publish(self, record: Mapping[str, Any]) -> None:
        intern = self._atoms.setdefault
        kind, outcome = _text(record["kind"]), _text(record["outcome"])
        returned = self._t(record)
        scheduled = self._t(record, "scheduled") if record.get("scheduled") is not None else returned
        state = self._state(record["id"])
        if state[2] is not None:
            self.counts["repeated_publish"] += 1
            if not _better_publish(returned, outcome, state[3], state[2]):
                return
        state[0], state[1], state[2], state[3] = intern(kind, kind), scheduled, intern(outcome, outcome), returned


class _Workflow(NamedTuple):
    id: str
    shape: str
    members: tuple[tuple[str, str], ...]
    """(id, kind) of a chain's links in order, a group's members or a chord's header."""
    callback: tuple[str, str] | None
    scheduled: float
    outcome: str


def _text(value: Any) -> str:
    """A record's text field; anything else makes the record malformed."""
    if type(value) is not str:
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value


def _better_publish(t: float, outcome: str, old_t: float, old_outcome: str) -> bool:
    """For an id published more than once: an ok publish wins, then the earlier one."""
    return (outcome != "ok", t) < (old_outcome != "ok", old_t)


def _unfinished(states: Mapping[str, list[Any]]) -> list[str]:
    """Ids published ok without a successful end record: those whose result is looked up."""
    return [task_id for task_id, state in states.items()
            if state[2] == "ok" and not any(event[1] == _END and event[5] == "success" for event in state[_HEAD:])]


def _with_results(snapshot: BrokerState | None, states: Mapping[str, list[Any]],
                  results: ResultLookup | None) -> BrokerState | None:
    """The snapshot with the result backend's records of the unfinished tasks, when a lookup is given."""
    if results is None:
        return snapshot
    ids = _unfinished(states)
    found = {**(snapshot.results if snapshot is not None else {}), **results(ids)}
    base = snapshot if snapshot is not None else BrokerState(taken=0.0)
    return replace(base, results=found, result_lookups=len(ids))


# ---------------------------------------------------------------------------------------
# Judging one task


def _pair_executions(events: list[tuple[Any, ...]]) -> list[list[Any]]:
    """Executions ``[start_t, end_t, outcome, node, attempt, redelivered, pid, ps, error_type, held]`` in time order
    (``held``: for an execution held for an ETA, its ETA less the visibility timeout)."""
    events.sort(key=itemgetter(0, 1))
    executions: list[list[Any]] = []
    open_by_key: dict[tuple[Any, ...], list[list[Any]]] = {}
    for event in events:
        t, what, node, pid, attempt = event[:5]
        key = (node, pid, event[6], attempt)
        if what == _START:
            execution = [t, None, None, node, attempt, event[5], pid, event[6], None, event[7]]
            open_by_key.setdefault(key, []).append(execution)
            executions.append(execution)
            continue
        stack = open_by_key.get(key)
        if stack:
            execution = stack.pop()
            execution[1], execution[2], execution[8] = t, event[5], event[7]
        else:
            executions.append([None, t, event[5], node, attempt, False, pid, event[6], event[7], None])
    return executions


@dataclass(frozen=True, slots=True)
class _Context:
    """What every task is judged against besides its own records."""

    alive: Mapping[str, tuple[frozenset[tuple[int, float]], frozenset[int]]]
    main_kills: Sequence[float]
    snapshot: BrokerState | None
    clocks: Mapping[str, Correction]
    starts: Sequence[float]
    phases: Sequence[Phase]
    cuts: Sequence[tuple[float, float]] = ()
    """When a network partition cut a node off (its fault windows)."""
    revoked: Mapping[str, str] = field(default_factory=dict)
    """Tasks a worker discarded instead of running: id -> expired, revoked or terminated."""
    published_from: Mapping[str, float] = field(default_factory=dict)
    """A chord's callback -> the earliest instant its publisher may have sent it (a killed header execution)."""

    def process_alive(self, node: str, pid: int, ps: float | None) -> bool | None:
        """Whether a process was alive at collection (None: no alive record for its node)."""
        found = self.alive.get(node)
        if found is None:
            return None
        procs, pids = found
        if ps is not None and procs:
            return (pid, ps) in procs
        return pid in pids

    def done_at(self, worker: str | None, done: float | None) -> float | None:
        """The result backend's ``date_done`` on the controller's clock (the worker is ``celery@<node>``)."""
        if done is None or worker is None:
            return done
        correction = self.clocks.get(worker.partition("@")[2])
        return done - correction.at(done) if correction is not None else done

    def cut_off_at(self, t: float) -> bool:
        """Whether a network partition was in force at *t*."""
        return any(start <= t < end for start, end in self.cuts)

    def main_killed_after(self, t: float) -> bool:
        """Whether a worker's main process was killed after *t*, or at most KILLED_CONSUMER_LINGER_S before it: Redis
        still serves a killed process's blocked BRPOP until it has noticed the closed connection, and a message
        pushed meanwhile goes to the dead process."""
        return bool(self.main_kills) and self.main_kills[-1] >= t - KILLED_CONSUMER_LINGER_S

    def main_killed_between(self, start: float, end: float) -> bool:
        """Whether a worker's main process was killed from *start* (less KILLED_CONSUMER_LINGER_S) to *end*."""
        index = bisect_left(self.main_kills, start - KILLED_CONSUMER_LINGER_S)
        return index < len(self.main_kills) and self.main_kills[index] <= end

    def broker_restarted_since(self, t: float) -> bool:
        """Whether the broker (re)started after *t*: it forgot what it held then, unless it persisted it."""
        snapshot = self.snapshot
        return snapshot is not None and snapshot.broker_started is not None and snapshot.broker_started > t

    def broker_restarted_after(self, t: float) -> bool:
        snapshot = self.snapshot
        if snapshot is None:
            return False
        return (snapshot.broker_started is not None and snapshot.broker_started > t) or snapshot.evicted_keys > 0

    def phase(self, t: float) -> str:
        index = _phase_index(self.starts, self.phases, t)
        return "" if index is None else self.phases[index].name


def _redelivered(executions: list[list[Any]]) -> bool:
    if len(executions) < 2:
        return False
    attempts = [execution[4] for execution in executions]
    return any(execution[5] for execution in executions) or len(set(attempts)) < len(attempts)


def _final_state(executions: list[list[Any]], success: bool, result_failed: bool) -> str:
    if success:
        return "success"
    if not executions:
        return "failure" if result_failed else "none"
    last = executions[-1][2]
    if last is None and result_failed:
        return "failure"
    return last or "unfinished"


def _running(executions: list[list[Any]], ctx: _Context, meta_state: str | None) -> str | None:
    """``running`` / ``running_unverified`` when the last-started execution has no end and still runs."""
    if not executions or executions[-1][1] is not None or meta_state in ("SUCCESS", "FAILURE", "REVOKED"):
        return None
    last = executions[-1]
    alive = ctx.process_alive(last[3], last[6], last[7])
    if alive is None:
        return "running_unverified"
    return "running" if alive else None


def _lost_cause(task: list[Any], task_id: str, executions: list[list[Any]], final: str, ctx: _Context) -> str:
    if final == "retry":
        return "retry_never_ran"
    if executions:
        return "killed_running"
    received = task[4]
    if received is not None and ctx.process_alive(received[1], received[2], received[3]) is False:
        return "prefetched_by_dead_worker"
    if received is not None:
        return "prefetched_broker_data_loss" if ctx.broker_restarted_since(received[4]) else "received_never_started"
    if ctx.broker_restarted_after(task[3]):
        return "broker_data_loss"
    if ctx.main_killed_after(task[3]):
        return "taken_by_killed_worker"
    if ctx.cut_off_at(task[3]):
        return "taken_by_cut_off_worker"
    since = ctx.published_from.get(task_id)
    if since is not None and ctx.main_killed_between(since, task[3]):
        return "publisher_killed"
    return "never_delivered"


def _classify(task: list[Any], task_id: str, executions: list[list[Any]], ctx: _Context,
              success: bool, final: str, meta: Any) -> tuple[str, str | None]:
    """The task's class and cause (see the module doc)."""
    if task[2] != "ok":
        return "publish_failed", task[2]
    where = ctx.snapshot.where(task_id) if ctx.snapshot is not None else None
    if where == "reserved" and success:
        return "pending", "completed_unacked"
    running = where or (None if task_id in ctx.revoked else _running(executions, ctx, meta.state if meta else None))
    if running:
        return "pending", running
    failure_cls, failure_cause = _failure(executions, meta)
    if _redelivered(executions):
        if success:
            return "duplicated_completed", _duplicate_cause(task, executions)
        return "duplicated_not_completed", failure_cls or "gone"
    if success:
        return "completed", None
    if failure_cls:
        return failure_cls, failure_cause
    revoked = ctx.revoked.get(task_id) or ("revoked" if meta is not None and meta.state == "REVOKED" else None)
    if revoked:
        return "failed_by_worker", revoked
    cause = _lost_cause(task, task_id, executions, final, ctx)
    if cause in MAYBE_HELD and ctx.snapshot is not None and ctx.snapshot.unnamed_unacked:
        return "pending", "unacked_unnamed"
    return "lost", cause


KILLED_CONSUMER_LINGER_S = 0.5
"""How long before a task's publish a worker's main process may have been killed and still have taken its message:
the broker may hand a message to a blocked read of a dead consumer until it notices the connection closed (seen on
the lab: a chain's link pushed 2 ms after the kill of the worker whose BRPOP was waiting, never seen again)."""

# Why a task may be gone though a live consumer could still hold it unacknowledged: RabbitMQ names no unacknowledged
# message, the workers name those they hold, and when the broker counted more than they named (a worker did not
# answer) such a task may be one of them: pending, not lost.
MAYBE_HELD = frozenset({"received_never_started", "never_delivered", "taken_by_cut_off_worker", "publisher_killed"})


def _duplicate_cause(task: list[Any], executions: list[list[Any]]) -> str | None:
    """``eta_beyond_visibility_timeout`` when the task waited for an ETA further from its publish than the broker's
    visibility timeout: the worker holds such a message unacknowledged until its ETA, and kombu's Redis transport
    hands it out again when the timeout passes, so it runs twice (Celery's docs warn of it)."""
    if any(execution[9] is not None and execution[9] > task[3] for execution in executions):
        return "eta_beyond_visibility_timeout"
    return None


def _failure(executions: list[list[Any]], meta: Any) -> tuple[str | None, str | None]:
    """(``failed`` or ``failed_by_worker``, the exception type) when the task's end is a failure, else (None, None)."""
    last = executions[-1] if executions else None
    if last is not None and last[2] == "failure":
        return "failed", last[8]
    if (last is None or last[2] is None) and meta is not None and meta.state == "FAILURE":
        return ("failed_by_worker" if meta.exc_type in WORKER_MADE_FAILURES else "failed"), meta.exc_type
    return None, None


def _nodes_label(executions: list[list[Any]]) -> str:
    return ";".join(sorted({execution[3] for execution in executions}))


def _difference(later: float | None, earlier: float | None) -> float | None:
    return None if later is None or earlier is None else later - earlier


def _keep_executions(task_id: str, kind: str, executions: list[list[Any]], out: list[Execution]) -> None:
    """The paired *executions* of one task as Execution rows, appended to *out*."""
    out.extend(Execution(task_id, kind, e[3], e[6], e[4], e[5], e[0], e[1], e[2], e[8]) for e in executions)


def _execution_order(execution: Execution) -> tuple[float, str, str, int]:
    t = execution.start if execution.start is not None else execution.end
    return (t if t is not None else math.inf), execution.id, execution.node, execution.pid


def _judge(task_id: str, state: list[Any], ctx: _Context, out: list[Execution]) -> TaskResult:
    """The verdict on one published task; its executions are appended to *out*."""
    scheduled, published_at = state[1], state[3]
    executions = _pair_executions(state[_HEAD:])
    _keep_executions(task_id, state[0], executions, out)
    ended = sorted((execution for execution in executions if execution[1] is not None), key=_END_T)
    successes = [execution for execution in ended if execution[2] == "success"]
    meta = ctx.snapshot.results.get(task_id) if ctx.snapshot is not None else None
    result_done = ctx.done_at(meta.worker, meta.done) if meta is not None else None
    success = bool(successes) or (meta is not None and meta.state == "SUCCESS")
    final = _final_state(executions, success, meta is not None and meta.state == "FAILURE")
    cls, cause = _classify(state, task_id, executions, ctx, success, final, meta)
    decisive = (successes or ended)[-1] if ended else None
    first_start = executions[0][0] if executions else None
    completed_at = successes[0][1] if successes else (result_done if success else None)
    last_success = successes[-1][1] if successes else completed_at
    terminal = next((execution[1] for execution in ended if execution[2] in _TERMINAL), None)
    if terminal is None and meta is not None and meta.state in ("SUCCESS", "FAILURE"):
        terminal = result_done
    received = state[4]
    return TaskResult(
        task_id,
        state[0],
        ctx.phase(scheduled),
        cls,
        cause,
        final,
        len(executions),
        len({execution[4] for execution in executions}) - 1 if executions else 0,
        received[0] if received else 0,
        _nodes_label(executions),
        scheduled,
        published_at,
        first_start,
        ended[-1][1] if ended else None,
        _difference(first_start, published_at),
        _difference(decisive[1], decisive[0]) if decisive else None,
        _difference(last_success, scheduled),
        len(successes) or int(success),
        completed_at,
        terminal,
        meta.state if meta is not None else None,
        decisive[0] if decisive else None,
    )


# ---------------------------------------------------------------------------------------
# Judging workflows

_COMPLETED: Final = frozenset(("completed", "duplicated_completed"))


def _judge_workflow(workflow: _Workflow, by_id: Mapping[str, TaskResult], ctx: _Context) -> WorkflowResult:
    """The verdict on one canvas, from its tasks' verdicts (see the module doc)."""
    ids = [task_id for task_id, _kind in workflow.members]
    if workflow.callback is not None:
        ids.append(workflow.callback[0])
    results = [by_id.get(task_id) for task_id in ids]
    completed = sum(result is not None and result.cls in _COMPLETED for result in results)
    duplicated = sum(result is not None and result.cls in DUPLICATED for result in results)
    callback = results[-1] if workflow.callback is not None else None
    runs = (callback.executions if callback is not None else 0) if workflow.callback is not None else None
    base = dict(id=workflow.id, shape=workflow.shape, phase=ctx.phase(workflow.scheduled), tasks=len(ids),
                completed=completed, duplicated=duplicated, callback_runs=runs)
    if workflow.outcome != "ok":
        return WorkflowResult(**base, verdict="publish_failed", link=1, link_class="publish_failed",
                              link_cause=workflow.outcome)
    gap = next(((position, result) for position, result in enumerate(results, 1)
                if result is None or result.cls not in _COMPLETED), None)
    if gap is None:
        verdict = "callback_repeated" if callback is not None and callback.cls in DUPLICATED else "finished"
        return WorkflowResult(**base, verdict=verdict, link=None, link_class=None, link_cause=None)
    position, result = gap
    if result is None:
        return WorkflowResult(**base, verdict="broken", link=position, link_class="not_reached", link_cause=None)
    if result.cls == "pending":
        verdict = "pending"
    elif result is callback and result.cls == "lost":
        verdict = "callback_never"
    else:
        verdict = "broken"
    return WorkflowResult(**base, verdict=verdict, link=position, link_class=result.cls, link_cause=result.cause)


def _workflow_counts(results: Iterable[WorkflowResult]) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter[str]] = {}
    for result in results:
        counts.setdefault(result.shape, Counter())[result.verdict] += 1
    return {shape: {verdict: counter[verdict] for verdict in WORKFLOW_VERDICTS if counter[verdict]}
            for shape, counter in sorted(counts.items())}


def _workflow_gaps(results: Iterable[WorkflowResult]) -> dict[str, dict[str, int]]:
    gaps: dict[str, Counter[str]] = {}
    for result in results:
        if result.link is not None:
            cause = f" ({result.link_cause})" if result.link_cause else ""
            gaps.setdefault(result.shape, Counter())[f"{result.link}: {result.link_class}{cause}"] += 1
    return {shape: dict(sorted(counter.items())) for shape, counter in sorted(gaps.items())}


# ---------------------------------------------------------------------------------------
# Figures per phase


def _column(tasks: Iterable[TaskResult], name: str) -> list[Any]:
    """The non-None values of one TaskResult field."""
    return [value for value in map(_FIELD_GETTERS[name], tasks) if value is not None]


def _class_counts(tasks: Iterable[TaskResult]) -> dict[str, int]:
    counts = dict.fromkeys(CLASSES, 0)
    counts.update(Counter(map(_FIELD_GETTERS["cls"], tasks)))
    return counts


def _cause_counts(tasks: Iterable[TaskResult]) -> dict[str, dict[str, int]]:
    causes: dict[str, Counter[str]] = {}
    for task in tasks:
        if task.cause is not None:
            causes.setdefault(task.cls, Counter())[task.cause] += 1
    return {cls: dict(sorted(counter.items())) for cls, counter in sorted(causes.items())}


def latency_columns(tasks: Iterable[TaskResult]) -> dict[str, list[float]]:
    """Each latency of *tasks*, ascending (None values left out)."""
    return {name: sorted(_column(tasks, name)) for name in LATENCIES}


def phase_stats(
    phase: Phase,
    tasks: Sequence[TaskResult],
    completed: int,
    columns: Mapping[str, list[float]] | None = None,
    kind_completions: Mapping[str, list[float]] | None = None,
    started: Sequence[TaskResult] | None = None,
) -> PhaseStats:
    """Figures for the *tasks* published in *phase*; *completed* = completions in it; run times of *started*, the tasks
    whose measured execution started in it (default: *tasks*, as over a whole run).

    *columns*, when given, are the tasks' latency_columns (saves sorting them again); *kind_completions*, when given,
    the ascending completion times of each kind over the whole run (the kinds' completions in the phase).
    """
    classes = _class_counts(tasks)
    published = Counter(map(_FIELD_GETTERS["kind"], tasks))
    succeeded = Counter(task.kind for task in tasks if task.final == "success")
    columns = dict(columns if columns is not None else latency_columns(tasks))
    if started is not None:
        columns["run_time"] = sorted(_column(started, "run_time"))
    return PhaseStats(
        name=phase.name,
        start=phase.start,
        end=phase.end,
        published=len(tasks),
        published_ok=len(tasks) - classes["publish_failed"],
        classes=classes,
        completed=completed,
        throughput=completed / phase.duration if phase.duration > 0 else None,
        success_ratio={kind: succeeded[kind] / count for kind, count in sorted(published.items())},
        latency={name: latency_stats(columns[name]) for name in LATENCIES},
        kinds=_kind_stats(phase, tasks, succeeded, kind_completions or {}, tasks if started is None else started),
    )


def _by_kind(tasks: Iterable[TaskResult]) -> dict[str, list[TaskResult]]:
    found: dict[str, list[TaskResult]] = {}
    for task in tasks:
        found.setdefault(task.kind, []).append(task)
    return found


def _kind_stats(phase: Phase, tasks: Sequence[TaskResult], succeeded: Mapping[str, int],
                completions: Mapping[str, list[float]], started: Sequence[TaskResult]) -> dict[str, KindStats]:
    by_kind, started_by_kind = _by_kind(tasks), _by_kind(started)
    stats = {}
    for kind in sorted(by_kind.keys() | started_by_kind.keys()):
        group = by_kind.get(kind, [])
        done = _count_between(completions.get(kind, []), phase.start, phase.end)
        sent = [task.final == "success" for task in group if task.cls != "publish_failed"]
        stats[kind] = KindStats(
            published=len(group), published_ok=len(sent), succeeded=succeeded[kind],
            success_ratio=sum(sent) / len(sent) if sent else None, completed=done,
            throughput=done / phase.duration if phase.duration > 0 else None,
            run_time=latency_stats(_column(started_by_kind.get(kind, []), "run_time")),
            end_to_end=latency_stats(_column(group, "end_to_end")))
    return stats


def latency_stats(values: Iterable[float]) -> LatencyStats:
    """Count, nearest-rank p50/p95/p99 and max of *values* (sorting sorted values is cheap)."""
    ordered = sorted(values)
    if not ordered:
        return LatencyStats(0, None, None, None, None)
    p50, p95, p99 = (nearest_rank(ordered, p) for p in PERCENTILES)
    return LatencyStats(len(ordered), p50, p95, p99, ordered[-1], math.fsum(ordered) / len(ordered))


def nearest_rank(ordered: Sequence[float], percentile: float) -> float:
    """The nearest-rank percentile of an ascending, non-empty sequence."""
    rank = math.ceil(percentile / 100 * len(ordered))
    return ordered[min(max(rank, 1), len(ordered)) - 1]


def _phase_index(starts: Sequence[float], phases: Sequence[Phase], t: float) -> int | None:
    index = bisect_right(starts, t) - 1
    if index >= 0 and t < phases[index].end:
        return index
    return None


def _count_between(ordered: Sequence[float], start: float, end: float) -> int:
    """How many of the ascending *ordered* lie in ``[start, end)``."""
    return bisect_left(ordered, end) - bisect_left(ordered, start)


# ---------------------------------------------------------------------------------------
# Fault windows


def fault_windows(events: Iterable[tuple[float, str, str, str]], run_end: float,
                  effects: Iterable[tuple[float, str, str, dict[str, Any]]] = ()) -> list[FaultWindow]:
    """Windows from ``(t, event, fault, node)``: ``applied`` to the next ``reverted`` of the same fault and node;
    each with the effect its node measured inside it (``(t, fault, node, effect)``), if any."""
    open_since: dict[tuple[str, str], float] = {}
    windows: list[FaultWindow] = []
    for t, event, fault, node in sorted(events):
        key = (fault, node)
        if event == "applied" and key not in open_since:
            open_since[key] = t
        elif event == "reverted" and key in open_since:
            windows.append(FaultWindow(fault, open_since.pop(key), t, node))
    windows += [FaultWindow(fault, start, max(run_end, start), node) for (fault, node), start in open_since.items()]
    measured = sorted(effects, key=lambda item: item[0])
    for index, window in enumerate(windows):
        effect = next((found for t, fault, node, found in measured if (fault, node) == (window.fault, window.target)
                       and window.start <= t <= window.end + EFFECT_LATE_S), None)
        if effect is not None:
            windows[index] = replace(window, effect=effect)
    return sorted(windows, key=lambda window: (window.start, window.target))


EFFECT_LATE_S = 1.0
"""A measurement recorded this long after its window's end still belongs to it (it is written as the fault ends)."""


def ineffective(faults: Iterable[FaultWindow | Mapping[str, Any]]) -> list[str]:
    """One line per fault window whose node measured less effect than was asked (``fault not effective``)."""
    found = []
    for window in faults:
        data = window if isinstance(window, Mapping) else asdict(window)
        effect = data.get("effect") or {}
        if effect.get("effective") is False:
            found.append(f"{data['fault']} on {data['target']}: {effect_line(effect)}")
    return found


def untriggered(triggers: Iterable[Mapping[str, Any]]) -> list[str]:
    """One line per armed fault whose condition never held: the fault never acted, and the run tested nothing."""
    return [f"{row['fault']} on {row['node']}: its trigger {row['condition']} never held (armed until its "
            f"{row.get('by') or 'deadline'})" for row in triggers if not row.get("fired")]


def window_classes(window: Mapping[str, Mapping[str, Any]]) -> str:
    """The tasks in a trigger's window by class, e.g. ``2 (completed 1, lost 1)``."""
    counts = Counter(str(task.get("cls")) for task in window.values())
    return f"{len(window)} ({', '.join(f'{cls} {count}' for cls, count in sorted(counts.items()))})" if window else "0"


def trigger_lines(triggers: Iterable[Mapping[str, Any]]) -> list[str]:
    """One line per trigger that fired: its condition, the delay to the fault in force, the tasks in the window."""
    return [f"{row['fault']} on {row['node']} fired on {row['condition']}, in force {row['delay'] * 1000:.1f} ms "
            f"after it held; tasks in the window: {window_classes(row.get('window') or {})}"
            for row in triggers if row.get("fired")]


def effect_line(effect: Mapping[str, Any]) -> str:
    """A measured effect in words: asked, measured, ratio."""
    if effect.get("error"):
        return f"not measured ({effect['error']})"
    asked = ", ".join(f"{key} {value}" for key, value in (effect.get("asked") or {}).items())
    measured = ", ".join(f"{key} {value}" for key, value in (effect.get("measured") or {}).items())
    ratio = effect.get("ratio")
    return f"asked {asked}; measured {measured}" + (f" (ratio {ratio:g})" if isinstance(ratio, int | float) else "")


def _union_length_and_count(windows: Sequence[FaultWindow], completions: Sequence[float]) -> tuple[float, int]:
    """Total length of the windows' union, and the completions inside it."""
    length, count, reach = 0.0, 0, -math.inf
    for window in sorted(windows, key=lambda w: w.start):
        start = max(window.start, reach)
        if window.end > start:
            length += window.end - start
            count += _count_between(completions, start, window.end)
        reach = max(reach, window.end)
    return length, count


def fault_throughput(windows: Sequence[FaultWindow], completions: Sequence[float]) -> float | None:
    """Completions per second inside the fault windows; None without windows of any length."""
    length, count = _union_length_and_count(windows, completions)
    return count / length if length > 0 else None


def target_throughput(windows: Sequence[FaultWindow], executions: Sequence[Execution],
                      baseline: Phase | None) -> TargetThroughput | None:
    """Completions per second on the nodes the fault windows name, in the baseline phase and inside those windows
    (each task's first successful end, on the node it ran on); None when no window names a node, the windows have
    no length, or those nodes completed nothing in the baseline (nothing to fall from)."""
    nodes = sorted({window.target for window in windows if window.target})
    if not nodes or baseline is None or baseline.end <= baseline.start:
        return None
    first: dict[str, Execution] = {}
    for execution in executions:
        if execution.outcome == "success" and execution.end is not None and (
                execution.id not in first or execution.end < (first[execution.id].end or math.inf)):
            first[execution.id] = execution
    ends = sorted(execution.end for execution in first.values() if execution.node in nodes and execution.end)
    before = _count_between(ends, baseline.start, baseline.end) / (baseline.end - baseline.start)
    during = fault_throughput([window for window in windows if window.target in nodes], ends)
    return None if during is None or before <= 0 else TargetThroughput(nodes, before, during)


# ---------------------------------------------------------------------------------------
# Recovery and delivery


@dataclass(frozen=True, slots=True)
class _Timeline:
    """Ascending event times over the whole run."""

    published: list[float]
    finished: list[float]
    completed: list[float]

    def backlog(self, t: float) -> int:
        return bisect_right(self.published, t) - bisect_right(self.finished, t)

    def mean_backlog(self, t: float, bins: int, bin_s: float) -> float:
        return sum(self.backlog(t + i * bin_s) for i in range(bins)) / bins

    def rate(self, start: float, end: float) -> float:
        return _count_between(self.completed, start, end) / (end - start)


def recovery_time(
    timeline: _Timeline,
    baseline: Phase | None,
    faults: Sequence[FaultWindow],
    run_end: float,
    params: RecoveryParams = DEFAULT_RECOVERY,
) -> Recovery:
    if baseline is None:
        return Recovery(None, f"no {params.baseline_phase!r} phase")
    if not faults:
        return Recovery(None, "no fault window")
    bins = max(1, round(params.window_s / params.bin_s))
    span = bins * params.bin_s
    if baseline.duration < span:
        return Recovery(None, "baseline phase shorter than the smoothing window")
    base_rate = timeline.rate(baseline.start, baseline.end)
    base_backlog = max(
        timeline.mean_backlog(baseline.start + k * params.bin_s, bins, params.bin_s)
        for k in range(int((baseline.duration - span) / params.bin_s + 1e-9) + 1)
    )
    fault_end = max(fault.end for fault in faults)
    k = 0
    while (t := fault_end + k * params.bin_s) + span <= run_end + 1e-9:
        rate_ok = abs(timeline.rate(t, t + span) - base_rate) <= params.tolerance * base_rate + 1e-9
        if rate_ok and timeline.mean_backlog(t, bins, params.bin_s) <= base_backlog * (1 + params.tolerance):
            return Recovery(k * params.bin_s, "recovered", fault_end, base_rate, base_backlog)
        k += 1
    return Recovery(None, "not recovered by the run end", fault_end, base_rate, base_backlog)


def _recovery_note(recovery: Recovery, tasks: Sequence[TaskResult]) -> Recovery:
    """A not-recovered note that says how many tasks published before the fault ended never finished."""
    if recovery.time_s is not None or recovery.fault_end is None:
        return recovery
    never = sum(task.finished_at is None and task.publish_t <= recovery.fault_end for task in tasks
                if task.cls != "publish_failed")
    if not never:
        return recovery
    note = f"{recovery.note}: {never} tasks published before the fault ended never finished"
    return Recovery(None, note, recovery.fault_end, recovery.baseline_rate, recovery.baseline_backlog)


def delivery_guarantee(unfinished: int, redelivered: int) -> str:
    if unfinished and redelivered:
        return "none"
    if unfinished:
        return "at-most-once"
    return "at-least-once" if redelivered else "exactly-once"


_CUT_SHORT: Final = frozenset(("lost", "failed_by_worker"))


def _delivery(tasks: Iterable[TaskResult]) -> Delivery:
    unfinished = redelivered = pending = 0
    for task in tasks:
        if task.cls in _CUT_SHORT or (task.cls == "duplicated_not_completed" and task.cause != "failed"):
            unfinished += 1
        if task.cls in DUPLICATED or (task.cls == "pending" and task.successes >= 2):
            redelivered += 1
        pending += task.cls == "pending"
    return Delivery(delivery_guarantee(unfinished, redelivered), unfinished, redelivered, pending)


# ---------------------------------------------------------------------------------------
# The whole check


def _coerce(cls: type[_W], item: _W | Mapping[str, Any]) -> _W:
    if isinstance(item, cls):
        return item
    return cls(**{f.name: item[f.name] for f in fields(cls) if f.name in item})


def _validated_phases(phases: Iterable[Phase | Mapping[str, Any]]) -> list[Phase]:
    result = [_coerce(Phase, phase) for phase in phases]
    for earlier, later in pairwise(result):
        if later.start < earlier.end:
            raise ValueError(f"phases must be in time order without overlap: {earlier} then {later}")
    return result


def _by_phase(tasks: Iterable[TaskResult], phases: Sequence[Phase], when: str = "publish_t") -> list[list[TaskResult]]:
    """The tasks whose *when* (a time field: when due, or when first started) lies in each phase, then the rest
    (outside every phase, or never started)."""
    starts = [phase.start for phase in phases]
    groups: list[list[TaskResult]] = [[] for _ in range(len(phases) + 1)]
    at = _FIELD_GETTERS[when]
    for task in tasks:
        t = at(task)
        index = None if t is None else _phase_index(starts, phases, t)
        groups[-1 if index is None else index].append(task)
    return groups


def _phase_figures(
    tasks: Sequence[TaskResult], phases: Sequence[Phase], run: Phase, completions: list[float]
) -> tuple[list[PhaseStats], PhaseStats]:
    """Stats per phase, and over the whole run (merging the phases' sorted latencies)."""
    groups = _by_phase(tasks, phases)
    columns = [latency_columns(group) for group in groups]
    kind_completions: dict[str, list[float]] = {}
    for task in tasks:
        if task.completed_at is not None:
            kind_completions.setdefault(task.kind, []).append(task.completed_at)
    for times in kind_completions.values():
        times.sort()
    started = _by_phase(tasks, phases, "run_start")
    per_phase = [
        phase_stats(phase, group, _count_between(completions, phase.start, phase.end), group_columns,
                    kind_completions, started_in)
        for phase, group, group_columns, started_in in zip(phases, groups, columns, started, strict=False)
    ]
    merged = {name: sorted(chain.from_iterable(part[name] for part in columns)) for name in LATENCIES}
    in_run = _count_between(completions, run.start, run.end)
    return per_phase, phase_stats(run, tasks, in_run, merged, kind_completions)


def _timeline(tasks: Sequence[TaskResult]) -> _Timeline:
    accepted = [task for task in tasks if task.cls != "publish_failed"]
    return _Timeline(
        published=sorted(task.publish_t for task in accepted),
        finished=sorted(_column(accepted, "finished_at")),
        completed=sorted(_column(tasks, "completed_at")),
    )


def _judge_all(collector: _Collector, ctx: _Context) -> tuple[list[TaskResult], list[Execution], list[str], int]:
    """Judge every published id; return the results, every execution, the unknown ids and their executions."""
    tasks: list[TaskResult] = []
    executions: list[Execution] = []
    unknown_ids: list[str] = []
    unknown_executions = 0
    states = collector.tasks
    for task_id, state in states.items():
        states[task_id] = None  # frees the events as we go
        if state[2] is None:
            unknown_ids.append(task_id)
            paired = _pair_executions(state[_HEAD:])
            unknown_executions += len(paired)
            _keep_executions(task_id, "", paired, executions)
        else:
            tasks.append(_judge(task_id, state, ctx, executions))
    return tasks, executions, unknown_ids, unknown_executions


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: the checker builds millions of small acyclic
    containers, and repeated full collections over them cost more than the check."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def check(
    records: Iterable[Mapping[str, Any]],
    phases: Iterable[Phase | Mapping[str, Any]],
    faults: Iterable[FaultWindow | Mapping[str, Any]],
    run_end: float,
    *,
    snapshot: BrokerState | None = None,
    clocks: Mapping[str, Correction] | None = None,
    results: ResultLookup | None = None,
    recovery: RecoveryParams = DEFAULT_RECOVERY,
) -> Summary:
    """Classify every published task and compute the run's figures (see the module doc).

    *records* may come in any order and may be a one-shot iterator (e.g. read_records). *phases* (in time order,
    not overlapping) and *faults* (the planned windows, used only when the records hold no fault record) may be
    dataclasses or mappings with the same keys. Without a *snapshot* nothing is known of the broker: a task not
    finished in the ledgers is then lost or running by the ledgers alone. *results*, when given, is called once
    with the ids that have no successful end record, and what it returns joins the snapshot's results (so the
    ledgers are read once). A record it cannot read is counted (``records["malformed"]``), never fatal. Raises
    ValueError on bad phases.
    """
    phase_list = _validated_phases(phases)
    with _gc_paused():
        collector = _Collector(run_end, clocks)
        collector.add_all(records)
        collector.imply_publishes()
        snapshot = _with_results(snapshot, collector.tasks, results)
        if collector.workflows and snapshot is not None:  # links whose predecessor only the result backend saw end
            added = collector.imply_publishes(snapshot.results)
            if added and results is not None:
                snapshot = replace(snapshot, results={**snapshot.results, **results(added)},
                                   result_lookups=snapshot.result_lookups + len(added))
        if collector.faults:
            fault_list, fault_source = fault_windows(collector.faults, run_end, collector.effects), "agents"
        else:
            planned = [_coerce(FaultWindow, fault) for fault in faults]
            fault_list = [FaultWindow(w.fault, w.start, w.end, w.target, "planned") for w in planned]
            fault_source = "planned" if fault_list else "none"
        cuts = [(window.start, window.end) for window in fault_list if window.fault in CUT_FAULTS]
        ctx = _Context(collector.alive, sorted(collector.main_kills), snapshot, collector.clocks,
                       [p.start for p in phase_list], phase_list, cuts, collector.revoked, collector.published_from)
        tasks, executions, unknown_ids, unknown_executions = _judge_all(collector, ctx)
        collector.tasks.clear()
        tasks.sort(key=_PUBLISH_ORDER)  # the same order whatever order the records came in
        by_id = {task.id: task for task in tasks} if collector.workflows else {}
        workflow_results = sorted((_judge_workflow(workflow, by_id, ctx) for workflow in collector.workflows),
                                  key=itemgetter(0))
        executions.sort(key=_execution_order)
        unknown_ids.sort()
    timeline = _timeline(tasks)
    baseline = next((phase for phase in phase_list if phase.name == recovery.baseline_phase), None)
    run = Phase("run", phase_list[0].start if phase_list else _first_publish(tasks, run_end), run_end)
    per_phase, overall = _phase_figures(tasks, phase_list, run, timeline.completed)
    return Summary(
        run_end=run_end,
        phases=per_phase,
        overall=overall,
        faults=fault_list,
        fault_source=fault_source,
        fault_throughput=fault_throughput(fault_list, timeline.completed),
        target_throughput=target_throughput(fault_list, executions, baseline),
        classes=_class_counts(tasks),
        causes=_cause_counts(tasks),
        delivery=_delivery(tasks),
        recovery=_recovery_note(recovery_time(timeline, baseline, fault_list, run_end, recovery), tasks),
        records=dict(collector.counts),
        malformed=collector.malformed,
        snapshot=snapshot.counts() if snapshot is not None else None,
        clocks={node: correction.to_dict() for node, correction in sorted((clocks or {}).items())},
        unknown_ids=unknown_ids,
        unknown_executions=unknown_executions,
        tasks=tasks,
        executions=executions,
        workflows=_workflow_counts(workflow_results),
        workflow_gaps=_workflow_gaps(workflow_results),
        workflow_results=workflow_results,
        triggers=trigger_rows(collector.triggers, tasks),
    )


def trigger_rows(records: Sequence[Mapping[str, Any]], tasks: Sequence[TaskResult]) -> list[dict[str, Any]]:
    """The armed faults' triggers in time order: condition, node, whether it fired; when it fired, the instant the
    condition held (``at``), the fault in force, the delay between them (seconds, on the node's one clock) and the
    tasks in the window then (``window``: id -> class and cause, as this run judged them)."""
    judged = {task.id: task for task in tasks}
    rows = []
    for record in sorted(records, key=lambda found: float(found.get("t") or 0)):
        row: dict[str, Any] = {"fault": str(record.get("fault")), "node": str(record.get("node")),
                               "condition": str(record.get("condition") or ""),
                               "fired": record.get("event") == "triggered"}
        if not row["fired"]:
            rows.append({**row, "by": str(record.get("by") or "")})
            continue
        window = {}
        for task_id in record.get("ids") or ():
            task = judged.get(str(task_id))
            window[str(task_id)] = {"cls": task.cls if task else "unknown", "cause": task.cause if task else None}
        rows.append({**row, "at": float(record["at"]), "in_force": float(record["in_force"]),
                     "delay": float(record["delay"]), "count": record.get("count"), "window": window})
    return rows


def _first_publish(tasks: Sequence[TaskResult], default: float) -> float:
    return min((task.publish_t for task in tasks), default=default)

