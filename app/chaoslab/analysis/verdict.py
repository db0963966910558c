"""The hypothesis of a scenario checked against what the checker found, and the run's outcome said plainly."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from chaoslab.analysis.checker import CLASSES, DUPLICATED, Summary
from chaoslab.experiment.scenario import Condition

LATENCIES = ("queue_wait", "run_time", "end_to_end")


def _phase(summary: Summary, name: str) -> Any:
    return next((phase for phase in summary.phases if phase.name == name), None)


def figures(summary: Summary) -> dict[str, float | None]:
    """Every figure a hypothesis may name, from the checker's summary (None where it cannot be measured)."""
    values: dict[str, float | None] = {name: float(summary.classes.get(name, 0)) for name in CLASSES}
    values["duplicated"] = float(summary.duplicated)
    values["never_completed"] = float(summary.never_completed)
    values["unknown"] = float(len(summary.unknown_ids))
    sent = [task for task in summary.tasks if task.cls != "publish_failed"]
    values["success_ratio"] = (sum(task.final == "success" for task in sent) / len(sent)) if sent else None
    values["throughput"] = summary.overall.throughput
    baseline = _phase(summary, "baseline")
    if baseline and baseline.throughput and summary.fault_throughput is not None:
        values["throughput_drop"] = 1.0 - summary.fault_throughput / baseline.throughput
    else:
        values["throughput_drop"] = None
    values["recovery_time"] = summary.recovery.time_s
    for latency in LATENCIES:
        stats = summary.overall.latency.get(latency)
        for pct in ("p50", "p95", "p99"):
            values[f"{pct}_{latency}"] = getattr(stats, pct) if stats else None
    return values


@dataclass(frozen=True)
class Judgement:
    figure: str
    condition: str
    actual: float | None
    holds: bool


def judge(conditions: list[Condition], measured: dict[str, float | None]) -> tuple[bool, list[Judgement]]:
    """Each condition against the measured figures (those of :func:`figures`)."""
    judgements = [Judgement(c.figure, c.text, measured.get(c.figure), c.holds(measured.get(c.figure)))
                  for c in conditions]
    return all(j.holds for j in judgements), judgements


def headline(passed: bool) -> str:
    """The verdict as a sentence: held or not; never "pass", which reads as "safe" when losses were predicted."""
    return "hypothesis held" if passed else "hypothesis did not hold"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _with_causes(count: int, causes: Mapping[str, int] | None) -> str:
    if not causes:
        return str(count)
    parts = ", ".join(f"{cause.replace('_', ' ')} {n}" for cause, n in causes.items())
    return f"{count} ({parts})"


def outcome_lines(summary: Mapping[str, Any], drain: Mapping[str, Any] | None = None) -> list[str]:
    """What happened to the tasks, in plain words, separately from the hypothesis (from summary.json's data)."""
    classes, causes = summary.get("classes", {}), summary.get("causes", {})
    lost, pending = classes.get("lost", 0), classes.get("pending", 0)
    duplicated = sum(classes.get(cls, 0) for cls in DUPLICATED)
    failed, by_worker = classes.get("failed", 0), classes.get("failed_by_worker", 0)
    lines = [
        f"lost: {_with_causes(lost, causes.get('lost'))}" if lost else "lost: none",
        (f"duplicated: {duplicated} (redelivered then completed {classes.get('duplicated_completed', 0)}, "
         f"ran more than once and never completed {classes.get('duplicated_not_completed', 0)})"
         if duplicated else "duplicated: none"),
        (f"failed: {failed} raised by the task, {_with_causes(by_worker, causes.get('failed_by_worker'))} "
         "recorded by Celery's worker (the caller was told)" if failed or by_worker else "failed: none"),
    ]
    pending_text = f"pending at the end: {_with_causes(pending, causes.get('pending'))}" if pending else ""
    if drain is not None:
        drained = "drained" if drain.get("drained") else "not drained"
        pending_text = f"{pending_text}; {drained}" if pending_text else f"pending at the end: none ({drained})"
    if pending_text:
        lines.append(pending_text)
    publish_failed = classes.get("publish_failed", 0)
    if publish_failed:
        lines.append(f"publish failed: {_plural(publish_failed, 'task')} (the producer was told)")
    return lines


def to_dict(passed: bool, judgements: list[Judgement], measured: dict[str, float | None] | None = None,
            warnings: Sequence[str] = ()) -> dict[str, Any]:
    """verdict.json: whether the hypothesis held, each condition, every figure measured (when given), and what the
    reader must know to trust the figures (e.g. a node's clock far off the controller's)."""
    data: dict[str, Any] = {"passed": passed, "headline": headline(passed),
                            "conditions": [asdict(j) for j in judgements]}
    if measured is not None:
        data["figures"] = measured
    data["warnings"] = list(warnings)
    return data
