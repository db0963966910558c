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
        that executed anyway keeps this class and is also listed in
        ``publish_failed_executed``.
    ``lost``
        Published ok and no execution of its pending message started by the run end:
        never started at all, or its single execution ended ``retry`` and the retried
        message never started.
    ``duplicated``
        More than one execution started. The cause is ``redelivery`` when an attempt
        number was executed more than once or an execution carried the redelivered flag,
        otherwise ``retry`` (attempt numbers only increased). ``final`` says how it ended.
    ``completed``
        Exactly one execution, and it ended ``success``.
    ``failed``
        Exactly one execution, and it ended ``failure``.
    ``stuck``
        Exactly one execution, and it never ended.

    Records for ids that were never published are not classified; their ids and their
    executions are counted as ``unknown``.

Each task's ``final`` state is ``success`` if any execution succeeded, else the end of its
last-started execution: ``failure``, ``retry``, ``unfinished`` (no end), or ``none`` (no
execution).

Phases
    A task belongs to the phase in which it was published (phases are half-open
    ``[start, end)``); its class, kind, success and latencies count there. A completion
    (the first successful end of a task) counts in the phase in which it ended, and
    throughput is those completions per second of phase. Success ratio per kind = tasks
    with a successful execution / tasks published, per kind. Latencies: queue wait =
    first start - publish; run time = end - start of the last successful execution (of the
    last ended one if none succeeded); end to end = last successful end - publish.
    Percentiles are nearest-rank.

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
import json
import math
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from itertools import pairwise
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeVar

CLASSES: Final = ("completed", "duplicated", "failed", "lost", "stuck", "publish_failed")
BAD_CLASSES: Final = ("duplicated", "failed", "lost", "stuck", "publish_failed")
LATENCIES: Final = ("queue_wait", "run_time", "end_to_end")
PERCENTILES: Final = (50, 95, 99)

_START: Final = 0
_END: Final = 1
_TERMINAL: Final = frozenset(("success", "failure"))

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
        data["publish_failed_executed"] = self.publish_failed_executed()
        data["ids"] = {**_ids_by_class(self.tasks), "unknown": self.unknown_ids}
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

    def add_all(self, records: Iterable[Mapping[str, Any]]) -> None:
        for record in records:
            try:
                self.add(record)
            except (KeyError, TypeError) as exc:
                raise ValueError(f"malformed ledger record ({exc!r}): {record!r}") from exc

    def add(self, record: Mapping[str, Any]) -> None:
        rtype = record["type"]
        if rtype == "start":
            self._add_event(record, (_START, bool(record["redelivered"])), "start")
        elif rtype == "end":
            self._add_event(record, (_END, self._intern(record["outcome"])), "end")
        elif rtype == "publish":
            self._add_publish(record)
        else:
            self.counts["other"] += 1

    def _intern(self, value: Any) -> Any:
        return self._atoms.setdefault(value, value)

    def _add_event(self, record: Mapping[str, Any], what: tuple[int, Any], rtype: str) -> None:
        self.counts[rtype] += 1
        t = record["t"]
        if t > self.run_end:
            self.counts["after_run_end"] += 1
            return
        intern = self._intern
        event = (t, what[0], intern(record["node"]), intern(record["pid"]), record["attempt"], what[1])
        state = self.tasks.get(record["id"])
        if state is None:
            self.tasks[record["id"]] = [None, None, None, event]
        else:
            state.append(event)

    def _add_publish(self, record: Mapping[str, Any]) -> None:
        self.counts["publish"] += 1
        t, outcome = record["t"], self._intern(record["outcome"])
        state = self.tasks.get(record["id"])
        if state is None:
            self.tasks[record["id"]] = [self._intern(record["kind"]), t, outcome]
            return
        if state[2] is not None:
            self.counts["repeated_publish"] += 1
            if not _better_publish(t, outcome, state[1], state[2]):
                return
        state[0], state[1], state[2] = self._intern(record["kind"]), t, outcome


def _better_publish(t: float, outcome: str, old_t: float, old_outcome: str) -> bool:
    """For an id published more than once: an ok publish wins, then the earlier one."""
    return (outcome != "ok", t) < (old_outcome != "ok", old_t)


