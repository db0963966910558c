"""The checker: judge a run's recorded history task by task.

Pure Python over ledger records (see :mod:`chaoslab.ledger`); it needs no lab. Feed it
every record of a run (publish, start and end records in any order, from any number of
files), the phases, the fault windows and the run end time::

    summary = check(read_records(paths), phases, faults, run_end)
    write_summary(summary, results_dir)

Executions
    A start record opens an execution; an end record closes the most recent open
    execution with the same (node, pid, attempt). An end without a matching start counts
    as an execution of its own (start unknown). Start and end records with ``t`` after
    the run end are ignored (counted in ``records.after_run_end``).

Classes (every published task id gets exactly one, tested in this order)
    ``publish_failed``
        The publish outcome was ``error`` or ``timeout``. The producer was told the task
        was not sent, so this is a producer-side result whatever happened next; a task
        that executed anyway keeps this class and is counted (and its id listed) as
        ``publish_failed_executed``. (A publish timeout often did reach the broker; a
        caller that re-publishes then gets the task twice, which is what this shows.)
    ``lost``
        Published ok and its work is neither done nor being done at the run end
        (``lost_cause``): ``never_started`` (no execution started), ``retry_never_ran``
        (its single execution ended ``retry`` and the retried message never started), or
        ``killed`` (its single execution never ended and its worker process was gone when
        the ledgers were collected: an ``alive`` record lists each node's live worker pids;
        without one for the node the execution counts as stuck).
    ``duplicated``
        More than one execution started. The cause is ``redelivery`` when an attempt
        number was executed more than once or an execution carried the redelivered flag
        (the broker handed that message out again; the earlier delivery may have run on
        a node whose ledger is missing), otherwise ``retry`` (attempt numbers only
        increased). ``final`` says how it ended. A single execution with the redelivered
        flag is not a duplicate.
    ``completed``
        Exactly one execution, and it ended ``success``.
    ``failed``
        Exactly one execution, and it ended ``failure``.
    ``stuck``
        Exactly one execution, and it never ended, while its process still ran (or no
        ``alive`` record says otherwise).

    Records for ids that were never published are not classified; their ids and their
    executions are counted as ``unknown``.

Each task's ``final`` state is ``success`` if any execution succeeded, else the end of its
last-started execution: ``failure``, ``retry``, ``unfinished`` (no end), or ``none`` (no
execution).

Phases
    A task belongs to the phase in which it was published (phases are half-open
    ``[start, end)``); its class, kind, success and latencies count there. A completion
    (the first successful end of a task) counts in the phase in which it ended, and
    throughput is those completions per second of phase (publish_failed tasks that ran
    count too: the work was done). Success ratio per kind = tasks
    with a successful execution / tasks published, per kind. Latencies: queue wait =
    first start - publish; run time = end - start of the last successful execution (of the
    last ended one if none succeeded); end to end = last successful end - publish.
    Percentiles are nearest-rank. ``overall`` holds the same figures over the whole run
    (from the first phase start, or the first publish, to the run end), including tasks
    published outside every phase.

Cost
    One pass groups the records by id in plain lists and tuples (repeated strings
    interned), then each task is judged and its events freed. About 0.5 KiB per task at
    peak; the cyclic garbage collector is paused during the pass (the data has no cycles).

Recovery time
    Time bins of ``bin_s`` start at the end of the last fault window. Recovered at the
    first bin start ``t`` where, over the window ``[t, t + window_s)``, the completion
    rate is within ``tolerance`` of the baseline phase's rate and the mean backlog
    (sampled at each bin start) is at most the baseline's backlog level times
    ``1 + tolerance``. The baseline level is the highest such window mean inside the
    baseline phase. Backlog at ``t`` = tasks published ok by ``t`` minus tasks finished
    (first success or failure end) by ``t``, counting only tasks that did finish, so that
    tasks lost for good do not hold the backlog up forever (they are reported as lost).
    ``None`` when it never happens before the run end, or there is no baseline phase or
    no fault window.

Delivery guarantee observed (over tasks published ok)
    ``missing`` = tasks that never reached ``success`` or ``failure`` by the run end (lost,
    stuck, and duplicated tasks that never finished); ``redelivered`` = tasks duplicated by
    redelivery. Retries are re-publications the task asked for, not broker duplicates,
    so they do not count. ``exactly-once``: neither; ``at-least-once``: redelivered only;
    ``at-most-once``: missing only; ``none``: both.
"""

import csv
import gc
import json
import math
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from itertools import chain, pairwise
from operator import itemgetter
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeVar

CLASSES: Final = ("completed", "duplicated", "failed", "lost", "stuck", "publish_failed")
BAD_CLASSES: Final = ("duplicated", "failed", "lost", "stuck", "publish_failed")
DUPLICATE_CAUSES: Final = ("redelivery", "retry")
LATENCIES: Final = ("queue_wait", "run_time", "end_to_end")
PERCENTILES: Final = (50, 95, 99)

_START: Final = 0
_END: Final = 1
_TERMINAL: Final = frozenset(("success", "failure"))
_END_T: Final = itemgetter(1)
_SINGLE_EXECUTION_CLASS: Final = {"success": "completed", "failure": "failed"}

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
    """When a fault was active, ``[start, end)`` in epoch seconds."""

    fault: str
    start: float
    end: float


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
    cls: str
    executions: int
    nodes: str
    publish_t: float
    first_start: float | None
    last_end: float | None
    queue_wait: float | None
    run_time: float | None
    end_to_end: float | None
    duplicate_cause: str | None
    final: str
    successes: int
    completed_at: float | None
    finished_at: float | None
    lost_cause: str | None = None


_FIELD_GETTERS: Final = {name: itemgetter(index) for index, name in enumerate(TaskResult._fields)}
CSV_HEADER: Final = tuple("class" if name == "cls" else name for name in TaskResult._fields)


@dataclass(frozen=True, slots=True)
class LatencyStats:
    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None


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


@dataclass(frozen=True, slots=True)
class DuplicateStats:
    by_cause: dict[str, int]
    succeeded: int
    succeeded_more_than_once: int


@dataclass(frozen=True, slots=True)
class Delivery:
    guarantee: str
    missing: int
    redelivered: int


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
    classes: dict[str, int]
    duplicates: DuplicateStats
    delivery: Delivery
    recovery: Recovery
    records: dict[str, int]
    unknown_ids: list[str]
    unknown_executions: int
    tasks: list[TaskResult] = field(repr=False)

    def ids(self, cls: str) -> list[str]:
        """Ids of the tasks of one class, in publish-record order."""
        return [task.id for task in self.tasks if task.cls == cls]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able view: all figures and the ids of every bad class (not the task rows)."""
        skipped = {"tasks", "unknown_ids", "unknown_executions"}
        data = {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name not in skipped}
        data["tasks"] = len(self.tasks)
        data["unknown"] = {"ids": len(self.unknown_ids), "executions": self.unknown_executions}
        executed = self.publish_failed_executed()
        data["publish_failed_executed"] = len(executed)
        data["lost_causes"] = dict(Counter(task.lost_cause for task in self.tasks if task.cls == "lost"))
        data["ids"] = {**_ids_by_class(self.tasks), "publish_failed_executed": executed, "unknown": self.unknown_ids}
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

    Per id a list ``[kind, publish_t, publish_outcome, event, event, ...]``; an event is
    ``(t, _START, node, pid, attempt, redelivered)`` or ``(t, _END, node, pid, attempt,
    outcome)``, so sorting a task's events orders them by time, starts before ends.
    Repeated strings (kinds, nodes, outcomes) and pids are interned to save memory.
    """

    def __init__(self, run_end: float) -> None:
        self.run_end = run_end
        self.tasks: dict[str, list[Any]] = {}
        self.counts = dict.fromkeys(("publish", "start", "end", "other", "after_run_end", "repeated_publish"), 0)
        self._atoms: dict[Any, Any] = {}
        # node -> worker pids alive when the ledgers were collected (``alive`` records)
        self.alive: dict[str, frozenset[int]] = {}

    def add_all(self, records: Iterable[Mapping[str, Any]]) -> None:
        handlers = {"start": self._add_start, "end": self._add_end, "publish": self._add_publish,
                    "alive": self._add_alive}
        for record in records:
            try:
                handlers.get(record["type"], self._add_other)(record)
            except (KeyError, TypeError) as exc:
                raise ValueError(f"malformed ledger record ({exc!r}): {record!r}") from exc

    def _add_other(self, record: Mapping[str, Any]) -> None:
        self.counts["other"] += 1

    def _add_alive(self, record: Mapping[str, Any]) -> None:
        self.counts["other"] += 1
        self.alive[record["node"]] = frozenset(record["pids"])

    def _add_start(self, record: Mapping[str, Any]) -> None:
        self.counts["start"] += 1
        self._add_event(record, _START, bool(record["redelivered"]))

    def _add_end(self, record: Mapping[str, Any]) -> None:
        self.counts["end"] += 1
        outcome = record["outcome"]
        self._add_event(record, _END, self._atoms.setdefault(outcome, outcome))

    def _add_event(self, record: Mapping[str, Any], what: int, detail: Any) -> None:
        t = record["t"]
        if t > self.run_end:
            self.counts["after_run_end"] += 1
            return
        intern = self._atoms.setdefault
        node, pid = record["node"], record["pid"]
        event = (t, what, intern(node, node), intern(pid, pid), record["attempt"], detail)
        state = self.tasks.get(record["id"])
        if state is None:
            self.tasks[record["id"]] = [None, None, None, event]
        else:
            state.append(event)

    def _add_publish(self, record: Mapping[str, Any]) -> None:
        self.counts["publish"] += 1
        intern = self._atoms.setdefault
        kind, t, outcome = record["kind"], record["t"], record["outcome"]
        state = self.tasks.get(record["id"])
        if state is None:
            self.tasks[record["id"]] = [intern(kind, kind), t, intern(outcome, outcome)]
            return
        if state[2] is not None:
            self.counts["repeated_publish"] += 1
            if not _better_publish(t, outcome, state[1], state[2]):
                return
        state[0], state[1], state[2] = intern(kind, kind), t, intern(outcome, outcome)


