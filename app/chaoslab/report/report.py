"""The report of a run: figures (PNG) and one self-contained HTML page.

    write_report("experiments/results/<run-id>")         # -> .../report.html
    write_matrix_report("experiments/results/<matrix>")  # every cell's report, and a page over them

Inputs, all in the run directory (named by :mod:`chaoslab.analysis.run_dir`): ``run.json`` (the runner's:
scenario, status, phases, planned fault windows, drain, versions, settings), the checker's output (``summary.json``
with the fault windows the nodes recorded, ``tasks.csv`` and ``executions.csv``), ``verdict.json`` when the scenario
had a hypothesis, and ``metrics.json``. The report reads what the checker wrote and derives nothing of its own: when
``summary.json`` or ``tasks.csv`` is missing (e.g. a run aborted before the check), the checker runs in memory on the
run directory (:func:`chaoslab.analysis.run_history.load_check`); nothing is written but the report.

Outputs: ``figures/<name>.png`` (see :data:`FIGURES`) and ``report.html``, which embeds
the figures as ``data:`` URIs, so the page can be copied or mailed alone; it has inline
CSS, no scripts and no external resources.

Figures, over seconds since the run start (``run.json`` ``started``), each fault window
shaded in :data:`FAULT_COLOUR` and labelled with the fault and its target, every phase
boundary marked by a dashed line and the phase's name. Time bins are 1 s, or the
smallest of :data:`NICE_BIN_WIDTHS` that keeps at most :data:`MAX_BINS` bins.

``throughput.png``
    Completions per second per task kind: a task's first successful end (the checker's
    ``completed_at``), counted in the bin where it ended.
``run_time.png``
    Mean run time (end - start) of the executions that ended in each bin, per kind.
``success_ratio.png``
    Of the tasks published in each bin: the share that succeeded (success ratio), that
    ended without success (failure ratio: final state failure or retry), and that never
    finished (lost, pending at the end, killed, or not sent). The three add up to 1.
``in_flight.png``
    Tasks in flight per worker node: the mean number of executions running during each
    bin (the integral of the start/end step function over the bin, divided by its width),
    over executions that ended. Dashed, per node: executions started in the bin that
    never ended (killed with their worker, or still running at the run end); their end
    is unknown, so they are not counted as in flight.
``execution_time.png``
    Histogram of the run time of every ended execution, per kind; executions that started
    inside a fault window are drawn dashed. Not over time, so not shaded.
``queue_wait.png``
    Queue wait (first start - publish) of the tasks published in each bin: p50, p95 and
    max (nearest rank, as the checker).
``node_cpu.png``, ``node_memory.png``, ``node_network.png``, ``node_retransmits.png``
    Each node's CPU, resident memory and lab NIC traffic, from the Prometheus series the
    runner kept in ``metrics.json`` (chaoslab.experiment.series); "no Prometheus series" without them.

Executions are the checker's (a start record paired with its end record): those that started by the run end,
an end after the run end counting as unknown, like one still running. Everything per task or per execution is
vectorised with numpy.
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from chaoslab.analysis import run_dir as run_files
from chaoslab.analysis import run_history, verdict
from chaoslab.analysis.checker import (
    BAD_CLASSES,
    CLASSES,
    WORKFLOW_VERDICTS,
    Execution,
    TaskResult,
    window_classes,
)
from chaoslab.experiment import series
from chaoslab.report import dose
from chaoslab.report.compare import (
    MISSING,
    compare,
    esc,
    fmt_count,
    fmt_rate,
    fmt_ratio,
    fmt_seconds,
    fmt_text,
    html_page,
    html_table,
    run_label,
    to_html,
    write_comparison,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
StrPath = str | os.PathLike[str]

REPORT_FILE: Final = run_files.REPORT_FILE
FIGURES_DIR: Final = run_files.FIGURES_DIR
NEVER_PUBLISHED: Final = "never published"
"""The kind shown for executions of ids the load generator never published."""
FAULT_COLOUR: Final = "#fdd49e"
"""Opaque fill of fault windows in every figure over time (light orange)."""
PHASE_COLOUR: Final = "#555555"
MAX_BINS: Final = 600
NICE_BIN_WIDTHS: Final = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
ID_LIST_LIMIT: Final = 50
WHOLE_RUN: Final = "whole run"
"""Label of the row for the checker's ``overall`` figures in the phase table."""
MATRIX_KEY_FIGURES: Final = ("throughput", "success_ratio")
FIGURE_SIZE: Final = (11.0, 3.8)
FIGURE_DPI: Final = 100
FIGURE_MARGINS: Final = {"left": 0.075, "right": 0.8, "bottom": 0.13, "top": 0.86}
"""Fixed margins, so that the time axes of all figures line up (the legend sits on the right)."""
HISTOGRAM_BINS: Final = 60
LOG_SCALE_SPAN: Final = 100.0
"""Use a log axis for durations when the largest is this many times the smallest."""

_PALETTE: Final = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
_FINAL_CODES: Final = {"success": 0, "failure": 1, "retry": 1}
_UNFINISHED: Final = 2
_STATUS_BANNERS: Final = {
    "aborted": "This run was ABORTED: it stopped before its plan ended; figures and counts cover only what ran.",
    "failed": "This run FAILED: the runner hit an error; figures and counts may be incomplete.",
    "running": "This run did NOT FINISH: its record still says running (the runner itself was stopped).",
}
_OUTCOME_SERIES: Final = (
    ("success ratio", 0, "#2ca02c"),
    ("failure ratio", 1, "#d62728"),
    ("never finished", _UNFINISHED, "#7f7f7f"),
)
_REPORT_CSS: Final = (".meta { color: #555; } .idlist { max-width: 1200px; } "
                      ".note { color: #7a4d00; background: #fff4dc; padding: 0.3em 0.6em; }")


