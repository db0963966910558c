"""The figures of a run: every number a hypothesis may name and a comparison shows, defined here once.

    values = measure(summary.to_dict(), success_ratio(summary.tasks))

A figure is computed from the checker's summary (``summary.json``'s data) and, for ``success_ratio``, the checker's
task rows. The runner writes the result into ``summary.json`` (``figures``) and ``verdict.json``; the comparison,
the study report and the hypothesis read it from there (:func:`chaoslab.analysis.run_dir.figures`). A run directory
made before summary.json held its figures gets them from the same :func:`measure` over its older summary.

Which phase is which
    The baseline phase is the phase named ``baseline``, else the first phase. The fault's throughput is the
    checker's ``fault_throughput`` (completions per second inside the fault windows the nodes recorded); a summary
    written before the checker measured it falls back to the phase named ``fault``, else the phase that overlaps
    the fault windows most (:func:`fault_phase`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from chaoslab.analysis.checker import CLASSES, DUPLICATED, LATENCIES, TaskResult

BASELINE_PHASE: Final = "baseline"
FAULT_PHASE: Final = "fault"
PERCENTILES: Final = ("p50", "p95", "p99")
UNITS: Final = ("count", "ratio", "rate", "duration", "factor")
"""What a figure's number is: a count of tasks, a ratio (0-1), per second, seconds, a multiple (the fault phase's
value over the baseline's)."""
RATIO_STATS: Final = ("p95", "max")
"""The statistics set against the baseline's: p95 (most tasks), max (the few a fault held, e.g. those a paused or
cut-off worker had prefetched)."""
KIND_SEPARATOR: Final = "."
"""``<figure>.<kind>``: a per-kind figure of the tasks of one kind (:data:`KIND_FIGURES`)."""


@dataclass(frozen=True, slots=True)
class Figure:
    name: str
    unit: str
    """One of :data:`UNITS`."""
    meaning: str


_LATENCY_MEANINGS: Final = {
    "queue_wait": "first start - publish returned",
    "run_time": "end - start of the last successful execution",
    "end_to_end": "last successful end - when the task was due",
}
# Which tasks a phase's latency counts (chaoslab.analysis.checker, "Phases"): run time where the execution it measures
# started, the others where the task was due.
_COUNTED_IN: Final = {"queue_wait": "published in", "run_time": "whose measured execution started in",
                      "end_to_end": "published in"}

VOCABULARY: Final[tuple[Figure, ...]] = (
    *(Figure(cls, "count", f"tasks of the checker's class {cls}") for cls in CLASSES),
    Figure("duplicated", "count", "tasks of both duplicated classes"),
    Figure("never_completed", "count", "tasks published successfully that never succeeded, whatever their class"),
    Figure("unknown", "count", "ids that ran but were never published"),
    Figure("success_ratio", "ratio", "tasks that succeeded over tasks published successfully"),
    Figure("throughput", "rate", "completions per second over the run"),
    Figure("throughput_baseline", "rate", "completions per second in the baseline phase"),
    Figure("throughput_fault", "rate", "completions per second inside the fault windows"),
    Figure("throughput_drop", "ratio", "1 - throughput_fault / throughput_baseline (negative: the fault phase "
                                       "completed more, e.g. a backlog draining)"),
    Figure("target_throughput_drop", "ratio", "1 - completions per second on the nodes the faults were applied to, "
                                              "inside their fault windows / those nodes' in the baseline phase (1: "
                                              "they completed nothing under the fault)"),
    Figure("recovery_time", "duration", "seconds from the end of the last fault window until the completion rate "
                                        "and the backlog are back at the baseline's"),
    *(Figure(f"{pct}_{latency}", "duration", f"nearest-rank {pct} over the run of {meaning}")
      for latency, meaning in _LATENCY_MEANINGS.items() for pct in PERCENTILES),
    Figure("success_ratio_baseline", "ratio", "success_ratio of the tasks published in the baseline phase"),
    Figure("success_ratio_fault", "ratio", "success_ratio of the tasks published in the fault phase"),
    Figure("mean_run_time_baseline", "duration", "mean run time of the tasks that started in the baseline phase"),
    Figure("mean_run_time_fault", "duration", "mean run time of the tasks that started in the fault phase"),
    *(Figure(f"{stat}_{latency}_ratio", "factor", f"{stat} of {meaning} of the tasks {_COUNTED_IN[latency]} the "
                                                  "fault phase over that of the baseline phase's (1: unchanged; 2: "
                                                  "twice as long)")
      for stat in RATIO_STATS for latency, meaning in _LATENCY_MEANINGS.items()),
    Figure("fault_effect", "ratio", "the smallest measured effect of a fault window over what was asked (1: as "
                                    "asked; below 0.9: not effective)"),
    Figure("faults_not_effective", "count", "fault windows whose node measured less effect than was asked"),
)
KIND_FIGURES: Final = ("success_ratio", "success_ratio_baseline", "success_ratio_fault", "throughput_baseline",
                       "throughput_fault", "mean_run_time_baseline", "mean_run_time_fault", "p95_run_time_ratio",
                       "p95_end_to_end_ratio")