def _better_publish(t: float, outcome: str, old_t: float, old_outcome: str) -> bool:
    """For an id published more than once: an ok publish wins, then the earlier one."""
    return (outcome != "ok", t) < (old_outcome != "ok", old_t)


# ---------------------------------------------------------------------------------------
# Judging one task


def _pair_executions(events: list[tuple[Any, ...]]) -> list[list[Any]]:
    """Executions ``[start_t, end_t, outcome, node, attempt, redelivered, pid]`` in time order."""
    events.sort()
    executions: list[list[Any]] = []
    open_by_key: dict[tuple[Any, ...], list[list[Any]]] = {}
    for t, what, node, pid, attempt, detail in events:
        key = (node, pid, attempt)
        if what == _START:
            execution = [t, None, None, node, attempt, detail, pid]
            open_by_key.setdefault(key, []).append(execution)
            executions.append(execution)
            continue
        stack = open_by_key.get(key)
        if stack:
            execution = stack.pop()
            execution[1], execution[2] = t, detail
        else:
            executions.append([None, t, detail, node, attempt, False, pid])
    return executions


def _final_state(executions: list[list[Any]], successes: list[list[Any]]) -> str:
    if successes:
        return "success"
    if not executions:
        return "none"
    return executions[-1][2] or "unfinished"


def _killed(execution: list[Any], alive: Mapping[str, frozenset[int]]) -> bool:
    """An unfinished execution whose process was gone when the ledgers were collected."""
    node_alive = alive.get(execution[3])
    return execution[1] is None and node_alive is not None and execution[6] not in node_alive


def _classify(publish_ok: bool, executions: list[list[Any]], final: str,
              alive: Mapping[str, frozenset[int]]) -> tuple[str, str | None]:
    """The task's class, and for a lost task why: never_started, retry_never_ran or killed."""
    if not publish_ok:
        return "publish_failed", None
    if not executions:
        return "lost", "never_started"
    if len(executions) > 1:
        return "duplicated", None
    if final == "retry":
        return "lost", "retry_never_ran"
    if final == "unfinished" and _killed(executions[0], alive):
        return "lost", "killed"
    return _SINGLE_EXECUTION_CLASS.get(final, "stuck"), None


def _duplicate_cause(executions: list[list[Any]]) -> str | None:
    if len(executions) < 2:
        return None
    attempts = [execution[4] for execution in executions]
    redelivered = any(execution[5] for execution in executions)
    return "redelivery" if redelivered or len(set(attempts)) < len(attempts) else "retry"


def _nodes_label(executions: list[list[Any]]) -> str:
    return ";".join(sorted({execution[3] for execution in executions}))


def _difference(later: float | None, earlier: float | None) -> float | None:
    return None if later is None or earlier is None else later - earlier


def _first_terminal_end(ended: list[list[Any]]) -> float | None:
    return next((execution[1] for execution in ended if execution[2] in _TERMINAL), None)