# ---------------------------------------------------------------------------------------
# Run data as arrays (times in seconds since the run start)


@dataclass(frozen=True, slots=True)
class Window:
    """A phase or fault window, in seconds since the run start."""

    label: str
    start: float
    end: float
    source: Mapping[str, Any] = field(default_factory=dict)
    """The run.json entry it came from."""


@dataclass(frozen=True, slots=True)
class Tasks:
    """One entry per published task (the checker's tasks.csv rows)."""

    kinds: list[str]
    kind: IntArray
    publish: FloatArray
    completed: FloatArray
    """First successful end; NaN when the task never succeeded."""
    queue_wait: FloatArray
    final: IntArray
    """0 succeeded, 1 ended without success (failure or retry), 2 never finished."""


@dataclass(frozen=True, slots=True)
class Executions:
    """One entry per execution of the checker's that started by the run end."""

    kinds: list[str]
    kind: IntArray
    nodes: list[str]
    node: IntArray
    start: FloatArray
    end: FloatArray
    """NaN while the execution never ended, or ended after the run end."""


@dataclass(frozen=True, slots=True)
class RunData:
    path: Path
    run: dict[str, Any]
    summary: dict[str, Any]
    summary_source: str
    verdict: dict[str, Any] | None
    t0: float
    duration: float
    phases: list[Window]
    faults: list[Window]
    tasks: Tasks
    executions: Executions
    metrics: dict[str, Any] = field(default_factory=dict)
    """The run's Prometheus series (metrics.json; see chaoslab.experiment.series), empty without them."""

    @property
    def kind_colours(self) -> dict[str, str]:
        """One colour per task kind, the same in every figure."""
        return colours(sorted({*self.tasks.kinds, *self.executions.kinds}))


def _codes(names: Sequence[str]) -> tuple[list[str], IntArray]:
    """Sorted distinct names and each name's index among them."""
    if not names:
        return [], np.zeros(0, dtype=np.intp)
    unique, inverse = np.unique(np.asarray(names, dtype=str), return_inverse=True)
    return [str(name) for name in unique], inverse.astype(np.intp).ravel()


def _floats(values: Iterable[Any], offset: float = 0.0) -> FloatArray:
    """Numbers (``""``/None -> NaN), minus *offset*."""
    return np.array([math.nan if value in ("", None) else float(value) for value in values], dtype=np.float64) - offset


def tasks_from_results(tasks: Sequence[TaskResult], t0: float) -> Tasks:
    """Tasks from the checker's rows (tasks.csv)."""
    kinds, kind = _codes([task.kind for task in tasks])
    return Tasks(
        kinds=kinds,
        kind=kind,
        publish=_floats((task.publish_t for task in tasks), t0),
        completed=_floats((task.completed_at for task in tasks), t0),
        queue_wait=_floats(task.queue_wait for task in tasks),
        final=np.array([_FINAL_CODES.get(task.final, _UNFINISHED) for task in tasks], dtype=np.intp),
    )


def executions_from(executions: Iterable[Execution], t0: float, run_end: float) -> Executions:
    """The checker's executions (executions.csv) that started by *run_end*; an end after it is unknown (NaN)."""
    kept = [e for e in executions if e.start is not None and e.start <= run_end]
    kind_names, kind_codes = _codes([e.kind or NEVER_PUBLISHED for e in kept])
    node_names, node_codes = _codes([e.node for e in kept])
    return Executions(kind_names, kind_codes, node_names, node_codes, _floats((e.start for e in kept), t0),
                      _floats((e.end if e.end is not None and e.end <= run_end else None for e in kept), t0))


def _windows(
    items: Iterable[Mapping[str, Any]], t0: float, run_end: float, label: Callable[[Any], str]
) -> list[Window]:
    return [
        Window(label(item), float(item["start"]) - t0, float(item.get("end") or run_end) - t0, item)
        for item in items
        if item.get("start") is not None
    ]


def fault_label(fault: Mapping[str, Any]) -> str:
    target = fault.get("target")
    return f"{fault.get('fault', 'fault')} on {target}" if target else str(fault.get("fault", "fault"))