"""Figures that also exist per task kind, as ``<figure>.<kind>`` (e.g. ``p95_run_time_ratio.cpu``): the same
measure over the tasks of that kind (the throughputs: that kind's completions per second)."""
EFFECT_FIGURES: Final = frozenset({"fault_effect", "faults_not_effective"})
"""Figures that say whether the fault acted, not what it did to the tasks."""
NAMES: Final = tuple(figure.name for figure in VOCABULARY)
UNIT_OF: Final[dict[str, str]] = {figure.name: figure.unit for figure in VOCABULARY}


def unit_of(name: str, kinds: Iterable[str]) -> str | None:
    """The unit of figure *name*, a per-kind one among them (``<figure>.<kind>``, *kinds* the known task kinds);
    None for no figure."""
    if name in UNIT_OF:
        return UNIT_OF[name]
    figure, sep, kind = name.partition(KIND_SEPARATOR)
    return UNIT_OF[figure] if sep and figure in KIND_FIGURES and kind in set(kinds) else None


def phase_figure(name: str, phase: str) -> str:
    """The figure of *name* (``mean_run_time``, ``success_ratio.memory``) measured in *phase* (``baseline`` or
    ``fault``): ``mean_run_time_baseline``, ``success_ratio_fault.memory``."""
    family, sep, kind = name.partition(KIND_SEPARATOR)
    return f"{family}_{phase}{sep}{kind}"
RETIRED: Final = {"stuck": "use pending (still queued, reserved or running at the end) or lost (gone)"}
"""Figures of earlier versions, and what replaced them."""

Values = dict[str, float | None]


def _overlap(phase: Mapping[str, Any], faults: Sequence[Mapping[str, Any]]) -> float:
    return sum(max(0.0, min(phase["end"], f["end"]) - max(phase["start"], f["start"])) for f in faults)


