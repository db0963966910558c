"""Dose and response of a sweep: per configuration, how the tasks published under the fault fared at each value of
the swept parameter, and the knee of the curve.

A point's figures are its run's: the fault phase's throughput (completions per second) and the p50, p95 and p99 end
to end of the tasks published in it (summary.json ``phases``), and the run's lost, duplicated and failed tasks. Its
dose is the value asked; where the fault measured its own effect, the measured dose is the asked one times that
effect (``fault_effect``: measured over asked, the smallest of the run's windows).

The knee is the lowest dose at which the tasks' fortunes turn: the p95 end to end beyond the sweep's ``knee_p95``,
or the throughput under half of the lowest dose's (the lowest dose is the reference, a zero dose a run without the
fault).

    curves = load_curves(parent_dir)        # a matrix run's directory, from its run.json's sweep
    knee(curve.points, knee_p95)            # the first point past the knee, or None
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from chaoslab.analysis import run_dir as run_files
from chaoslab.report.compare import MISSING, esc, html_table

THROUGHPUT_FALL: Final = 0.5
"""A point whose throughput is under this share of the reference's (the lowest dose's) is past the knee."""
FIGURE_FILE: Final = "dose.png"
PERCENTILES: Final = ("p50", "p95", "p99")
COUNTS: Final = ("lost", "duplicated", "failed")


@dataclass(frozen=True)
class Point:
    value: str
    """The dose as asked (``200ms``)."""
    dose: float
    """The same in the parameter's base unit."""
    cell: str
    measured: float | None = None
    """The dose the fault measured it applied (asked x fault_effect); None where it measured nothing."""
    throughput: float | None = None
    latency: Mapping[str, float | None] | None = None
    """p50, p95, p99 end to end (seconds) of the tasks published in the fault phase."""
    counts: Mapping[str, float | None] | None = None
    """lost, duplicated, failed over the run."""
    passed: bool | None = None

    def percentile(self, name: str) -> float | None:
        return (self.latency or {}).get(name)


@dataclass(frozen=True)
class Knee:
    point: Point
    why: str


@dataclass(frozen=True)
class Curve:
    configuration: str
    """The matrix combination ("" without a matrix)."""
    points: tuple[Point, ...]
    knee: Knee | None


def knee(points: Sequence[Point], knee_p95: float | None = None) -> Knee | None:
    """The first point, lowest dose up, whose p95 end to end exceeds *knee_p95* or whose throughput is under
    THROUGHPUT_FALL of the first point's; None when no point is (or the first has no throughput and no limit)."""
    if not points:
        return None
    reference = points[0].throughput
    for point in points:
        p95 = point.percentile("p95")
        if knee_p95 is not None and p95 is not None and p95 > knee_p95:
            return Knee(point, f"p95 end to end {p95:.3g} s > {knee_p95:.3g} s")
        if reference and point.throughput is not None and point.throughput < THROUGHPUT_FALL * reference:
            return Knee(point, f"throughput {point.throughput:.3g}/s < {THROUGHPUT_FALL:.0%} of "
                               f"{reference:.3g}/s at {points[0].value}")
    return None


def _fault_phase(summary: Mapping[str, Any]) -> Mapping[str, Any]:
    return next((phase for phase in summary.get("phases") or [] if phase.get("name") == "fault"), {})


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def point_of(cell_dir: Path, value: str, dose: float) -> Point:
    """A sweep point from its run directory (figures missing where the run was not judged)."""
    summary = run_files.read_json(cell_dir / run_files.SUMMARY_FILE) or {}
    found = run_files.read_verdict(cell_dir) or {}
    figures = found.get("figures") or summary.get("figures") or {}
    phase = _fault_phase(summary)
    end_to_end = (phase.get("latency") or {}).get("end_to_end") or {}
    effect = _number(figures.get("fault_effect"))
    return Point(value, dose, cell_dir.name, measured=dose * effect if effect is not None and dose else None,
                 throughput=_number(phase.get("throughput")),
                 latency={name: _number(end_to_end.get(name)) for name in PERCENTILES},
                 counts={name: _number(figures.get(name)) for name in COUNTS},
                 passed=None if "passed" not in found else bool(found["passed"]))