def _judge(task_id: str, state: list[Any], alive: Mapping[str, frozenset[int]]) -> TaskResult:
    publish_t = state[1]
    executions = _pair_executions(state[3:])
    ended = [execution for execution in executions if execution[1] is not None]
    ended.sort(key=_END_T)
    successes = [execution for execution in ended if execution[2] == "success"]
    decisive = (successes or ended)[-1] if ended else None
    final = _final_state(executions, successes)
    first_start = executions[0][0] if executions else None
    cls, lost_cause = _classify(state[2] == "ok", executions, final, alive)
    return TaskResult(
        task_id,
        state[0],
        cls,
        len(executions),
        _nodes_label(executions),
        publish_t,
        first_start,
        ended[-1][1] if ended else None,
        _difference(first_start, publish_t),
        _difference(decisive[1], decisive[0]) if decisive else None,
        _difference(successes[-1][1], publish_t) if successes else None,
        _duplicate_cause(executions),
        final,
        len(successes),
        successes[0][1] if successes else None,
        _first_terminal_end(ended),
        lost_cause,
    )


# ---------------------------------------------------------------------------------------
# Figures per phase


def _column(tasks: Iterable[TaskResult], name: str) -> list[Any]:
    """The non-None values of one TaskResult field."""
    return [value for value in map(_FIELD_GETTERS[name], tasks) if value is not None]


def _class_counts(tasks: Iterable[TaskResult]) -> dict[str, int]:
    counts = dict.fromkeys(CLASSES, 0)
    counts.update(Counter(map(_FIELD_GETTERS["cls"], tasks)))
    return counts


def latency_columns(tasks: Iterable[TaskResult]) -> dict[str, list[float]]:
    """Each latency of *tasks*, ascending (None values left out)."""
    return {name: sorted(_column(tasks, name)) for name in LATENCIES}


def phase_stats(
    phase: Phase,
    tasks: Sequence[TaskResult],
    completed: int,
    columns: Mapping[str, list[float]] | None = None,
) -> PhaseStats:
    """Figures for the *tasks* published in *phase*; *completed* = completions in it.

    *columns*, when given, are the tasks' latency_columns (saves sorting them again).
    """
    classes = _class_counts(tasks)
    published = Counter(map(_FIELD_GETTERS["kind"], tasks))
    succeeded = Counter(task.kind for task in tasks if task.successes)
    columns = columns if columns is not None else latency_columns(tasks)
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
    )


def latency_stats(values: Iterable[float]) -> LatencyStats:
    """Count, nearest-rank p50/p95/p99 and max of *values* (sorting sorted values is cheap)."""
    ordered = sorted(values)
    if not ordered:
        return LatencyStats(0, None, None, None, None)
    p50, p95, p99 = (nearest_rank(ordered, p) for p in PERCENTILES)
    return LatencyStats(len(ordered), p50, p95, p99, ordered[-1])


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
# Recovery and delivery


@dataclass(frozen=True, slots=True)
class _Timeline:
    """Ascending event times over the whole run."""

    published: list[float]
    """Publish times of tasks published ok that finished."""
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
    found = Recovery(None, "not recovered by the run end", fault_end, base_rate, base_backlog)
    k = 0
    while (t := fault_end + k * params.bin_s) + span <= run_end + 1e-9:
        rate_ok = abs(timeline.rate(t, t + span) - base_rate) <= params.tolerance * base_rate + 1e-9
        if rate_ok and timeline.mean_backlog(t, bins, params.bin_s) <= base_backlog * (1 + params.tolerance):
            return Recovery(k * params.bin_s, "recovered", fault_end, base_rate, base_backlog)
        k += 1
    return found


def delivery_guarantee(missing: int, redelivered: int) -> str:
    if missing and redelivered:
        return "none"
    if missing:
        return "at-most-once"
    return "at-least-once" if redelivered else "exactly-once"


# ---------------------------------------------------------------------------------------
# The whole check


def _coerce(cls: type[_W], item: _W | Mapping[str, Any]) -> _W:
    if isinstance(item, cls):
        return item
    return cls(**{f.name: item[f.name] for f in fields(cls)})


def _validated_phases(phases: Iterable[Phase | Mapping[str, Any]]) -> list[Phase]:
    result = [_coerce(Phase, phase) for phase in phases]
    for earlier, later in pairwise(result):
        if later.start < earlier.end:
            raise ValueError(f"phases must be in time order without overlap: {earlier} then {later}")
    return result


def _by_phase(tasks: Iterable[TaskResult], phases: Sequence[Phase]) -> list[list[TaskResult]]:
    """The tasks published in each phase, then those published outside every phase."""
    starts = [phase.start for phase in phases]
    groups: list[list[TaskResult]] = [[] for _ in range(len(phases) + 1)]
    for task in tasks:
        index = _phase_index(starts, phases, task.publish_t)
        groups[-1 if index is None else index].append(task)
    return groups