def _planned_span(run: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """Run start and end (epoch) from run.json: ``started`` and the end of its phases, else ``ended``."""
    phases = run.get("phases") or []
    start = run.get("started") or (phases[0]["start"] if phases else None)
    end = run.get("run_end") or (phases[-1]["end"] if phases else None) or run.get("ended")
    return start, end


def load_run(run_dir: StrPath) -> RunData:
    """Everything the report shows, read from one run directory."""
    path = Path(run_dir)
    run = run_files.read_run(path)
    if run is None:
        raise FileNotFoundError(f"{path / run_files.RUN_FILE} does not exist: not a run directory")
    checked = run_history.load_check(path, run)
    summary = checked.summary
    planned_start, planned_end = _planned_span(run)
    t0 = float(planned_start or summary.get("overall", {}).get("start") or 0.0)
    run_end = float(summary.get("run_end") or planned_end or t0)
    return RunData(
        path=path,
        run=run,
        summary=summary,
        summary_source=checked.source,
        verdict=run_files.read_verdict(path),
        t0=t0,
        duration=max(run_end - t0, 1.0),
        phases=_windows(run.get("phases") or [], t0, run_end, lambda phase: str(phase["name"])),
        faults=_windows(summary.get("faults") or run.get("faults") or [], t0, run_end, fault_label),
        tasks=tasks_from_results(checked.tasks, t0),
        executions=executions_from(checked.executions, t0, run_end),
        metrics=run_files.read_metrics(path),
    )


# ---------------------------------------------------------------------------------------
# Time bins and binned statistics


@dataclass(frozen=True, slots=True)
class Timebase:
    edges: FloatArray
    """Bin edges in seconds since the run start; the last bin ends at the run end."""

    @classmethod
    def for_duration(cls, duration: float) -> Timebase:
        width = next((w for w in NICE_BIN_WIDTHS if duration / w <= MAX_BINS), duration / MAX_BINS)
        bins = max(1, math.ceil(duration / width - 1e-9))
        return cls(np.minimum(np.arange(bins + 1, dtype=np.float64) * width, duration))

    @property
    def widths(self) -> FloatArray:
        return np.diff(self.edges)

    @property
    def centres(self) -> FloatArray:
        return (self.edges[:-1] + self.edges[1:]) / 2

    @property
    def bins(self) -> int:
        return len(self.edges) - 1

    def index(self, values: FloatArray) -> IntArray:
        """Bin of each value; -1 for NaN or outside the run (the run end falls in the last bin)."""
        index = np.searchsorted(self.edges, values, side="right") - 1
        index[values == self.edges[-1]] = self.bins - 1
        index[~((values >= self.edges[0]) & (values <= self.edges[-1]))] = -1
        return index.astype(np.intp)

    def sums(self, values: FloatArray, weights: FloatArray | None = None) -> FloatArray:
        """Per bin: how many *values* fall in it, or the sum of their *weights*."""
        index = self.index(values)
        keep = index >= 0
        chosen = None if weights is None else weights[keep]
        return np.bincount(index[keep], weights=chosen, minlength=self.bins).astype(np.float64)


def _ratio(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
    """Element-wise quotient, NaN where the denominator is 0 (a gap in the plotted line)."""
    result = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=result, where=denominator > 0)
    return result


def binned_quantiles(
    timebase: Timebase, times: FloatArray, values: FloatArray, percentiles: Sequence[float]
) -> list[FloatArray]:
    """Nearest-rank percentiles of *values* grouped by the bin of *times*; NaN for empty bins."""
    index = timebase.index(times)
    keep = (index >= 0) & np.isfinite(values)
    index, values = index[keep], values[keep]
    order = np.lexsort((values, index))
    ordered = values[order]
    counts = np.bincount(index, minlength=timebase.bins)
    firsts = np.cumsum(counts) - counts
    results = []
    for percentile in percentiles:
        rank = np.clip(np.ceil(percentile / 100 * counts).astype(np.intp), 1, None)
        position = np.minimum(firsts + rank - 1, max(len(ordered) - 1, 0))
        picked = ordered[position] if len(ordered) else np.zeros(timebase.bins)
        results.append(np.where(counts > 0, picked, np.nan))
    return results


def busy_time(starts: FloatArray, ends: FloatArray, at: FloatArray) -> FloatArray:
    """Total running time of the executions ``[start, end)`` up to each time in *at*."""
    starts, ends = np.sort(starts), np.sort(ends)
    start_sums = np.concatenate(([0.0], np.cumsum(starts)))
    end_sums = np.concatenate(([0.0], np.cumsum(ends)))
    started = np.searchsorted(starts, at, side="right")
    ended = np.searchsorted(ends, at, side="right")
    return (started * at - start_sums[started]) - (ended * at - end_sums[ended])


def colours(names: Sequence[str]) -> dict[str, str]:
    return {name: _PALETTE[index % len(_PALETTE)] for index, name in enumerate(names)}


# ---------------------------------------------------------------------------------------
# Figures


@dataclass(frozen=True, slots=True)
class FigureSpec:
    name: str
    title: str
    caption: str
    draw: Callable[[Axes, RunData, Timebase], None]
    over_time: bool = True


def _no_data(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} recorded", transform=ax.transAxes, ha="center", va="center", color="#888")


def _is_wide(values: FloatArray) -> bool:
    """True when the positive *values* span LOG_SCALE_SPAN or more (then a log axis reads better)."""
    positive = values[np.isfinite(values) & (values > 0)]
    return bool(len(positive)) and positive.max() / positive.min() >= LOG_SCALE_SPAN


def _log_y_if_wide(ax: Axes, values: FloatArray) -> None:
    if _is_wide(values):
        ax.set_yscale("log")


def _mark_time(ax: Axes, data: RunData) -> None:
    """Shade and label the fault windows, mark the phase boundaries, set the time axis."""
    for index, fault in enumerate(data.faults):
        ax.axvspan(fault.start, fault.end, color=FAULT_COLOUR, lw=0, zorder=0, label=None if index else "fault window")
        ax.annotate(
            fault.label,
            xy=(fault.start, 1),
            xycoords=("data", "axes fraction"),
            xytext=(3, -3),
            textcoords="offset points",
            va="top",
            fontsize=8,
            color="#a0522d",
            clip_on=True,
        )
    boundaries = sorted({p.start for p in data.phases} | {p.end for p in data.phases})
    for boundary in boundaries:
        ax.axvline(boundary, color=PHASE_COLOUR, ls="--", lw=0.8, zorder=1)
    ax.set_xlim(0, data.duration)
    names = ax.secondary_xaxis("top")
    names.set_xticks([(p.start + p.end) / 2 for p in data.phases], labels=[p.label for p in data.phases])
    names.tick_params(length=0, labelsize=8, labelcolor=PHASE_COLOUR)
    ax.set_xlabel("seconds since run start")


def _draw_throughput(ax: Axes, data: RunData, timebase: Timebase) -> None:
    tasks = data.tasks
    if not np.isfinite(tasks.completed).any():
        _no_data(ax, "completions")
    palette = data.kind_colours
    for index, kind in enumerate(tasks.kinds):
        rate = timebase.sums(tasks.completed[tasks.kind == index]) / timebase.widths
        ax.plot(timebase.centres, rate, color=palette[kind], lw=1.2, label=kind)
    if len(tasks.kinds) > 1:
        ax.plot(
            timebase.centres,
            timebase.sums(tasks.completed) / timebase.widths,
            color="k",
            lw=1,
            ls=":",
            label="all kinds",
        )
    ax.set_ylabel("completions/s")


def _draw_run_time(ax: Axes, data: RunData, timebase: Timebase) -> None:
    runs = data.executions
    ended = np.isfinite(runs.end)
    if not ended.any():
        _no_data(ax, "ended executions")
    palette = data.kind_colours
    for index, kind in enumerate(runs.kinds):
        mine = ended & (runs.kind == index)
        durations = runs.end[mine] - runs.start[mine]
        mean = _ratio(timebase.sums(runs.end[mine], durations), timebase.sums(runs.end[mine]))
        ax.plot(timebase.centres, mean, color=palette[kind], lw=1.2, marker=".", ms=3, label=kind)
    _log_y_if_wide(ax, runs.end[ended] - runs.start[ended])
    ax.set_ylabel("mean run time (s)")


def _draw_success_ratio(ax: Axes, data: RunData, timebase: Timebase) -> None:
    tasks = data.tasks
    if not len(tasks.publish):
        _no_data(ax, "published tasks")
    published = timebase.sums(tasks.publish)
    for label, code, colour in _OUTCOME_SERIES:
        share = _ratio(timebase.sums(tasks.publish[tasks.final == code]), published)
        ax.plot(timebase.centres, share, color=colour, lw=1.2, label=label)
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel("share of tasks published")


def _draw_in_flight(ax: Axes, data: RunData, timebase: Timebase) -> None:
    runs = data.executions
    if not len(runs.start):
        _no_data(ax, "executions")
    ended = np.isfinite(runs.end)
    palette = colours(runs.nodes)
    for index, node in enumerate(runs.nodes):
        mine = runs.node == index
        busy = busy_time(runs.start[mine & ended], runs.end[mine & ended], timebase.edges)
        ax.plot(timebase.centres, np.diff(busy) / timebase.widths, color=palette[node], lw=1.2, label=node)
        if (mine & ~ended).any():
            started = timebase.sums(runs.start[mine & ~ended])
            label = f"{node}, never ended"
            ax.plot(timebase.centres, started, color=palette[node], lw=1, ls="--", label=label)
    ax.set_ylabel("executions")


def _in_fault(data: RunData, times: FloatArray) -> npt.NDArray[np.bool_]:
    inside = np.zeros(times.shape, dtype=bool)
    for fault in data.faults:
        inside |= (times >= fault.start) & (times < fault.end)
    return inside


def _draw_execution_time(ax: Axes, data: RunData, timebase: Timebase) -> None:
    runs = data.executions
    ended = np.isfinite(runs.end)
    durations = runs.end - runs.start
    if not ended.any():
        _no_data(ax, "ended executions")
        return
    wide = _is_wide(durations[ended])
    if wide:  # executions of zero length fall outside a log axis
        positive = durations[ended & (durations > 0)]
        edges = np.geomspace(positive.min(), positive.max(), HISTOGRAM_BINS + 1)
    else:
        edges = np.linspace(0, max(durations[ended].max(), 1e-6), HISTOGRAM_BINS + 1)
    during = _in_fault(data, runs.start)
    palette = data.kind_colours
    for index, kind in enumerate(runs.kinds):
        for inside, style, suffix in ((False, "-", ""), (True, "--", ", started in a fault")):
            mine = ended & (runs.kind == index) & (during == inside)
            if mine.any():
                label = kind + suffix
                ax.hist(durations[mine], bins=edges, histtype="step", color=palette[kind], ls=style, label=label)
    if wide:
        ax.set_xscale("log")
    ax.set_xlabel("run time of an execution (s)")
    ax.set_ylabel("executions")


def _draw_queue_wait(ax: Axes, data: RunData, timebase: Timebase) -> None:
    tasks = data.tasks
    if not np.isfinite(tasks.queue_wait).any():
        _no_data(ax, "started tasks")
    p50, p95, top = binned_quantiles(timebase, tasks.publish, tasks.queue_wait, (50, 95, 100))
    for values, label, colour in ((p50, "p50", "#1f77b4"), (p95, "p95", "#ff7f0e"), (top, "max", "#d62728")):
        ax.plot(timebase.centres, values, color=colour, lw=1.2, label=label)
    _log_y_if_wide(ax, tasks.queue_wait)
    ax.set_ylabel("queue wait (s)")


FIGURES: Final = (
    FigureSpec(
        "throughput",
        "Throughput per task kind",
        "Completions per second (first successful end of a task).",
        _draw_throughput,
    ),
    FigureSpec(
        "run_time",
        "Average run time per task kind",
        "Mean run time of the executions ending in each bin.",
        _draw_run_time,
    ),
    FigureSpec(
        "success_ratio",
        "Success and failure ratio over time",
        "Of the tasks published in each bin: succeeded, ended without success, never finished.",
        _draw_success_ratio,
    ),
    FigureSpec(
        "in_flight",
        "Tasks in flight per worker node",
        "Solid: mean number of executions running in each bin; dashed: executions started in the bin that never"
        " ended (killed, or still running at the run end).",
        _draw_in_flight,
    ),
    FigureSpec(
        "execution_time",
        "Execution-time distribution per task kind",
        "Run time of every ended execution; dashed: started inside a fault window.",
        _draw_execution_time,
        over_time=False,
    ),
    FigureSpec(
        "queue_wait",
        "Queue wait over time",
        "First start - publish, by publish time: p50, p95 and max.",
        _draw_queue_wait,
    ),
)


def _draw_node_series(ax: Axes, data: RunData, names: Sequence[tuple[str, str]], scale: float, unit: str) -> None:
    """One line per node (and per stored query in ``names``: (query name, line style))."""
    drawn = False
    nodes = sorted({node for name, _ in names for node in series.per_node(data.metrics, name, data.t0)})
    palette = colours(nodes)
    for name, style in names:
        for node, (times, values) in sorted(series.per_node(data.metrics, name, data.t0).items()):
            label = node if len(names) == 1 else f"{node} {name.rsplit('_', 1)[-1]}"
            ax.plot(times, [value / scale for value in values], color=palette[node], ls=style, lw=1.2, label=label)
            drawn = True
    if not drawn:
        _no_data(ax, "Prometheus series")
    ax.set_ylabel(unit)


def _draw_node_cpu(ax: Axes, data: RunData, _timebase: Timebase) -> None:
    _draw_node_series(ax, data, [("node_cpu", "-")], 1.0, "CPUs")


def _draw_node_memory(ax: Axes, data: RunData, _timebase: Timebase) -> None:
    _draw_node_series(ax, data, [("node_memory", "-")], 2**20, "MiB")


def _draw_node_network(ax: Axes, data: RunData, _timebase: Timebase) -> None:
    _draw_node_series(ax, data, [("node_network_transmit", "-"), ("node_network_receive", ":")], 1e3, "kB/s")


def _draw_node_retransmits(ax: Axes, data: RunData, _timebase: Timebase) -> None:
    _draw_node_series(ax, data, [("node_tcp_retransmits", "-")], 1.0, "segments/s")


NODE_FIGURES: Final = (
    FigureSpec("node_cpu", "CPU per node", "CPUs used by each node's processes (Prometheus, 5 s steps).",
               _draw_node_cpu),
    FigureSpec("node_memory", "Memory per node", "Resident memory of each node, page cache left out.",
               _draw_node_memory),
    FigureSpec("node_network", "Network per node", "Bytes per second each node sent (solid) and received (dotted)"
               " on its lab NIC.", _draw_node_network),
    FigureSpec("node_retransmits", "TCP retransmissions per node", "Segments per second each node's TCP sent again"
               " (node_exporter's netstat): loss on the wire makes the sender resend.", _draw_node_retransmits),
)


def draw_figure(spec: FigureSpec, data: RunData, timebase: Timebase) -> Figure:
    """One figure, drawn and not yet saved (Agg canvas, no pyplot state)."""
    figure = Figure(figsize=FIGURE_SIZE, dpi=FIGURE_DPI)
    FigureCanvasAgg(figure)
    figure.subplots_adjust(**FIGURE_MARGINS)
    ax = figure.add_subplot()
    if spec.over_time:
        _mark_time(ax, data)
    spec.draw(ax, data, timebase)
    ax.set_title(spec.title, pad=18 if spec.over_time else 6)
    ax.grid(True, color="#e5e5e5", lw=0.6)
    ax.set_axisbelow(True)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return figure


def draw_figures(data: RunData) -> dict[str, Figure]:
    """Every figure of :data:`FIGURES` and :data:`NODE_FIGURES`, by name, drawn and not yet saved."""
    timebase = Timebase.for_duration(data.duration)
    return {spec.name: draw_figure(spec, data, timebase) for spec in (*FIGURES, *NODE_FIGURES)}


def write_figures(data: RunData, out_dir: Path) -> dict[str, Path]:
    """Every figure of :func:`draw_figures` as ``<out_dir>/<name>.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = {}
    for name, figure in draw_figures(data).items():
        pngs[name] = out_dir / f"{name}.png"
        figure.savefig(pngs[name], format="png")
    return pngs


# ---------------------------------------------------------------------------------------
# HTML sections


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _section(title: str, body: str) -> str:
    return f"<section>\n<h2>{esc(title)}</h2>\n{body}\n</section>"


def _value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list | bool) or value is None:
        return json.dumps(value)
    return str(value)


def status_banner(run: Mapping[str, Any]) -> str:
    """A banner for a run that did not complete, with the runner's error when it gave one."""
    text = _STATUS_BANNERS.get(str(run.get("status", "")))
    if not text:
        return ""
    error = f" Error: {run['error']}" if run.get("error") else ""
    return f'<div class="banner" id="status-banner">{esc(text + error)}</div>'


def _title(run: Mapping[str, Any], path: Path) -> str:
    return f"{run_label(run, path.name)}: run {run.get('run_id') or path.name} ({run.get('status', 'unknown')})"


def _header(data: RunData) -> str:
    run = data.run
    meta = (
        f"scenario <b>{esc(run.get('scenario', MISSING))}</b>, cell <b>{esc(run.get('cell') or MISSING)}</b>, "
        f"run id <b>{esc(run.get('run_id', data.path.name))}</b>, status <b>{esc(run.get('status', 'unknown'))}</b>, "
        f"duration {esc(fmt_seconds(data.duration))}; figures from {esc(data.summary_source)}"
    )
    banner = status_banner(run)
    return f'<h1>{esc(_title(run, data.path))}</h1>\n<p class="meta">{meta}</p>\n{banner}'


def _pass_fail(holds: object) -> str:
    return "pass" if holds else "fail"


def _verdict_section(found: Mapping[str, Any] | None) -> str:
    if found is None:
        return _section("Verdict", "<p>No verdict: the scenario states no hypothesis, or the run ended before it.</p>")
    conditions = found.get("conditions", [])
    rows = [
        [str(c.get("figure", "")), str(c.get("condition", "")), _value(c.get("actual")),
         "held" if c.get("holds") else "did not hold"]
        for c in conditions
    ]
    table = html_table(
        ["figure", "condition", "actual", "result"],
        rows,
        row_classes=[_pass_fail(c.get("holds")) for c in conditions],
        table_class="verdict",
    )
    css = _pass_fail(found.get("passed"))
    headline = verdict.headline(bool(found.get("passed"))).capitalize()
    notes = "".join(f'<p class="note">Note: {esc(text)}</p>\n' for text in found.get("warnings") or [])
    return _section("Verdict", f'<p class="{css}">{esc(headline)}</p>\n{notes}{table}')


CLASS_MEANINGS: Final = {
    "completed": "ran and succeeded (one delivery; retries the task asked for allowed)",
    "duplicated_completed": "the broker delivered it again and it ran more than once; it succeeded",
    "duplicated_not_completed": "it ran more than once and never succeeded",
    "failed": "the task raised",
    "failed_by_worker": "Celery's worker recorded a failure it made itself (WorkerLostError, time limit) or "
                        "discarded the task (expired, revoked): the caller was told",
    "pending": "still queued, reserved or running at the end: a backlog, not a loss",
    "lost": "gone: not in the broker, no result, never completed",
    "publish_failed": "the publish failed or timed out: the producer was told",
}


def _classes_section(summary: Mapping[str, Any], drain: Mapping[str, Any] | None) -> str:
    classes, causes = summary.get("classes", {}), summary.get("causes", {})
    rows = [[name.replace("_", " "), fmt_count(classes.get(name)),
             ", ".join(f"{cause.replace('_', ' ')} {count}" for cause, count in (causes.get(name) or {}).items()),
             CLASS_MEANINGS.get(name, "")] for name in CLASSES if name in classes]
    counts = html_table(["class", "tasks", "causes", "meaning"], rows,
                        cell_class=lambda column, text: "num" if column == 1 else None, table_class="classes")
    said = "".join(f"<li>{esc(line)}</li>" for line in verdict.outcome_lines(summary, drain))
    delivery = summary.get("delivery", {})
    snapshot = summary.get("snapshot") or {}
    facts = {
        "tasks": fmt_count(summary.get("tasks")),
        "delivery guarantee observed": fmt_text(delivery.get("guarantee")),
        "cut short, never run again": fmt_count(delivery.get("unfinished")),
        "ran more than once": fmt_count(delivery.get("redelivered")),
        "never completed": fmt_count(summary.get("never_completed")),
        "retried (by the task)": fmt_count(summary.get("retried")),
        "publish failed but executed": fmt_count(summary.get("publish_failed_executed")),
        "broker at the end": (f"{snapshot.get('queued', 0):,} queued, {snapshot.get('reserved', 0):,} reserved"
                              if snapshot else "no snapshot"),
    }
    table = html_table(list(facts), [list(facts.values())], table_class="delivery")
    return _section("Tasks by class", f"<ul class=\"outcome\">{said}</ul>\n{counts}\n{table}")


WORKFLOW_MEANINGS: Final = {
    "finished": "every task completed (a chord's callback once)",
    "pending": "a task not completed is still queued, reserved or running",
    "broken": "a task did not complete: the workflow stopped there",
    "callback_repeated": "the chord's callback ran more than once",
    "callback_never": "the chord's header completed; its callback was lost",
    "publish_failed": "the publish failed or timed out: the producer was told",
}


def _workflows_section(summary: Mapping[str, Any]) -> str:
    """Each canvas shape's verdicts, and where those that did not finish stopped; nothing for a load without
    canvases."""
    counts, gaps = summary.get("workflows") or {}, summary.get("workflow_gaps") or {}
    if not counts:
        return ""
    rows = [[shape, *(fmt_count(counts[shape].get(verdict, 0)) for verdict in WORKFLOW_VERDICTS),
             ", ".join(f"task {gap} x{count}" for gap, count in (gaps.get(shape) or {}).items()) or MISSING]
            for shape in counts]
    table = html_table(["shape", *(verdict.replace("_", " ") for verdict in WORKFLOW_VERDICTS), "stopped at"], rows,
                       table_class="workflows")
    meanings = "".join(f"<li><b>{esc(verdict.replace('_', ' '))}</b>: {esc(text)}</li>"
                       for verdict, text in WORKFLOW_MEANINGS.items())
    return _section("Workflows (canvases)", f"{table}\n<ul>{meanings}</ul>")


def _success_text(ratios: Mapping[str, float]) -> str:
    if len(ratios) == 1:
        return fmt_ratio(next(iter(ratios.values())))
    return "; ".join(f"{kind} {fmt_ratio(ratio)}" for kind, ratio in ratios.items()) or MISSING


def fmt_offset(seconds: float | None) -> str:
    """A time since the run start, e.g. ``22.0 s``."""
    return MISSING if seconds is None else f"{seconds:,.1f} s"


def _phase_row(phase: Mapping[str, Any], t0: float, name: str | None = None) -> list[str]:
    end_to_end = phase.get("latency", {}).get("end_to_end", {})
    return [
        name or str(phase.get("name")),
        fmt_offset(phase["start"] - t0),
        fmt_seconds(phase["end"] - phase["start"]),
        fmt_count(phase.get("published")),
        fmt_count(phase.get("completed")),
        fmt_rate(phase.get("throughput")),
        _success_text(phase.get("success_ratio", {})),
        *(fmt_seconds(end_to_end.get(p)) for p in ("p50", "p95", "p99")),
    ]


def _phases_section(data: RunData) -> str:
    rows = [_phase_row(phase, data.t0) for phase in data.summary.get("phases", [])]
    if "overall" in data.summary:
        rows.append(_phase_row(data.summary["overall"], data.t0, WHOLE_RUN))
    headers = [
        "phase",
        "start",
        "duration",
        "published",
        "completed",
        "throughput",
        "success ratio",
        "p50 end to end",
        "p95 end to end",
        "p99 end to end",
    ]
    if not rows:
        return _section("Phases", "<p>No phases.</p>")
    return _section("Phases", html_table(headers, rows, cell_class=lambda column, text: "num" if column else None))


def _recovery_section(data: RunData) -> str:
    recovery = data.summary.get("recovery", {})
    time_s = recovery.get("time_s")
    fault_end = recovery.get("fault_end")
    if time_s is not None and fault_end is not None:
        text = (
            f"Recovered {fmt_seconds(time_s)} after the last fault window ended "
            f"(at {fmt_offset(fault_end - data.t0)} since run start)."
        )
    else:
        text = f"Recovery time: not determined ({recovery.get('note', 'no recovery figures')})."
    rows = [
        [
            fmt_seconds(time_s),
            fmt_text(recovery.get("note")),
            fmt_rate(recovery.get("baseline_rate")),
            fmt_text(None if recovery.get("baseline_backlog") is None else f"{recovery['baseline_backlog']:.1f}"),
        ]
    ]
    table = html_table(["recovery time", "note", "baseline completion rate", "baseline backlog"], rows)
    return _section("Recovery", f"<p>{esc(text)}</p>\n{table}")


def _id_list(name: str, ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:ID_LIST_LIMIT])
    more = f" (first {ID_LIST_LIMIT} shown)" if len(ids) > ID_LIST_LIMIT else ""
    heading = f"{name.replace('_', ' ')}: {len(ids):,}{more}"
    return f'<h3>{esc(heading)}</h3>\n<p class="idlist"><code>{esc(shown)}</code></p>'