def load_curves(parent: Path) -> list[Curve]:
    """The curves of a matrix run with a sweep (run.json ``sweep``), one per configuration; [] without."""
    run = run_files.read_run(parent) or {}
    sweep = run.get("sweep")
    if not isinstance(sweep, Mapping):
        return []
    limit = _number(sweep.get("knee_p95"))
    by_configuration: dict[str, list[Point]] = {}
    for item in sweep.get("points") or []:
        cell = parent / run_files.CELLS_DIR / str(item["cell"])
        by_configuration.setdefault(str(item.get("configuration") or ""), []).append(
            point_of(cell, str(item["value"]), float(item["dose"])))
    return [Curve(configuration, tuple(points), knee(points, limit))
            for configuration, points in by_configuration.items()]


def _axis_labels(curves: Sequence[Curve]) -> tuple[list[float], list[str]]:
    points = curves[0].points if curves else ()
    return [point.dose for point in points], [point.value for point in points]


def draw(curves: Sequence[Curve], param: str) -> Figure:
    """Throughput, p50/p95/p99 end to end and lost/duplicated/failed against the dose, a line per configuration,
    each configuration's knee a dotted vertical line."""
    figure = Figure(figsize=(13, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3)
    ticks, labels = _axis_labels(curves)
    styles = {"p50": ":", "p95": "-", "p99": "--"}
    for index, curve in enumerate(curves):
        colour = f"C{index}"
        name = curve.configuration or "run"
        doses = [point.dose for point in curve.points]
        axes[0].plot(doses, [point.throughput for point in curve.points], "o-", color=colour, label=name)
        for pct, style in styles.items():
            axes[1].plot(doses, [point.percentile(pct) for point in curve.points], style, marker="o", color=colour,
                         label=f"{name} {pct}")
        for marker, count in zip("ovs", COUNTS, strict=True):
            axes[2].plot(doses, [(point.counts or {}).get(count) for point in curve.points], marker=marker,
                         color=colour, label=f"{name} {count}")
        if curve.knee is not None:
            for ax in axes:
                ax.axvline(curve.knee.point.dose, color=colour, linestyle=":", linewidth=1)
    titles = ("throughput under the fault (/s)", "end to end of tasks published under it (s)",
              "tasks lost, duplicated, failed")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title, fontsize=10)
        ax.set_xticks(ticks, labels, rotation=45, fontsize=8)
        ax.set_xlabel(param)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylim(bottom=0)
    axes[1].legend(fontsize=7)
    axes[2].legend(fontsize=7)
    return figure


def _fmt(value: float | None, unit: str = "") -> str:
    return MISSING if value is None else f"{value:.3g}{unit}"


def section_html(curves: Sequence[Curve], param: str, png_uri: str) -> str:
    """The dose section of a matrix report: a table per configuration (the knee's row marked) and the figure."""
    parts = [f'<figure><img alt="{esc(param)} against the tasks" src="{png_uri}"></figure>']
    for curve in curves:
        rows, classes = [], []
        for point in curve.points:
            past = curve.knee is not None and point.dose >= curve.knee.point.dose
            rows.append([point.value, _fmt(point.measured), _fmt(point.throughput, "/s"),
                         *(_fmt(point.percentile(pct), " s") for pct in PERCENTILES),
                         *(_fmt((point.counts or {}).get(count)) for count in COUNTS),
                         {True: "held", False: "did not hold", None: MISSING}[point.passed]])
            classes.append("fail" if past else None)
        knee_text = (f"knee at {curve.knee.point.value}: {curve.knee.why}" if curve.knee is not None
                     else "no knee within the doses run")
        parts.append(f"<h3>{esc(curve.configuration or 'the run')}: {esc(knee_text)}</h3>")
        parts.append(html_table([param, "measured dose", "throughput", *PERCENTILES, *COUNTS, "hypothesis"], rows,
                                row_classes=classes))
    return "\n".join(parts)


def write_figure(curves: Sequence[Curve], param: str, parent: Path) -> Path:
    path = parent / FIGURE_FILE
    draw(curves, param).savefig(path, dpi=90)
    return path