# ---------------------------------------------------------------------------------------
# Judging one task


def _pair_executions(events: list[tuple[Any, ...]]) -> list[list[Any]]:
    """Executions ``[start_t, end_t, outcome, node, attempt, redelivered]`` in time order."""
    events.sort()
    executions: list[list[Any]] = []
    open_by_key: dict[tuple[Any, ...], list[list[Any]]] = {}
    for t, what, node, pid, attempt, detail in events:
        key = (node, pid, attempt)
        if what == _START:
            execution = [t, None, None, node, attempt, detail]
            open_by_key.setdefault(key, []).append(execution)
            executions.append(execution)
            continue
        stack = open_by_key.get(key)
        if stack:
            execution = stack.pop()
            execution[1], execution[2] = t, detail
        else:
            executions.append([None, t, detail, node, attempt, False])
    return executions


def _final_state(executions: list[list[Any]], successes: list[list[Any]]) -> str:
    if successes:
        return "success"
    if not executions:
        return "none"
    return executions[-1][2] or "unfinished"


def _classify(publish_ok: bool, executions: int, final: str) -> str:
    if not publish_ok:
        return "publish_failed"
    if executions == 0 or (executions == 1 and final == "retry"):
        return "lost"
    if executions > 1:
        return "duplicated"
    return {"success": "completed", "failure": "failed"}.get(final, "stuck")


def _duplicate_cause(executions: list[list[Any]]) -> str | None:
    if len(executions) < 2:
        return None
    attempts = [execution[4] for execution in executions]
    redelivered = any(execution[5] for execution in executions)
    return "redelivery" if redelivered or len(set(attempts)) < len(attempts) else "retry"


def _nodes_label(executions: list[list[Any]]) -> str:
    nodes = {execution[3] for execution in executions}
    return next(iter(nodes)) if len(nodes) == 1 else ";".join(sorted(nodes))


def _difference(later: float | None, earlier: float | None) -> float | None:
    return None if later is None or earlier is None else later - earlier


def _run_time(executions: list[list[Any]], successes: list[list[Any]]) -> float | None:
    ended = successes or [execution for execution in executions if execution[1] is not None]
    if not ended:
        return None
    decisive = max(ended, key=lambda execution: execution[1])
    return _difference(decisive[1], decisive[0])


def _judge(task_id: str, state: list[Any]) -> TaskResult:
    kind, publish_t, publish_outcome = state[0], state[1], state[2]
    executions = _pair_executions(state[3:])
    successes = [execution for execution in executions if execution[2] == "success"]
    final = _final_state(executions, successes)
    ends = [execution[1] for execution in executions if execution[1] is not None]
    terminal_ends = [execution[1] for execution in executions if execution[2] in _TERMINAL]
    first_start = executions[0][0] if executions else None
    last_success = max((execution[1] for execution in successes), default=None)
    return TaskResult(
        id=task_id,
        kind=kind,
        cls=_classify(publish_outcome == "ok", len(executions), final),
        executions=len(executions),
        nodes=_nodes_label(executions),
        publish_t=publish_t,
        first_start=first_start,
        last_end=max(ends, default=None),
        queue_wait=_difference(first_start, publish_t),
        run_time=_run_time(executions, successes),
        end_to_end=_difference(last_success, publish_t),
        duplicate_cause=_duplicate_cause(executions),
        final=final,
        successes=len(successes),
        completed_at=min((execution[1] for execution in successes), default=None),
        finished_at=min(terminal_ends, default=None),
    )


# ---------------------------------------------------------------------------------------
# Figures per phase


class _Bucket:
    """Counters and latency samples of the tasks published in one phase."""

    def __init__(self) -> None:
        self.classes = dict.fromkeys(CLASSES, 0)
        self.published_ok = 0
        self.kind_published: dict[str, int] = {}
        self.kind_succeeded: dict[str, int] = {}
        self.samples = {name: array("d") for name in LATENCIES}

    def add(self, task: TaskResult) -> None:
        self.classes[task.cls] += 1
        self.published_ok += task.cls != "publish_failed"
        self.kind_published[task.kind] = self.kind_published.get(task.kind, 0) + 1
        self.kind_succeeded[task.kind] = self.kind_succeeded.get(task.kind, 0) + (task.successes > 0)
        for name, samples in self.samples.items():
            value = getattr(task, name)
            if value is not None:
                samples.append(value)

    def stats(self, phase: Phase, completed: int) -> PhaseStats:
        return PhaseStats(
            name=phase.name,
            start=phase.start,
            end=phase.end,
            published=sum(self.classes.values()),
            published_ok=self.published_ok,
            classes=dict(self.classes),
            completed=completed,
            throughput=completed / phase.duration if phase.duration > 0 else None,
            success_ratio={
                kind: self.kind_succeeded[kind] / count for kind, count in sorted(self.kind_published.items())
            },
            latency={name: latency_stats(samples) for name, samples in self.samples.items()},
        )