def _ids_section(summary: Mapping[str, Any]) -> str:
    ids = summary.get("ids", {})
    always = ("lost", "pending")
    others = (*(c for c in BAD_CLASSES if c not in always), "publish_failed_executed")
    parts = [_id_list(name, ids.get(name, [])) for name in (*always, *others) if name in always or ids.get(name)]
    return _section("Task ids by class", "\n".join(parts))


def _planned_params(data: RunData, fault: object) -> object:
    planned = next((entry for entry in data.run.get("faults") or [] if entry.get("fault") == fault), {})
    return planned.get("params", {})


def _faults_section(data: RunData) -> str:
    if not data.faults:
        return _section("Fault windows", "<p>No fault windows in this run.</p>")
    rows = [
        [
            str(window.source.get("fault")),
            fmt_text(window.source.get("target")),
            fmt_offset(window.start),
            fmt_offset(window.end),
            fmt_seconds(window.end - window.start),
            fmt_text(window.source.get("source")),
            _value(_planned_params(data, window.source.get("fault"))),
            *_effect_cells(window.source.get("effect")),
        ]
        for window in data.faults
    ]
    text = ("<p>When each fault took effect and was reverted on its node, as the node's fault agent recorded it "
            "(source <code>agent</code>), or the runner's phase bounds where those records are missing "
            "(<code>planned</code>); and what the fault did, as its node measured it while it was in force "
            "(asked, measured, measured over asked): below 0.9 the fault was not effective.</p>")
    headers = ["fault", "node", "start", "end", "duration", "source", "parameters", "asked", "measured", "effect"]
    return _section("Fault windows", text + "\n" + html_table(headers, rows))


