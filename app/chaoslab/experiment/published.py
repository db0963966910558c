"""Figures another system published for the same experiment, set beside this lab's in the study report.

A scenario file may say what another system (the research prototype this lab grew from, or a user's production)
measured for the same experiment, as a figure's value in the baseline and under the fault::

    published:
      source: the research prototype's published screenshots
      settings: {task_acks_late: false}    # optional: the configuration the figures were measured in
      figures:
        mean_run_time.cpu: {baseline: 1.41s, fault: 4.35s}
        success_ratio.memory: {baseline: 1, fault: 0.774}

Each name is a family of :data:`FAMILIES` (optionally per task kind, ``<family>.<kind>``) that the lab measures in
the baseline phase and in the fault phase of every run, as the figures ``<family>_baseline[.<kind>]`` and
``<family>_fault[.<kind>]`` (:mod:`chaoslab.analysis.figures`). The study report then shows, per configuration,
the published pair, the lab's pair (means and 95 % intervals) and whether both moved the same way; with
``settings``, only for the configurations (matrix cells) that have those Celery settings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from chaoslab.analysis.figures import KIND_SEPARATOR, phase_figure, unit_of
from chaoslab.units import format_duration, parse_duration

FAMILIES: Final = ("mean_run_time", "success_ratio", "throughput")
"""Figures measured in both the baseline and the fault phase."""
SIDES: Final = ("baseline", "fault")


@dataclass(frozen=True, slots=True)
class PublishedFigure:
    name: str
    """As written: ``mean_run_time.cpu``."""
    baseline: float
    fault: float

    def figure(self, side: str) -> str:
        """The lab's figure for one side: ``mean_run_time_baseline.cpu``."""
        return phase_figure(self.name, side)

    @property
    def figures(self) -> tuple[str, str]:
        return self.figure("baseline"), self.figure("fault")


def parse_figure(name: Any, value: Any, kinds: Iterable[str]) -> PublishedFigure:
    """One entry of ``published.figures`` (ValueError with a one-line message when it is not one)."""
    family, _, kind = str(name).partition(KIND_SEPARATOR)
    known = tuple(kinds)
    if not isinstance(name, str) or family not in FAMILIES or (kind and kind not in known):
        raise ValueError(f"unknown published figure (allowed: {', '.join(FAMILIES)}, each optionally "
                         f"{KIND_SEPARATOR}<kind>, kind one of {', '.join(known)})")
    figure = PublishedFigure(name, 0.0, 0.0)
    unit = unit_of(figure.figure("baseline"), known)
    if not isinstance(value, Mapping) or set(value) != set(SIDES):
        raise ValueError(f"must be a mapping with exactly baseline and fault, got {value!r}")
    baseline, fault = (_value(value[side], unit or "") for side in SIDES)
    return PublishedFigure(name, baseline, fault)


def _value(value: Any, unit: str) -> float:
    if unit == "duration":
        return parse_duration(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"must be a number >= 0, got {value!r}")
    if unit == "ratio" and value > 1:
        raise ValueError(f"a ratio must be <= 1, got {value!r}")
    return float(value)


def to_data(figures: Iterable[PublishedFigure], source: str, kinds: Iterable[str],
            with_units: bool = True, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``published`` mapping of a scenario file (durations with their unit), or, with *with_units* False, as
    plain numbers (seconds) for study.json."""
    known = tuple(kinds)

    def shown(figure: PublishedFigure, value: float) -> Any:
        duration = with_units and unit_of(figure.figure("baseline"), known) == "duration"
        return format_duration(value) if duration else value

    return {"source": source, **({"settings": dict(settings)} if settings else {}),
            "figures": {figure.name: {side: shown(figure, getattr(figure, side)) for side in SIDES}
                        for figure in figures}}