def latency_stats(values: Iterable[float]) -> LatencyStats:
    """Count, nearest-rank p50/p95/p99 and max of *values*."""
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


class _Tally:
    """Run-wide counts gathered while the tasks are judged."""

    def __init__(self, phases: list[Phase]) -> None:
        self.phases = phases
        self.starts = [phase.start for phase in phases]
        self.buckets = [_Bucket() for _ in phases]
        self.overall = _Bucket()
        self.by_cause = {"redelivery": 0, "retry": 0}
        self.duplicates_succeeded = 0
        self.duplicates_succeeded_twice = 0
        self.missing = 0
        self.redelivered = 0
        self.timeline = _Timeline([], [], [])

    def add(self, task: TaskResult) -> None:
        self.overall.add(task)
        index = _phase_index(self.starts, self.phases, task.publish_t)
        if index is not None:
            self.buckets[index].add(task)
        if task.cls == "duplicated":
            self._add_duplicate(task)
        if task.completed_at is not None:
            self.timeline.completed.append(task.completed_at)
        if task.cls != "publish_failed":
            self._add_delivery(task)

    def _add_duplicate(self, task: TaskResult) -> None:
        self.by_cause[task.duplicate_cause or "retry"] += 1
        self.duplicates_succeeded += task.successes > 0
        self.duplicates_succeeded_twice += task.successes > 1

    def _add_delivery(self, task: TaskResult) -> None:
        self.redelivered += task.duplicate_cause == "redelivery"
        if task.finished_at is None:
            self.missing += 1
            return
        self.timeline.published.append(task.publish_t)
        self.timeline.finished.append(task.finished_at)

    def sort_timeline(self) -> None:
        for times in (self.timeline.published, self.timeline.finished, self.timeline.completed):
            times.sort()

    def phase_stats(self) -> list[PhaseStats]:
        completed = self.timeline.completed
        return [
            bucket.stats(phase, _count_between(completed, phase.start, phase.end))
            for phase, bucket in zip(self.phases, self.buckets, strict=True)
        ]


def _judge_all(collector: _Collector, tally: _Tally) -> tuple[list[TaskResult], list[str], int]:
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
            continue
        task = _judge(task_id, state)
        tally.add(task)
        tasks.append(task)
    return tasks, unknown_ids, unknown_executions


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
    *phases* and *faults* may be dataclasses or mappings with the same keys.
    """
    phase_list = _validated_phases(phases)
    fault_list = [_coerce(FaultWindow, fault) for fault in faults]
    collector = _Collector(run_end)
    collector.add_all(records)
    tally = _Tally(phase_list)
    tasks, unknown_ids, unknown_executions = _judge_all(collector, tally)
    collector.tasks.clear()
    tally.sort_timeline()
    baseline = next((phase for phase in phase_list if phase.name == recovery.baseline_phase), None)
    overall_phase = Phase("run", phase_list[0].start if phase_list else _first_publish(tasks, run_end), run_end)
    return Summary(
        run_end=run_end,
        phases=tally.phase_stats(),
        overall=tally.overall.stats(overall_phase, len(tally.timeline.completed)),
        faults=fault_list,
        classes=dict(tally.overall.classes),
        duplicates=DuplicateStats(dict(tally.by_cause), tally.duplicates_succeeded, tally.duplicates_succeeded_twice),
        delivery=Delivery(delivery_guarantee(tally.missing, tally.redelivered), tally.missing, tally.redelivered),
        recovery=recovery_time(tally.timeline, baseline, fault_list, run_end, recovery),
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