def _triggers_section(data: RunData) -> str:
    """When each armed fault's condition held, how long it took to act, and what became of the tasks in the window."""
    triggers = data.summary.get("triggers") or []
    if not triggers:
        return ""
    rows, marked = [], []
    for row in triggers:
        fired = bool(row.get("fired"))
        window = row.get("window") or {}
        rows.append([str(row.get("fault")), str(row.get("node")), str(row.get("condition")),
                     fmt_offset(row["at"] - data.t0) if fired else f"never ({row.get('by')})",
                     fmt_offset(row["in_force"] - data.t0) if fired else MISSING,
                     f"{row['delay'] * 1000:.1f} ms" if fired else MISSING,
                     window_classes(window) if fired else MISSING])
        marked += [[task_id, str(task.get("cls")), fmt_text(task.get("cause"))] for task_id, task in window.items()]
    text = ("<p>Each armed fault waited on its node for its condition on the task state; the condition held at the "
            "instant of the ledger record that made it hold (written by the worker as it happened), and the fault "
            "was in force the delay later. The tasks in the window are those the condition counted then (running, "
            "held unstarted, or the one that started), with what this run judged became of them.</p>")
    table = html_table(["fault", "node", "condition", "held at", "in force at", "delay", "tasks in the window"], rows)
    tasks = html_table(["task in the window", "class", "cause"], marked) if marked else ""
    return _section("Triggers", "\n".join(part for part in (text, table, tasks) if part))


