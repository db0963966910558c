"""The hypothesis of a scenario checked against what the checker found."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from chaoslab.checker import Summary
from chaoslab.scenario import Condition

CLASSES = ("completed", "duplicated", "failed", "lost", "stuck", "publish_failed")
LATENCIES = ("queue_wait", "run_time", "end_to_end")


def _phase(summary: Summary, name: str) -> Any:
    return next((phase for phase in summary.phases if phase.name == name), None)


def figures(summary: Summary) -> dict[str, float | None]:
    """Every figure a hypothesis may name, from the checker's summary (None where it cannot be measured)."""
    values: dict[str, float | None] = {name: float(summary.classes.get(name, 0)) for name in CLASSES}
    values["unknown"] = float(len(summary.unknown_ids))
    sent = [task for task in summary.tasks if task.cls != "publish_failed"]
    values["success_ratio"] = (sum(task.final == "success" for task in sent) / len(sent)) if sent else None
    values["throughput"] = summary.overall.throughput
    baseline, fault = _phase(summary, "baseline"), _phase(summary, "fault")
    if baseline and fault and baseline.throughput:
        values["throughput_drop"] = 1.0 - (fault.throughput or 0.0) / baseline.throughput
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


def to_dict(passed: bool, judgements: list[Judgement], measured: dict[str, float | None] | None = None
            ) -> dict[str, Any]:
    """verdict.json: whether the hypothesis held, each condition, and every figure measured (when given)."""
    data: dict[str, Any] = {"passed": passed, "conditions": [asdict(j) for j in judgements]}
    if measured is not None:
        data["figures"] = measured
    return data