def baseline_phase(summary: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The phase named ``baseline``, else the first phase (of summary.json's ``phases``)."""
    phases = summary.get("phases") or []
    return next((p for p in phases if p["name"] == BASELINE_PHASE), phases[0] if phases else None)


def fault_phase(summary: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The phase named ``fault``, else the phase that overlaps the fault windows most."""
    phases = summary.get("phases") or []
    named = next((p for p in phases if p["name"] == FAULT_PHASE), None)
    if named is not None:
        return named
    faults = summary.get("faults") or []
    best = max(phases, key=lambda phase: _overlap(phase, faults), default=None)
    return best if best is not None and _overlap(best, faults) > 0 else None


def _throughput(phase: Mapping[str, Any] | None) -> float | None:
    return None if phase is None else phase.get("throughput")


def fault_throughput(summary: Mapping[str, Any]) -> float | None:
    """Completions per second inside the fault windows (the checker's), else in the fault phase (older runs)."""
    if "fault_throughput" in summary:
        return summary["fault_throughput"]
    return _throughput(fault_phase(summary))


def throughput_drop(baseline: float | None, fault: float | None) -> float | None:
    """``1 - fault / baseline``; None when either is unknown or the baseline is zero."""
    if baseline is None or fault is None or baseline <= 0:
        return None
    return 1 - fault / baseline


def success_ratio(tasks: Iterable[TaskResult]) -> float | None:
    """Tasks that succeeded / tasks published successfully (None when none was)."""
    sent = [task.final == "success" for task in tasks if task.cls != "publish_failed"]
    return sum(sent) / len(sent) if sent else None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def measure(summary: Mapping[str, Any], ratio: float | None) -> Values:
    """Every figure of :data:`VOCABULARY` from summary.json's data and the run's :func:`success_ratio`; None where
    the summary cannot tell (an older summary lacks ``never_completed`` and ``unknown``). The class counts are those
    the summary holds: all of :data:`~chaoslab.analysis.checker.CLASSES`, or those of the checker's first edition."""
    classes = summary.get("classes") or {}
    overall = summary.get("overall") or {}
    values: Values = {name: _float(count) for name, count in classes.items()}
    duplicated = summary.get("duplicated")
    values["duplicated"] = _float(duplicated if duplicated is not None or not classes
                                  else sum(classes.get(name) or 0 for name in DUPLICATED))
    values["never_completed"] = _float(summary.get("never_completed"))
    values["unknown"] = _float((summary.get("unknown") or {}).get("ids"))
    values["success_ratio"] = ratio
    values["throughput"] = overall.get("throughput")
    before, during = baseline_phase(summary), fault_phase(summary)
    baseline, fault = _throughput(before), fault_throughput(summary)
    values["throughput_baseline"], values["throughput_fault"] = baseline, fault
    values["throughput_drop"] = throughput_drop(baseline, fault)
    target = summary.get("target_throughput") or {}
    values["target_throughput_drop"] = throughput_drop(target.get("baseline"), target.get("fault"))
    values["recovery_time"] = (summary.get("recovery") or {}).get("time_s")
    latency = overall.get("latency") or {}
    for name in LATENCIES:
        stats = latency.get(name) or {}
        for pct in PERCENTILES:
            values[f"{pct}_{name}"] = stats.get(pct)
    values.update(_phase_figures(before, during))
    effects = [fault.get("effect") or {} for fault in summary.get("faults") or []]
    ratios = [effect["ratio"] for effect in effects if isinstance(effect.get("ratio"), int | float)]
    values["fault_effect"] = min(ratios) if ratios else None
    measured = [effect for effect in effects if effect.get("effective") is not None]
    values["faults_not_effective"] = (float(sum(effect["effective"] is False for effect in measured)) if measured
                                      else None)
    values.update(_kind_figures(summary, before, during))
    return values


def _factor(fault: Any, baseline: Any) -> float | None:
    """*fault* / *baseline*; None when either is unknown or the baseline is zero."""
    if fault is None or baseline is None or baseline <= 0:
        return None
    return float(fault) / float(baseline)


def _stat(stats: Mapping[str, Any] | None, name: str) -> Any:
    return (stats or {}).get(name)


def _phase_figures(baseline: Mapping[str, Any] | None, fault: Mapping[str, Any] | None) -> Values:
    """The figures that set the fault phase's tasks against the baseline phase's."""
    before, during = (baseline or {}).get("latency") or {}, (fault or {}).get("latency") or {}
    values: Values = {"success_ratio_baseline": _phase_success(baseline), "success_ratio_fault": _phase_success(fault),
                      "mean_run_time_baseline": _stat(before.get("run_time"), "mean"),
                      "mean_run_time_fault": _stat(during.get("run_time"), "mean")}
    for stat in RATIO_STATS:
        for latency in LATENCIES:
            values[f"{stat}_{latency}_ratio"] = _factor(_stat(during.get(latency), stat),
                                                        _stat(before.get(latency), stat))
    return values


def _phase_success(phase: Mapping[str, Any] | None) -> float | None:
    """Of the tasks published ok in *phase*, those that succeeded (from its per-kind stats; None without them)."""
    kinds = [stats for stats in ((phase or {}).get("kinds") or {}).values() if stats.get("published_ok")]
    if not kinds:
        return None
    succeeded = sum(stats["success_ratio"] * stats["published_ok"] for stats in kinds)
    return succeeded / sum(stats["published_ok"] for stats in kinds)


def _kind_figures(summary: Mapping[str, Any], baseline: Mapping[str, Any] | None,
                  fault: Mapping[str, Any] | None) -> Values:
    """Every :data:`KIND_FIGURES` figure of every kind the run published (older summaries: none)."""
    overall = (summary.get("overall") or {}).get("kinds") or {}
    before, during = (baseline or {}).get("kinds") or {}, (fault or {}).get("kinds") or {}
    values: Values = {}
    for kind in sorted({*overall, *before, *during}):
        b, f = before.get(kind) or {}, during.get(kind) or {}
        found = {
            "success_ratio": (overall.get(kind) or {}).get("success_ratio"),
            "success_ratio_baseline": b.get("success_ratio"),
            "success_ratio_fault": f.get("success_ratio"),
            "throughput_baseline": b.get("throughput"),
            "throughput_fault": f.get("throughput"),
            "mean_run_time_baseline": _stat(b.get("run_time"), "mean"),
            "mean_run_time_fault": _stat(f.get("run_time"), "mean"),
            "p95_run_time_ratio": _factor(_stat(f.get("run_time"), "p95"), _stat(b.get("run_time"), "p95")),
            "p95_end_to_end_ratio": _factor(_stat(f.get("end_to_end"), "p95"), _stat(b.get("end_to_end"), "p95")),
        }
        values.update({f"{name}{KIND_SEPARATOR}{kind}": value for name, value in found.items()})
    return values