def _effect_cells(effect: Mapping[str, Any] | None) -> list[str]:
    """Asked, measured (and how) and the verdict on them, for one fault window (plain text: the table escapes)."""
    if not effect:
        return ["", "not measured", ""]
    if effect.get("error"):
        return ["", f"not measured: {effect['error']}", ""]
    ratio = effect.get("ratio")
    verdict = "effective" if effect.get("effective") else "NOT EFFECTIVE"
    return [_value(effect.get("asked")), f"{_value(effect.get('measured'))} ({effect.get('how', '')})",
            f"{ratio:g}, {verdict}" if isinstance(ratio, int | float) else verdict]


def figure_html(spec: FigureSpec, png: Path) -> str:
    return (
        f'<figure id="figure-{esc(spec.name)}">\n<img alt="{esc(spec.title)}" src="{data_uri(png)}">\n'
        f"<figcaption>{esc(spec.title)}: {esc(spec.caption)}</figcaption>\n</figure>"
    )


def _figures_section(pngs: Mapping[str, Path]) -> str:
    specs = (*FIGURES, *NODE_FIGURES)
    return _section("Figures", "\n".join(figure_html(spec, pngs[spec.name]) for spec in specs if spec.name in pngs))


def _mapping_section(title: str, values: Mapping[str, Any] | None) -> str:
    if not values:
        return _section(title, "<p>None recorded.</p>")
    return _section(title, html_table(["name", "value"], [[str(k), _value(v)] for k, v in sorted(values.items())]))