def _phase_figures(
    tasks: Sequence[TaskResult], phases: Sequence[Phase], run: Phase, completions: list[float]
) -> tuple[list[PhaseStats], PhaseStats]:
    """Stats per phase, and over the whole run (merging the phases' sorted latencies)."""
    groups = _by_phase(tasks, phases)
    columns = [latency_columns(group) for group in groups]
    per_phase = [
        phase_stats(phase, group, _count_between(completions, phase.start, phase.end), group_columns)
        for phase, group, group_columns in zip(phases, groups, columns, strict=False)
    ]
    merged = {name: sorted(chain.from_iterable(part[name] for part in columns)) for name in LATENCIES}
    return per_phase, phase_stats(run, tasks, len(completions), merged)


def _timeline(tasks: Sequence[TaskResult]) -> _Timeline:
    finished = [task for task in tasks if task.finished_at is not None and task.cls != "publish_failed"]
    return _Timeline(
        published=sorted(task.publish_t for task in finished),
        finished=sorted(task.finished_at for task in finished),
        completed=sorted(_column(tasks, "completed_at")),
    )


def _duplicate_stats(tasks: Iterable[TaskResult]) -> DuplicateStats:
    duplicated = [task for task in tasks if task.cls == "duplicated"]
    return DuplicateStats(
        by_cause={cause: sum(task.duplicate_cause == cause for task in duplicated) for cause in DUPLICATE_CAUSES},
        succeeded=sum(task.successes > 0 for task in duplicated),
        succeeded_more_than_once=sum(task.successes > 1 for task in duplicated),
    )


def _delivery(tasks: Iterable[TaskResult]) -> Delivery:
    accepted = [task for task in tasks if task.cls != "publish_failed"]
    missing = sum(task.finished_at is None for task in accepted)
    redelivered = sum(task.duplicate_cause == "redelivery" for task in accepted)
    return Delivery(delivery_guarantee(missing, redelivered), missing, redelivered)


def _judge_all(collector: _Collector) -> tuple[list[TaskResult], list[str], int]:
    """Judge every published id; return the results, unknown ids and their executions."""
    tasks: list[TaskResult] = []
    unknown_ids: list[str] = []
    unknown_executions = 0
    states = collector.tasks
    for task_id, state in states.items():
        states[task_id] = None  # frees the events as we go
        if state[2] is None:
            unknown_ids.append(task_id)
            unknown_executions += len(_pair_executions(state[3:]))
        else:
            tasks.append(_judge(task_id, state, collector.alive))
    return tasks, unknown_ids, unknown_executions


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
    recovery: RecoveryParams = DEFAULT_RECOVERY,
) -> Summary:
    """Classify every published task and compute the run's figures (see the module doc).

    *records* may come in any order and may be a one-shot iterator (e.g. read_records).
    *phases* (in time order, not overlapping) and *faults* may be dataclasses or mappings
    with the same keys. Raises ValueError on a malformed record or bad phases.
    """
    phase_list = _validated_phases(phases)
    fault_list = [_coerce(FaultWindow, fault) for fault in faults]
    with _gc_paused():
        collector = _Collector(run_end)
        collector.add_all(records)
        tasks, unknown_ids, unknown_executions = _judge_all(collector)
        collector.tasks.clear()
    timeline = _timeline(tasks)
    baseline = next((phase for phase in phase_list if phase.name == recovery.baseline_phase), None)
    run = Phase("run", phase_list[0].start if phase_list else _first_publish(tasks, run_end), run_end)
    per_phase, overall = _phase_figures(tasks, phase_list, run, timeline.completed)
    return Summary(
        run_end=run_end,
        phases=per_phase,
        overall=overall,
        faults=fault_list,
        classes=_class_counts(tasks),
        duplicates=_duplicate_stats(tasks),
        delivery=_delivery(tasks),
        recovery=recovery_time(timeline, baseline, fault_list, run_end, recovery),
        records=dict(collector.counts),
        unknown_ids=unknown_ids,
        unknown_executions=unknown_executions,
        tasks=tasks,
    )


def _first_publish(tasks: Sequence[TaskResult], default: float) -> float:
    return min((task.publish_t for task in tasks), default=default)


def write_summary(summary: Summary, directory: str | Path) -> tuple[Path, Path]:
    """Write ``summary.json`` and ``tasks.csv`` into *directory*; return their paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    summary_path, tasks_path = out / "summary.json", out / "tasks.csv"
    summary_path.write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    with tasks_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_HEADER)
        writer.writerows(summary.tasks)
    return summary_path, tasks_path
