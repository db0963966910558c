"""The hypothesis of a scenario checked against what the checker found, and the run's outcome said plainly."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from chaoslab.analysis.checker import DUPLICATED
from chaoslab.analysis.figures import Values
from chaoslab.experiment.scenario import Condition


@dataclass(frozen=True)
class Judgement:
    figure: str
    condition: str
    actual: float | None
    holds: bool


def judge(conditions: list[Condition], measured: Values) -> tuple[bool, list[Judgement]]:
    """Each condition against the run's figures (the checker's output, :func:`chaoslab.analysis.figures.measure`)."""
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


def to_dict(passed: bool, judgements: list[Judgement], measured: Values | None = None,
            warnings: Sequence[str] = ()) -> dict[str, Any]:
    """verdict.json: whether the hypothesis held, each condition, every figure measured (when given), and what the
    reader must know to trust the figures (e.g. a node's clock far off the controller's)."""
    data: dict[str, Any] = {"passed": passed, "headline": headline(passed),
                            "conditions": [asdict(j) for j in judgements]}
    if measured is not None:
        data["figures"] = measured
    data["warnings"] = list(warnings)
    return data