def _records_section(data: RunData) -> str:
    counts = dict(data.summary.get("records", {}))
    unknown = data.summary.get("unknown", {})
    counts.update({f"unknown_{key}": value for key, value in unknown.items()})
    section = _mapping_section("Ledger records", counts)
    examples = data.summary.get("malformed") or []
    if examples:
        items = "".join(f"<li><code>{esc(example)}</code></li>" for example in examples)
        section += f"\n<p>Records the checker could not read (first {len(examples)}):</p>\n<ul>{items}</ul>"
    return section


def _effective_settings_section(found: Mapping[str, Any] | None) -> str:
    """What each worker reported it ran with."""
    if not found:
        return _section("Settings the workers ran with", "<p>None recorded.</p>")
    names = sorted({name for node in found.values() for name in (node.get("settings") or {})})
    nodes = sorted(found)
    rows = [[name, *(_value((found[node].get("settings") or {}).get(name)) for node in nodes)] for name in names]
    return _section("Settings the workers ran with", html_table(["setting", *nodes], rows))


def render_html(data: RunData, pngs: Mapping[str, Path]) -> str:
    """The report page of one run, with *pngs* embedded."""
    body = "\n".join(
        (
            _header(data),
            _verdict_section(data.verdict),
            _classes_section(data.summary, data.run.get("drain")),
            _workflows_section(data.summary),
            _phases_section(data),
            _recovery_section(data),
            _ids_section(data.summary),
            _faults_section(data),
            _triggers_section(data),
            _figures_section(pngs),
            _mapping_section("Versions", data.run.get("versions")),
            _mapping_section("Celery settings (the scenario's)", data.run.get("settings")),
            _effective_settings_section(data.run.get("effective_settings")),
            _records_section(data),
        )
    )
    return html_page(_title(data.run, data.path), body, _REPORT_CSS)


# ---------------------------------------------------------------------------------------
# Entry points


def write_report(run_dir: StrPath) -> Path:
    """Write ``figures/*.png`` and ``report.html`` into *run_dir*; return the page's path.

    A matrix parent directory gets :func:`write_matrix_report` instead.
    """
    if run_files.is_matrix(run_dir):
        return write_matrix_report(run_dir)
    data = load_run(run_dir)
    pngs = write_figures(data, data.path / FIGURES_DIR)
    page = run_files.report_path(data.path)
    run_files.write_atomically(page, render_html(data, pngs))
    return page


def _cell_section(parent: Path, cell: Path) -> str:
    title = f"Cell {cell.name}"
    run = run_files.read_run(cell)
    if run is None:
        return _section(title, "<p>No run directory for this cell (the matrix run stopped before it).</p>")
    page = write_report(cell)
    href = esc(page.relative_to(parent).as_posix())
    status = esc(run.get("status", "unknown"))
    link = f'<p><a href="{href}">full report of this cell</a> (status {status})</p>'
    by_name = {spec.name: spec for spec in FIGURES}
    figures = "\n".join(figure_html(by_name[name], cell / FIGURES_DIR / f"{name}.png") for name in MATRIX_KEY_FIGURES)
    return _section(title, f"{status_banner(run)}\n{link}\n{figures}")


def _dose_section(parent: Path, run: Mapping[str, Any]) -> str:
    """A sweep's curves against the dose and each configuration's knee ("" for a matrix without a sweep)."""
    curves = dose.load_curves(parent)
    if not curves:
        return ""
    param = str((run.get("sweep") or {}).get("param") or "dose")
    png = dose.write_figure(curves, param, parent)
    return _section(f"Dose and response: {param}", dose.section_html(curves, param, data_uri(png)))


def write_matrix_report(parent_dir: StrPath) -> Path:
    """Report every cell, write comparison.md/.html, and a page with the comparison table and
    each cell's key figures (embedded) linking to the cell's report; return that page's path."""
    parent = Path(parent_dir)
    run = run_files.read_run(parent) or {}
    cells = run_files.cell_dirs(parent)
    sections = [_cell_section(parent, cell) for cell in cells]
    rows = compare([parent])
    write_comparison(rows, parent)
    title = f"{run.get('scenario', parent.name)}: matrix run {run.get('run_id', parent.name)}"
    title += f" ({run.get('status', 'unknown')})"
    body = "\n".join(
        (
            f"<h1>{esc(title)}</h1>",
            status_banner(run),
            _dose_section(parent, run),
            _section("Comparison of the cells", to_html(rows)),
            *sections,
        )
    )
    page = run_files.report_path(parent)
    run_files.write_atomically(page, html_page(title, body, _REPORT_CSS))
    return page
