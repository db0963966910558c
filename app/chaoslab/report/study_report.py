"""The report of a study: every scenario's configurations, each repeated, in one page.

    study = load_study("experiments/results/<study-id>")
    write_study_report(study.path)                          # study.md, study.html, figures/<scenario>.png
    publish(study.path, "experiments/reference/<name>")     # the small files, and the report over them

    python -m chaoslab.report.study_report STUDY_DIR [--out DIR] [--publish REFERENCE_DIR]

A study directory holds the study runner's ``study.json`` and one ordinary run directory
per repeat, at ``runs/<scenario>/<cell-dir>/r<k>/`` (the path each entry of
``study.json`` ``runs`` gives, relative to the study directory). Every (scenario, cell)
pair is one :class:`Group`, in the order of its first run in ``study.json``.

Figures of a repeat are the run's figures as the checker wrote them (``summary.json``
``figures``, read by :func:`chaoslab.analysis.run_dir.figures`; what each means:
:mod:`chaoslab.analysis.figures`); a run made before summary.json held them has them in
``verdict.json``, or, without those, measured the same way from its ``summary.json`` (the
success ratio then needs ``tasks.csv``, which a published study does not keep). A missing
file leaves its figures unknown (``—``), so an aborted or incomplete study still renders
with what exists.

Per group, each figure is shown as the mean with the range over the repeats,
``mean (min\u2013max)``, or the single value when the repeats agree exactly. The repeats of a
group *agree* (the study's repeatability check) when their throughput and success ratio
are each within :data:`AGREEMENT_TOLERANCE` of one another (``max - min <= 0.10 * min``)
and they all agree on whether tasks were lost.

The task classes are the checker's (:data:`COUNT_FIGURES`). A study made before the checker
reconciled each task with the broker and the result backend holds the first edition's
classes (:data:`FIRST_EDITION_COUNTS`: its ``lost`` also counted tasks still queued, run
after the run or reported failed by Celery); it is shown in those, with a note saying so.

Besides ``study.md`` and ``study.html``, ``comparison.csv`` and ``comparison.json`` hold the same
comparison for a notebook: one row per configuration, each figure's mean, min and max,
whether every repeat's hypothesis held and whether the repeats agree.

The output is deterministic: the same study directory gives byte-identical ``study.md``,
``study.html`` and PNG files (no generation time, no software version in the PNGs).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from chaoslab.analysis import run_dir as run_files
from chaoslab.analysis.figures import EFFECT_FIGURES, phase_figure, unit_of
from chaoslab.analysis.stats import Interval, difference, interval
from chaoslab.experiment.scenario import Condition, ScenarioError, condition
from chaoslab.node.tasks import KINDS as TASK_KINDS
from chaoslab.report import study_parts
from chaoslab.report.compare import (
    MISSING,
    StrPath,
    esc,
    fmt_count,
    fmt_rate,
    fmt_ratio,
    fmt_seconds,
    html_page,
    html_table,
)
from chaoslab.report.sweep_reference import SWEEPS_DIR

STUDY_FILE: Final = "study.json"
RUNS_DIR: Final = "runs"
"""Where a study keeps its run directories: ``runs/<scenario>/<cell-dir>/r<k>`` (and ``null``)."""
NULL_CONTROL_DIR: Final = "null"
"""A cell's null control run: ``runs/<scenario>/<cell-dir>/null``."""
MARKDOWN_FILE: Final = "study.md"
HTML_FILE: Final = "study.html"
CSV_FILE: Final = run_files.COMPARISON_CSV
JSON_FILE: Final = run_files.COMPARISON_JSON
"""The comparison as data (``study.json`` is the study runner's own record), named as a matrix run's are."""
PUBLISHED_RUN_FILES: Final = (run_files.RUN_FILE, run_files.SCENARIO_FILE, run_files.SUMMARY_FILE,
                              run_files.VERDICT_FILE)
"""The files of each run that :func:`publish` copies (the small ones: no ledgers, tasks.csv, executions.csv,
metrics, report)."""
AGREEMENT_TOLERANCE: Final = 0.10
"""Repeats agree on a figure when the half-width of its 95 % interval is at most this share of its mean ..."""
AGREEMENT_FLOOR: Final = {"count": 0.0, "ratio": 0.02, "factor": 0.1, "duration": 0.1, "rate": 0.1}
"""... or at most this, by the figure's unit (a figure near zero, e.g. a throughput drop of 1 %, has no useful
relative width)."""
MIN_REPEATS_TO_AGREE: Final = 3
"""Repeats a continuous figure needs before its interval can say the repeats agree (with two, Student's t makes the
interval six times the gap between them)."""
AGREEMENT_CLASSES: Final = ("lost", "pending", "duplicated", "failed", "failed_by_worker", "publish_failed")
"""Classes whose repeats must agree exactly on whether any task fell in them."""
COUNT_FIGURES: Final = ("lost", "pending", "duplicated", "failed", "failed_by_worker", "publish_failed")
FIRST_EDITION_COUNTS: Final = ("lost", "duplicated", "failed", "stuck", "publish_failed")
FIRST_EDITION_NOTE: Final = (
    "These runs were judged by the first edition of the checker, before it reconciled each task with the broker "
    "and Celery's result backend: its 'lost' counted every task not finished by the run's end, including tasks "
    "still queued, tasks that ran after the run ended, and tasks Celery itself recorded as failed (WorkerLostError); "
    "'stuck' counted tasks killed while running. The second edition of the study replaces it.")
AGREEMENT_FIGURES: Final = ("throughput", "success_ratio")
SHORT_SETTING_NAMES: Final = {
    "task_acks_late": "acks_late",
    "task_reject_on_worker_lost": "reject_on_worker_lost",
    "worker_prefetch_multiplier": "prefetch",
}
DEFAULT_CELL_LABEL: Final = "default"
RANGE_DASH: Final = "\u2013"
"""Between min and max in ``mean (min\u2013max)``: an en dash."""
EXIT_PASSED: Final = 0
FIGURE_SIZE: Final = (12.0, 4.2)
FIGURE_DPI: Final = 100
PNG_METADATA: Final = {"Software": None}
"""No matplotlib version in the PNGs, so that they depend on the data alone."""

_BAR_COLOUR: Final = "#9ecae1"
_DOT_COLOUR: Final = "#08306b"
_CLASS_COLOURS: Final = {"lost": "#d62728", "pending": "#7f7f7f", "duplicated": "#ff7f0e", "failed": "#9467bd",
                          "failed_by_worker": "#e377c2"}
_FILE_NAME_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]")
_STUDY_CSS: Final = ".meta { color: #555; } ul.runs { font-size: 0.9em; } ul.runs li { margin: 0.1em 0; }"


# ---------------------------------------------------------------------------------------
# Model


@dataclass(frozen=True, slots=True)
class RepeatFigures:
    """One repeat of a configuration: one run directory."""

    repeat: int
    path: str
    """The run directory, relative to the study directory (POSIX separators)."""
    exit: int | None
    """The run's exit code: 0 pass, 1 hypothesis failed, 2 error or aborted, 130 interrupted."""
    passed: bool | None
    """verdict.json's ``passed``; None without a verdict."""
    status: str
    """run.json's status; ``missing`` without run.json."""
    delivery: str | None
    figures: dict[str, float | None]
    failed: tuple[str, ...] = ()
    """The figures of the hypothesis's conditions that did not hold (verdict.json)."""

    @property
    def name(self) -> str:
        return f"r{self.repeat}"


@dataclass(frozen=True, slots=True)
class Group:
    """One configuration (cell) of one scenario and its repeats."""

    scenario: str
    cell: str
    settings: dict[str, Any]
    repeats: tuple[RepeatFigures, ...]
    null_control: bool = False
    """The cell run with its faults removed: its hypothesis must not hold."""

    @property
    def label(self) -> str:
        label = config_label(self.cell)
        return f"{label}, no fault (null control)" if self.null_control else label


@dataclass(frozen=True, slots=True)
class ScenarioInfo:
    name: str
    file: str
    description: str
    fault: str | None
    target: str | None
    params: dict[str, Any]
    hypothesis: Any
    cell_hypotheses: dict[str, Any]
    """The whole hypothesis of each cell whose hypothesis differs from the scenario's (cell label -> figures)."""
    settings: dict[str, Any] | None = None
    """The Celery settings every configuration of the scenario shares (a configuration adds its own), and the Redis
    persistence it runs on; None in a study made before study.json recorded them."""
    redis: dict[str, Any] | None = None
    rabbitmq: dict[str, Any] | None = None
    faults: tuple[dict[str, Any], ...] = ()
    """Every fault of the scenario (playbook, target, params, at, duration) when there is more than the first."""
    published: dict[str, Any] | None = None
    """What another system published for the same experiment: ``{"source", "figures": {name: {baseline, fault}}}``
    (:mod:`chaoslab.experiment.published`)."""


@dataclass(frozen=True, slots=True)
class Study:
    path: Path
    study_id: str
    source: str
    repeat: int | None
    mode: str
    """How the study was run when not in full (a quick study's note); empty for a full study."""
    started: float | None
    ended: float | None
    status: str
    machine: dict[str, Any]
    versions: dict[str, Any]
    scenarios: tuple[ScenarioInfo, ...]
    """Those study.json lists, then any other scenario its runs name."""
    groups: tuple[Group, ...]
    parts: tuple[dict[str, Any], ...] = ()
    """The studies a reference was published from, when more than one (:mod:`chaoslab.report.study_parts`)."""

    def groups_of(self, scenario: str) -> list[Group]:
        return [group for group in self.groups if group.scenario == scenario]

    @property
    def first_edition(self) -> bool:
        """Whether the runs were judged by the first edition's classes (they know ``stuck``, not ``pending``)."""
        figures = [repeat.figures for group in self.groups for repeat in group.repeats]
        return any("stuck" in found for found in figures) and not any("pending" in found for found in figures)

    @property
    def counts(self) -> tuple[str, ...]:
        """The class counts the report shows."""
        return FIRST_EDITION_COUNTS if self.first_edition else COUNT_FIGURES


@dataclass(frozen=True, slots=True)
class Spread:
    """Mean, min and max of a figure over the repeats that know it."""

    mean: float | None
    low: float | None
    high: float | None
    unknown: int
    """Repeats where the figure is unknown."""


@dataclass(frozen=True, slots=True)
class Agreement:
    ok: bool | None
    """None: the classes agree, and too few repeats to tell for the other figures."""
    problems: list[str]
    repeats: int


# ---------------------------------------------------------------------------------------
# Loading


def config_label(cell: str) -> str:
    """``task_acks_late=true,worker_prefetch_multiplier=1`` -> ``acks_late=true, prefetch=1``; ``""`` -> ``default``."""
    if not cell:
        return DEFAULT_CELL_LABEL
    parts = []
    for part in cell.split(","):
        name, sep, value = part.partition("=")
        parts.append(f"{SHORT_SETTING_NAMES.get(name.strip(), name.strip())}{sep}{value}")
    return ", ".join(parts)


def _passed(verdict: Mapping[str, Any] | None) -> bool | None:
    if verdict is None or "passed" not in verdict:
        return None
    return bool(verdict["passed"])


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def load_repeat(study_dir: Path, entry: Mapping[str, Any]) -> RepeatFigures:
    """The figures of the run one ``study.json`` ``runs`` entry names (unknown where its files are missing)."""
    path = str(entry.get("path") or "")
    run_dir = study_dir / path if path else None
    run = run_files.read_run(run_dir) if run_dir else None
    summary = run_files.read_summary(run_dir) if run_dir else None
    verdict = run_files.read_verdict(run_dir) if run_dir else None
    figures = run_files.figures(run_dir, summary) if run_dir else {}
    failed = tuple(str(item.get("figure")) for item in (verdict or {}).get("conditions") or []
                   if isinstance(item, Mapping) and item.get("holds") is False)
    return RepeatFigures(
        repeat=int(entry.get("repeat") or 0),
        path=path,
        exit=_int_or_none(entry.get("exit")),
        passed=_passed(verdict),
        status=str(run.get("status") or "unknown") if run is not None else "missing",
        delivery=(summary or {}).get("delivery", {}).get("guarantee"),
        figures=figures,
        failed=failed,
    )


def _scenario_info(data: Mapping[str, Any]) -> ScenarioInfo:
    return ScenarioInfo(
        name=str(data.get("name") or ""),
        file=str(data.get("file") or ""),
        description=str(data.get("description") or ""),
        fault=data.get("fault"),
        target=data.get("target"),
        params=dict(data.get("params") or {}),
        hypothesis=data.get("hypothesis"),
        cell_hypotheses=dict(data.get("cell_hypotheses") or {}),
        settings=dict(data["settings"]) if isinstance(data.get("settings"), Mapping) else None,
        redis=dict(data["redis"]) if isinstance(data.get("redis"), Mapping) else None,
        rabbitmq=dict(data["rabbitmq"]) if isinstance(data.get("rabbitmq"), Mapping) else None,
        faults=tuple(dict(item) for item in data.get("faults") or [] if isinstance(item, Mapping)),
        published=dict(data["published"]) if isinstance(data.get("published"), Mapping) else None,
    )


def _groups(study_dir: Path, runs: Sequence[Mapping[str, Any]]) -> tuple[Group, ...]:
    order: list[tuple[str, str, bool]] = []
    repeats: dict[tuple[str, str, bool], list[RepeatFigures]] = {}
    settings: dict[tuple[str, str, bool], dict[str, Any]] = {}
    for entry in runs:
        key = (str(entry.get("scenario") or ""), str(entry.get("cell") or ""), bool(entry.get("null_control")))
        if key not in repeats:
            order.append(key)
            repeats[key] = []
            settings[key] = dict(entry.get("settings") or {})
        repeats[key].append(load_repeat(study_dir, entry))
    return tuple(Group(key[0], key[1], settings[key], tuple(repeats[key]), key[2]) for key in order)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def load_study(study_dir: StrPath) -> Study:
    """The study in *study_dir* (FileNotFoundError without study.json)."""
    path = Path(study_dir)
    data = run_files.read_json(path / STUDY_FILE)
    if data is None:
        raise FileNotFoundError(f"{path / STUDY_FILE} does not exist: not a study directory")
    groups = _groups(path, data.get("runs") or [])
    scenarios = [_scenario_info(item) for item in data.get("scenarios") or []]
    listed = {scenario.name for scenario in scenarios}
    for group in groups:
        if group.scenario not in listed:
            listed.add(group.scenario)
            scenarios.append(ScenarioInfo(group.scenario, "", "", None, None, {}, None, {}))
    return Study(
        path=path,
        study_id=str(data.get("study_id") or path.name),
        source=str(data.get("source") or ""),
        repeat=_int_or_none(data.get("repeat")),
        mode=str(data.get("mode") or ""),
        started=_float_or_none(data.get("started")),
        ended=_float_or_none(data.get("ended")),
        status=str(data.get("status") or "unknown"),
        machine=dict(data.get("machine") or {}),
        versions=dict(data.get("versions") or {}),
        scenarios=tuple(scenarios),
        groups=groups,
        parts=tuple(study_parts.parts_of(data)) if data.get("parts") else (),
    )


# ---------------------------------------------------------------------------------------
# Spread, agreement, verdict


def values_of(group: Group, figure: str) -> list[float | None]:
    """The figure in each repeat of *group*, in repeat order (None where unknown)."""
    return [_float_or_none(repeat.figures.get(figure)) for repeat in group.repeats]


def spread(values: Iterable[float | None]) -> Spread:
    given = list(values)
    known = [value for value in given if value is not None]
    if not known:
        return Spread(None, None, None, len(given))
    return Spread(sum(known) / len(known), min(known), max(known), len(given) - len(known))


def fmt_number(value: float | None) -> str:
    """A count (a mean of counts keeps one decimal: ``1.5``)."""
    if value is None:
        return MISSING
    return fmt_count(int(value)) if float(value).is_integer() else f"{value:,.1f}"


def fmt_factor(value: float | None) -> str:
    """A multiple: ``\u00d72.35``."""
    return MISSING if value is None else f"\u00d7{value:.2f}"


def fmt_spread(value: Spread | Interval, fmt: Callable[[float | None], str]) -> str:
    """``mean (low\u2013high)`` (an en dash), or the mean alone when there is no range: every repeat that knows it
    agrees exactly, or one repeat (no interval)."""
    if value.mean is None:
        return MISSING
    text = fmt(value.mean)
    if value.low is not None and value.high is not None and value.low != value.high:
        text += f" ({fmt(value.low)}{RANGE_DASH}{fmt(value.high)})"
    return f"{text} (+{value.unknown} unknown)" if value.unknown else text


FIGURE_FORMATS: Final[dict[str, Callable[[float | None], str]]] = {
    **dict.fromkeys((*COUNT_FIGURES, *FIRST_EDITION_COUNTS), fmt_number),
    "success_ratio": fmt_ratio,
    "p95_end_to_end": fmt_seconds,
    "throughput": fmt_rate,
    "throughput_drop": fmt_ratio,
    "recovery_time": fmt_seconds,
}
"""The key figures of a group and how each is formatted."""
UNIT_FORMATS: Final[dict[str, Callable[[float | None], str]]] = {
    "count": fmt_number, "ratio": fmt_ratio, "rate": fmt_rate, "duration": fmt_seconds, "factor": fmt_factor}


def figure_format(figure: str) -> Callable[[float | None], str]:
    """How *figure* is written: the key figures' own way, any other by its unit."""
    return FIGURE_FORMATS.get(figure) or UNIT_FORMATS[unit_of(figure, TASK_KINDS) or "count"]


def is_count(figure: str) -> bool:
    return (unit_of(figure, TASK_KINDS) or "count") == "count"


MAY_BE_NEGATIVE: Final = frozenset({"throughput_drop"})
"""Figures below zero by their meaning (a drop: the fault phase completed more); every other figure is not."""


def figure_summary(group: Group, figure: str) -> Spread | Interval:
    """A count's mean and range over the repeats; any other figure's mean and 95 % interval of the mean, the interval
    cut to what the figure can be (a ratio at most 1, and nothing but a drop below 0)."""
    values = values_of(group, figure)
    if is_count(figure):
        return spread(values)
    found = interval(values)
    if found.low is None or found.high is None:
        return found
    low = found.low if figure in MAY_BE_NEGATIVE else max(found.low, 0.0)
    high = min(found.high, 1.0) if unit_of(figure, TASK_KINDS) == "ratio" else found.high
    return replace(found, low=low, high=high)


def figure_text(group: Group, figure: str) -> str:
    return fmt_spread(figure_summary(group, figure), figure_format(figure))


def delivery_text(group: Group) -> str:
    """The delivery guarantee, or every distinct one (in repeat order) joined by `` / ``."""
    seen = list(dict.fromkeys(repeat.delivery or MISSING for repeat in group.repeats))
    return " / ".join(seen) if seen else MISSING


HELD: Final = "held"
NOT_HELD: Final = "did not hold"
NULL_FAILED: Final = "did not hold, as it must"
NULL_HELD: Final = "held without the fault: the hypothesis cannot fail"
NULL_EFFECT_ONLY: Final = "failed only on the fault's effect: name a figure the fault must move"


def group_held(group: Group) -> bool | None:
    """True when every repeat's hypothesis held, False when one did not, None otherwise (no verdict)."""
    passed = [repeat.passed for repeat in group.repeats]
    if any(value is False for value in passed):
        return False
    return True if passed and all(passed) else None


def null_control_failed(group: Group) -> bool | None:
    """Whether a null control's hypothesis failed as it must: in every repeat, on a figure other than the fault's
    effect (a hypothesis that fails without the fault only because no fault acted says nothing of the tasks).
    None without a verdict."""
    if any(repeat.passed is None for repeat in group.repeats) or not group.repeats:
        return None
    return all(repeat.passed is False and set(repeat.failed) - EFFECT_FIGURES for repeat in group.repeats)


def group_verdict(group: Group) -> str:
    """``held`` when every repeat's hypothesis held, ``did not hold`` when one did not, ``—`` otherwise; a null
    control's says whether it failed as it must."""
    if group.null_control:
        failed = null_control_failed(group)
        if failed is None:
            return MISSING
        if failed:
            return NULL_FAILED
        return NULL_HELD if any(repeat.passed for repeat in group.repeats) else NULL_EFFECT_ONLY
    held = group_held(group)
    return MISSING if held is None else (HELD if held else NOT_HELD)


def _names(repeats: Iterable[RepeatFigures]) -> str:
    return ", ".join(repeat.name for repeat in repeats)


def _interval_problem(group: Group, figure: str, wanted: Condition | None = None) -> str | None:
    """Why the repeats' *figure* does not agree: unknown in some, or its 95 % interval wider than
    :data:`AGREEMENT_TOLERANCE` of the mean (and than the unit's :data:`AGREEMENT_FLOOR`) and, for a figure the
    hypothesis names (*wanted*, its condition), reaching beyond what the hypothesis asks (a wide interval that meets the
    condition from end to end still agrees on the verdict). None if it agrees or too few repeats know it to tell."""
    title = figure.replace("_", " ")
    pairs = list(zip(group.repeats, values_of(group, figure), strict=True))
    unknown = [repeat for repeat, value in pairs if value is None]
    if unknown:
        return f"{title} unknown in {_names(unknown)}"
    found = interval(value for _, value in pairs)
    half, mean = found.half_width, found.mean
    if half is None or mean is None or found.n < MIN_REPEATS_TO_AGREE:
        return None
    if half <= max(AGREEMENT_TOLERANCE * abs(mean), AGREEMENT_FLOOR[unit_of(figure, TASK_KINDS) or "count"]):
        return None
    if wanted is not None and wanted.holds(found.low) and wanted.holds(found.high):
        return None
    fmt = figure_format(figure)
    spread_text = f"\u00b1{half / abs(mean) * 100:.0f} %" if mean else f"\u00b1{fmt(half)}"
    beyond = f", beyond the hypothesis's {wanted.text}" if wanted is not None else ""
    return f"{title} {spread_text} (95 % interval {fmt(found.low)}{RANGE_DASH}{fmt(found.high)}{beyond})"


def _class_problem(group: Group, figure: str) -> str | None:
    """Why the repeats do not agree on whether tasks of class *figure* occurred (None if they do)."""
    pairs = list(zip(group.repeats, values_of(group, figure), strict=True))
    unknown = [repeat for repeat, value in pairs if value is None]
    if unknown:
        return None if len(unknown) == len(pairs) and figure != "lost" else f"{figure} unknown in {_names(unknown)}"
    some = [(repeat, value) for repeat, value in pairs if value]
    if not some or len(some) == len(pairs):
        return None
    clean = [repeat for repeat, value in pairs if not value]
    where = ", ".join(f"{repeat.name} ({fmt_number(value)})" for repeat, value in some)
    return f"{figure.replace('_', ' ')} in {where} but not in {_names(clean)}"


def agreement(group: Group, figures: Iterable[str] = (), conditions: Mapping[str, Condition] | None = None
              ) -> Agreement:
    """Whether the repeats of *group* agree, figure by figure: exactly on whether each class of tasks occurred, and
    on :data:`AGREEMENT_FIGURES` and *figures* (e.g. those the hypothesis names, with their *conditions*) within
    their intervals; a group with one repeat always does, and continuous figures need :data:`MIN_REPEATS_TO_AGREE`
    repeats to tell."""
    if len(group.repeats) < 2:
        return Agreement(True, [], len(group.repeats))
    continuous = [name for name in dict.fromkeys((*AGREEMENT_FIGURES, *figures)) if not is_count(name)]
    found = [*(_class_problem(group, name) for name in AGREEMENT_CLASSES),
             *(_interval_problem(group, name, (conditions or {}).get(name)) for name in continuous)]
    problems = [problem for problem in found if problem]
    if problems:
        return Agreement(False, problems, len(group.repeats))
    return Agreement(True if len(group.repeats) >= MIN_REPEATS_TO_AGREE else None, [], len(group.repeats))


def agreement_text(value: Agreement) -> str:
    if value.repeats < 2:
        return "one repeat"
    if value.ok is None:
        return f"classes only ({value.repeats} repeats: too few for intervals)"
    return f"yes ({value.repeats} repeats)" if value.ok else "no: " + "; ".join(value.problems)


def scenario_of(study: Study, name: str) -> ScenarioInfo | None:
    return next((scenario for scenario in study.scenarios if scenario.name == name), None)


def hypothesis_figures(study: Study, group: Group) -> list[str]:
    """The figures the group's hypothesis names (the scenario's, and its cell's own)."""
    scenario = scenario_of(study, group.scenario)
    if scenario is None:
        return []
    names = [*_figure_names(scenario.hypothesis), *_figure_names(scenario.cell_hypotheses.get(group.cell))]
    return list(dict.fromkeys(names))


def _figure_names(hypothesis: Any) -> list[str]:
    if isinstance(hypothesis, Mapping):
        return [str(name) for name in hypothesis]
    if isinstance(hypothesis, list):
        return [str(item.get("figure")) for item in hypothesis if isinstance(item, Mapping) and item.get("figure")]
    return []


def hypothesis_conditions(study: Study, group: Group) -> dict[str, Condition]:
    """The conditions of the group's hypothesis (the scenario's, its cell's over them), as study.json wrote them;
    one that does not parse is left out."""
    scenario = scenario_of(study, group.scenario)
    found: dict[str, Condition] = {}
    for written in (scenario.hypothesis, scenario.cell_hypotheses.get(group.cell)) if scenario else ():
        for figure, text in (written.items() if isinstance(written, Mapping) else ()):
            try:
                found[str(figure)] = condition(str(figure), text)
            except ScenarioError:
                continue
    return found


def group_agreement(study: Study, group: Group) -> Agreement:
    """:func:`agreement` over the classes, the key figures and the figures its hypothesis names."""
    return agreement(group, [name for name in hypothesis_figures(study, group) if unit_of(name, TASK_KINDS)],
                     hypothesis_conditions(study, group))


def study_passed(study: Study) -> bool:
    """Completed, with at least one run; every run held its hypothesis (exit 0) and every null control's failed as it
    must; no group's repeats disagree."""
    runs = [repeat for group in study.groups if not group.null_control for repeat in group.repeats]
    controls = [group for group in study.groups if group.null_control]
    return (
        study.status == "completed"
        and bool(runs)
        and all(repeat.exit == EXIT_PASSED for repeat in runs)
        and all(null_control_failed(group) for group in controls)
        and all(group_agreement(study, group).ok is not False for group in study.groups if not group.null_control)
    )


# ---------------------------------------------------------------------------------------
# Tables (shared by Markdown and HTML)


def fmt_utc(timestamp: float | None) -> str:
    if timestamp is None:
        return MISSING
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fmt_duration(seconds: float | None) -> str:
    """``1 h 02 min 05 s``, ``3 min 20 s``, ``42 s``."""
    if seconds is None or seconds < 0:
        return MISSING
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min {secs:02d} s"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _value_text(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def header_facts(study: Study) -> list[tuple[str, str]]:
    duration = (study_parts.total_seconds(study.parts) if study.parts
                else None if study.started is None or study.ended is None else study.ended - study.started)
    runs = sum(len(group.repeats) for group in study.groups)
    return [
        ("source", study.source or MISSING),
        ("repeats", _value_text(study.repeat)),
        *([("mode", study.mode)] if study.mode else []),
        ("status", study.status),
        ("result", "passed" if study_passed(study) else "not passed"),
        ("started", fmt_utc(study.started)),
        ("ended", fmt_utc(study.ended)),
        ("duration", fmt_duration(duration)),
        ("runs", str(runs)),
    ]


PART_HEADERS: Final = ("source", "scenarios", "repeats", "started", "duration", "status", "project commit",
                        "machine")
PARTS_INTRO: Final = ("The study was run in parts, each published into this reference when it ended (the duration "
                      "above is theirs added up); each part ran on the machine and with the versions named here.")


def part_rows(study: Study) -> list[list[str]]:
    rows = []
    for part in study.parts:
        versions, machine = part.get("versions") or {}, part.get("machine") or {}
        host = (f"{machine.get('hostname', MISSING)}: {machine.get('cpus', MISSING)} CPUs, "
                f"{machine.get('memory_gib', MISSING)} GiB, kernel {machine.get('kernel', MISSING)}")
        rows.append([str(part.get("source") or MISSING), ", ".join(part.get("scenarios") or []),
                     _value_text(part.get("repeat")), fmt_utc(_float_or_none(part.get("started"))),
                     fmt_duration(study_parts.total_seconds([part])), str(part.get("status") or MISSING),
                     str(versions.get("project_commit") or MISSING), host])
    return rows


def _mapping_rows(values: Mapping[str, Any]) -> list[list[str]]:
    return [[str(name), _value_text(value)] for name, value in values.items()]


FIGURES_LEGEND: Final = (
    "Counts of tasks: the mean over the repeats (min\u2013max). Every other figure: the mean and its 95 % interval "
    "(Student's t; none from one repeat). A null control is the configuration run with its faults removed: its "
    "hypothesis must not hold, on a figure other than the fault's effect.")
CONTINUOUS_FIGURES: Final = ("success_ratio", "p95_end_to_end", "throughput", "throughput_drop", "recovery_time")
OVERVIEW_CONTINUOUS: Final = ("success_ratio", "p95_end_to_end", "throughput_drop", "recovery_time")


def _header(figure: str) -> str:
    return figure.replace("_", " ")


def overview_figures(study: Study) -> tuple[str, ...]:
    return (*(name for name in study.counts if name != "publish_failed"), *OVERVIEW_CONTINUOUS)


def overview_headers(study: Study) -> tuple[str, ...]:
    return ("scenario", "configuration", *map(_header, overview_figures(study)), "delivery", "verdict",
            "repeats agree")


def group_figures(study: Study) -> tuple[str, ...]:
    return (*study.counts, *CONTINUOUS_FIGURES)


def group_headers(study: Study) -> tuple[str, ...]:
    return ("configuration", "repeats", *map(_header, group_figures(study)), "delivery", "verdict", "repeats agree")


def overview_rows(study: Study) -> list[list[str]]:
    return [
        [
            group.scenario,
            group.label,
            *(figure_text(group, figure) for figure in overview_figures(study)),
            delivery_text(group),
            group_verdict(group),
            agreement_text(group_agreement(study, group)),
        ]
        for group in study.groups
    ]


def group_rows(study: Study, groups: Iterable[Group]) -> list[list[str]]:
    return [
        [
            group.label,
            str(len(group.repeats)),
            *(figure_text(group, figure) for figure in group_figures(study)),
            delivery_text(group),
            group_verdict(group),
            agreement_text(group_agreement(study, group)),
        ]
        for group in groups
    ]


PUBLISHED_HEADERS: Final = ("scenario", "configuration", "figure", "published: baseline \u2192 fault",
                             "this lab: baseline \u2192 fault", "this lab's change", "same direction")
PUBLISHED_INTRO: Final = (
    "Figures another system published for the same experiment (its source is named per scenario below), beside this "
    "lab's: the mean and 95 % interval of the baseline phase and of the fault phase over the repeats. This lab's "
    "change is the 95 % interval of the fault phase's figure minus the baseline phase's, run by run: up or down when "
    "it excludes zero.")


def _direction(delta: float) -> str:
    return "up" if delta > 0 else "down" if delta < 0 else "unchanged"


def lab_change(group: Group, baseline: str, fault: str) -> str:
    """``up`` / ``down`` when the interval of the run-by-run change excludes zero, ``no clear change`` when it does
    not, the sign alone with one repeat."""
    changes = [None if b is None or f is None else f - b
               for b, f in zip(values_of(group, baseline), values_of(group, fault), strict=True)]
    found = interval(changes)
    if found.mean is None:
        return MISSING
    if found.low is None or found.high is None:
        return f"{_direction(found.mean)} (one repeat)"
    if found.low > 0 or found.high < 0:
        return _direction(found.mean)
    return "unchanged" if found.low == found.high == 0 else "no clear change"


def _same_direction(published: str, lab: str) -> str:
    if lab == MISSING:
        return MISSING
    lab = lab.removesuffix(" (one repeat)")
    return "yes" if published == lab or (published == "unchanged" and lab == "no clear change") else "no"


def published_rows(study: Study) -> list[list[str]]:
    """One row per published figure per configuration of each scenario that names published figures (those with
    the Celery settings the figures were published for, where the scenario names them)."""
    rows = []
    for scenario in study.scenarios:
        figures = (scenario.published or {}).get("figures") or {}
        settings = (scenario.published or {}).get("settings") or {}
        for group in (group for group in study.groups_of(scenario.name) if not group.null_control
                      and all(group.settings.get(name) == value for name, value in settings.items())):
            for name, given in figures.items():
                baseline, fault = phase_figure(str(name), "baseline"), phase_figure(str(name), "fault")
                fmt = figure_format(baseline)
                theirs = _direction(float(given["fault"]) - float(given["baseline"]))
                lab = lab_change(group, baseline, fault)
                rows.append([scenario.name, group.label, str(name),
                             f"{fmt(float(given['baseline']))} \u2192 {fmt(float(given['fault']))} ({theirs})",
                             f"{figure_text(group, baseline)} \u2192 {figure_text(group, fault)}", lab,
                             _same_direction(theirs, lab)])
    return rows


def published_sources(study: Study) -> list[tuple[str, str]]:
    return [(scenario.name, str(scenario.published.get("source") or MISSING)) for scenario in study.scenarios
            if scenario.published]


DIFFERENCE_HEADERS: Final = ("figure", "from", "to", "difference (95 % interval)", "p")


def difference_figures(study: Study, groups: Sequence[Group]) -> list[str]:
    """The figures compared between a scenario's configurations: the classes, the key figures and every figure a
    hypothesis names."""
    named = [name for group in groups for name in hypothesis_figures(study, group) if unit_of(name, TASK_KINDS)]
    return list(dict.fromkeys((*study.counts, *CONTINUOUS_FIGURES, *named)))


def _signed(fmt: Callable[[float | None], str], value: float | None) -> str:
    text = fmt(value)
    return f"+{text}" if value is not None and value > 0 else text


def difference_rows(study: Study, scenario: str) -> tuple[list[list[str]], int]:
    """The significant differences between the scenario's configurations (every pair, every figure of
    :func:`difference_figures`; Welch's t-test at 5 %), and how many comparisons could be made."""
    groups = [group for group in study.groups_of(scenario) if not group.null_control]
    rows, made = [], 0
    for index, first in enumerate(groups):
        for second in groups[index + 1:]:
            for figure in difference_figures(study, groups):
                found = difference(values_of(first, figure), values_of(second, figure))
                if found.significant is None:
                    continue
                made += 1
                if found.significant:
                    fmt = figure_format(figure)
                    rows.append([_header(figure), first.label, second.label,
                                 f"{_signed(fmt, found.delta)} ({_signed(fmt, found.low)}{RANGE_DASH}"
                                 f"{_signed(fmt, found.high)})", f"{found.p:.3g}"])
    return rows, made


def differences_text(rows: Sequence[Sequence[str]], made: int) -> str:
    """The sentence before (or instead of) the table of differences."""
    if not made:
        return "Differences between configurations: none can be told (one configuration, or one repeat each)."
    if not rows:
        return (f"Differences between configurations: none of {made} comparisons is significant (Welch's t-test, "
                "5 %).")
    return (f"Differences between configurations, significant at 5 % (Welch's t-test; {len(rows)} of {made} "
            "comparisons; about one in twenty would be by chance if nothing differed):")


def _one_fault(playbook: Any, target: Any, params: Mapping[str, Any]) -> str:
    where = f" on {target}" if target else ""
    given = ", ".join(f"{name}={_value_text(value)}" for name, value in params.items())
    return f"{playbook}{where}" + (f" ({given})" if given else "")


def fault_text(scenario: ScenarioInfo) -> str:
    if not scenario.fault:
        return "none (baseline)"
    if len(scenario.faults) > 1:
        return "; ".join(
            _one_fault(item.get("playbook"), item.get("target"), dict(item.get("params") or {}))
            + f" from {fmt_seconds(float(item.get('at') or 0))}"
            + (f" for {fmt_seconds(float(item['duration']))}" if item.get("duration") is not None else "")
            for item in scenario.faults)
    return _one_fault(scenario.fault, scenario.target, scenario.params)


def hypothesis_lines(hypothesis: Any) -> list[str]:
    """``figure condition`` per condition of the scenario's hypothesis (a mapping or a list)."""
    if not hypothesis:
        return []
    if isinstance(hypothesis, Mapping):
        return [f"{figure} {_value_text(condition)}" for figure, condition in hypothesis.items()]
    if isinstance(hypothesis, list):
        return [
            f"{item.get('figure', '')} {item.get('condition', '')}".strip() if isinstance(item, Mapping) else str(item)
            for item in hypothesis
        ]
    return [str(hypothesis)]


def settings_facts(scenario: ScenarioInfo) -> list[tuple[str, str]]:
    """The settings the scenario's configurations share, as the study recorded them (none: Celery's defaults), and
    Redis's persistence and RabbitMQ's settings (none: the inventory's)."""
    if scenario.settings is None:
        return []
    shared = ", ".join(f"{name}={_value_text(value)}" for name, value in scenario.settings.items())
    facts = [("shared settings", shared or "Celery's defaults and the lab's")]
    for label, values in (("Redis", scenario.redis), ("RabbitMQ", scenario.rabbitmq)):
        if values:
            facts.append((label, ", ".join(f"{name}={_value_text(value)}" for name, value in values.items())))
    return facts


def hypothesis_facts(scenario: ScenarioInfo) -> list[tuple[str, str]]:
    """(name, text) of the scenario's hypothesis, then of each cell's own where a cell has one."""
    def text(hypothesis: Any, quote: str) -> str:
        lines = hypothesis_lines(hypothesis)
        return "; ".join(f"{quote}{line}{quote}" for line in lines) if lines else "none"

    facts = [("hypothesis", text(scenario.hypothesis, "`"))]
    facts += [(f"hypothesis with {config_label(cell)}", text(hypothesis, "`"))
              for cell, hypothesis in scenario.cell_hypotheses.items()]
    return facts


def repeat_text(repeat: RepeatFigures) -> str:
    """``exit 0, completed, pass`` for one repeat."""
    verdict = MISSING if repeat.passed is None else (HELD if repeat.passed else NOT_HELD)
    return f"exit {_value_text(repeat.exit)}, {repeat.status}, hypothesis {verdict}"


def figure_file(scenario: str) -> str:
    """The figure of *scenario*, relative to the report: ``figures/<scenario>.png``."""
    return f"{run_files.FIGURES_DIR}/{_FILE_NAME_UNSAFE.sub('_', scenario) or '_'}.png"


# ---------------------------------------------------------------------------------------
# Markdown


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def md_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    def line(cells: Iterable[str]) -> str:
        return "| " + " | ".join(_md_cell(cell) for cell in cells) + " |"

    return "\n".join([line(headers), line("---" for _ in headers), *(line(row) for row in rows)])


def _md_scenario(study: Study, scenario: ScenarioInfo) -> str:
    parts = [f"## {scenario.name}"]
    if scenario.description:
        parts.append(scenario.description.strip())
    facts = [f"- scenario file: `{scenario.file or MISSING}`", f"- fault: {fault_text(scenario)}"]
    facts += [f"- {name}: {text}" for name, text in settings_facts(scenario)]
    facts += [f"- {name}: {text}" for name, text in hypothesis_facts(scenario)]
    parts.append("\n".join(facts))
    groups = study.groups_of(scenario.name)
    if not groups:
        parts.append("No runs of this scenario (the study stopped before it).")
        return "\n\n".join(parts)
    parts.append(md_table(group_headers(study), group_rows(study, groups)))
    rows, made = difference_rows(study, scenario.name)
    parts.append(differences_text(rows, made))
    if rows:
        parts.append(md_table(DIFFERENCE_HEADERS, rows))
    runs = [
        f"- {group.label} {repeat.name}: `{repeat.path or MISSING}` ({repeat_text(repeat)})"
        for group in groups
        for repeat in group.repeats
    ]
    parts.append("Runs:\n\n" + "\n".join(runs))
    parts.append(f"![{scenario.name}: {FIGURE_TITLE}]({figure_file(scenario.name)})")
    return "\n\n".join(parts)


def _md_published(study: Study) -> list[str]:
    sources = "\n".join(f"- {name}: {source}" for name, source in published_sources(study))
    return ["## Published figures beside this lab's", PUBLISHED_INTRO, sources,
            md_table(PUBLISHED_HEADERS, published_rows(study))]


def to_markdown(study: Study) -> str:
    """The study report as GitHub-flavoured Markdown."""
    parts = [
        f"# Study {study.study_id}",
        "\n".join(f"- {name}: {text}" for name, text in header_facts(study)),
        *([f"> {FIRST_EDITION_NOTE}"] if study.first_edition else []),
        *(_md_published(study) if published_sources(study) else []),
        *(["## Parts", PARTS_INTRO, md_table(PART_HEADERS, part_rows(study))] if study.parts else []),
        "## Machine",
        md_table(("name", "value"), _mapping_rows(study.machine)) if study.machine else "None recorded.",
        "## Versions",
        md_table(("name", "value"), _mapping_rows(study.versions)) if study.versions else "None recorded.",
        "## Overview",
        FIGURES_LEGEND,
        md_table(overview_headers(study), overview_rows(study)) if study.groups else "No runs.",
        *(_md_scenario(study, scenario) for scenario in study.scenarios),
    ]
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------
# HTML

_VERDICT_CLASS: Final = {HELD: "pass", NOT_HELD: "fail"}


def _section(title: str, body: str, anchor: str | None = None) -> str:
    attr = f' id="{esc(anchor)}"' if anchor else ""
    return f"<section{attr}>\n<h2>{esc(title)}</h2>\n{body}\n</section>"


def _figure_cell_class(first_figure: int, figure_count: int) -> Callable[[int, str], str | None]:
    """Cell classes of a table whose figure columns start at *first_figure*; verdict and agreement coloured."""

    def cell_class(column: int, text: str) -> str | None:
        if text in _VERDICT_CLASS:
            return _VERDICT_CLASS[text]
        if text.startswith("no: "):
            return "fail"
        return "num" if first_figure <= column < first_figure + figure_count else None

    return cell_class


def _name_value_table(values: Mapping[str, Any]) -> str:
    return html_table(["name", "value"], _mapping_rows(values)) if values else "<p>None recorded.</p>"


def run_link(study: Study, repeat: RepeatFigures, out_dir: Path | None = None) -> str:
    """The run's path, linked to its report.html when that file exists (relative to *out_dir*)."""
    text = f"<code>{esc(repeat.path or MISSING)}</code>"
    if not repeat.path:
        return text
    report = run_files.report_path(study.path / repeat.path)
    if not report.is_file():
        return text
    base = study.path if out_dir is None else out_dir
    href = Path(os.path.relpath(report, base)).as_posix()
    return f'<a href="{esc(href)}">{text}</a>'


def _html_scenario(study: Study, scenario: ScenarioInfo, out_dir: Path | None) -> str:
    parts = []
    if scenario.description:
        parts.append(f"<p>{esc(scenario.description.strip())}</p>")
    facts = {
        "scenario file": scenario.file or MISSING,
        "fault": fault_text(scenario),
        **dict(settings_facts(scenario)),
        **{name: text.replace("`", "") for name, text in hypothesis_facts(scenario)},
    }
    parts.append(html_table(list(facts), [list(facts.values())]))
    groups = study.groups_of(scenario.name)
    if not groups:
        parts.append("<p>No runs of this scenario (the study stopped before it).</p>")
        return _section(f"Scenario {scenario.name}", "\n".join(parts), f"scenario-{scenario.name}")
    table = html_table(group_headers(study), group_rows(study, groups),
                       cell_class=_figure_cell_class(2, len(group_figures(study))), table_class="comparison")
    parts.append(f'<div class="scroll">\n{table}\n</div>')
    rows, made = difference_rows(study, scenario.name)
    parts.append(f"<p>{esc(differences_text(rows, made))}</p>")
    if rows:
        parts.append(html_table(DIFFERENCE_HEADERS, rows))
    runs = [
        f"<li>{esc(group.label)} {esc(repeat.name)}: {run_link(study, repeat, out_dir)}"
        f" ({esc(repeat_text(repeat))})</li>"
        for group in groups
        for repeat in group.repeats
    ]
    parts.append('<ul class="runs">\n' + "\n".join(runs) + "\n</ul>")
    title = f"{scenario.name}: {FIGURE_TITLE}"
    parts.append(
        f'<figure>\n<img alt="{esc(title)}" src="{esc(figure_file(scenario.name))}">\n'
        f"<figcaption>{esc(title)}; bars: mean over the repeats, dots: each repeat.</figcaption>\n</figure>"
    )
    return _section(f"Scenario {scenario.name}", "\n".join(parts), f"scenario-{scenario.name}")


def _html_published(study: Study) -> str:
    sources = "".join(f"<li>{esc(name)}: {esc(source)}</li>" for name, source in published_sources(study))
    table = html_table(PUBLISHED_HEADERS, published_rows(study),
                       cell_class=lambda column, text: {"yes": "pass", "no": "fail"}.get(text) if column == 6 else None)
    return _section("Published figures beside this lab's", f"<p>{esc(PUBLISHED_INTRO)}</p>\n<ul>{sources}</ul>\n"
                    f'<div class="scroll">\n{table}\n</div>')


def to_html(study: Study, out_dir: StrPath | None = None) -> str:
    """The study report as a complete HTML page; run links are relative to *out_dir* (default the study directory)."""
    base = None if out_dir is None else Path(out_dir)
    title = f"Study {study.study_id}"
    header = html_table([fact for fact, _ in header_facts(study)], [[text for _, text in header_facts(study)]])
    cell_class = _figure_cell_class(2, len(overview_figures(study)))
    overview = html_table(overview_headers(study), overview_rows(study), cell_class=cell_class,
                          table_class="comparison")
    note = f'<p class="banner">{esc(FIRST_EDITION_NOTE)}</p>' if study.first_edition else ""
    body = "\n".join(
        (
            f"<h1>{esc(title)}</h1>",
            header,
            note,
            *([_html_published(study)] if published_sources(study) else []),
            *([_section("Parts", f"<p>{esc(PARTS_INTRO)}</p>\n" + html_table(PART_HEADERS, part_rows(study)))]
              if study.parts else []),
            _section("Machine", _name_value_table(study.machine)),
            _section("Versions", _name_value_table(study.versions)),
            _section("Overview", f"<p>{esc(FIGURES_LEGEND)}</p>\n" + (f'<div class="scroll">\n{overview}\n</div>'
                                                                     if study.groups else "<p>No runs.</p>")),
            *(_html_scenario(study, scenario, base) for scenario in study.scenarios),
        )
    )
    return html_page(title, body, _STUDY_CSS)


# ---------------------------------------------------------------------------------------
# Figures


def _repeat_offsets(count: int, width: float) -> list[float]:
    """Fixed horizontal offsets of *count* dots within a bar of *width* (no random jitter)."""
    return [(index - (count - 1) / 2) * width / (count + 1) for index in range(count)]


def _wrapped(label: str) -> str:
    return label.replace(", ", "\n")


def _no_data(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} known", transform=ax.transAxes, ha="center", va="center", color="#888")


def _bars_with_dots(ax: Axes, x: float, values: Sequence[float | None], width: float, colour: str,
                    label: str | None) -> bool:
    """One bar (the mean of the known values) and one dot per known value; False when none is known."""
    known = [value for value in values if value is not None]
    if not known:
        return False
    ax.bar(x, sum(known) / len(known), width=width, color=colour, edgecolor="#555", lw=0.6, label=label, zorder=2)
    offsets = _repeat_offsets(len(values), width)
    points = [(x + offset, value) for offset, value in zip(offsets, values, strict=True) if value is not None]
    ax.scatter([p[0] for p in points], [p[1] for p in points], s=14, color=_DOT_COLOUR, zorder=3)
    return True


def _draw_success(ax: Axes, groups: Sequence[Group]) -> None:
    drawn = [_bars_with_dots(ax, index, values_of(group, "success_ratio"), 0.6, _BAR_COLOUR, None)
             for index, group in enumerate(groups)]
    if not any(drawn):
        _no_data(ax, "success ratio")
    ax.set_ylim(0, 1.05)
    ax.yaxis.set_major_formatter(lambda value, _pos: f"{value * 100:.0f} %")
    ax.set_title("Success ratio", fontsize=10)


FIGURE_TITLE: Final = "success ratio and the tasks not completed, by class, per configuration"


def _draw_classes(ax: Axes, groups: Sequence[Group], counts: Sequence[str]) -> None:
    colours = {figure: colour for figure, colour in _CLASS_COLOURS.items() if figure in counts}
    width = 0.8 / len(colours)
    drawn = False
    for offset, (figure, colour) in enumerate(colours.items()):
        for index, group in enumerate(groups):
            x = index + (offset - (len(colours) - 1) / 2) * width
            label = figure.replace("_", " ") if index == 0 else None
            drawn = _bars_with_dots(ax, x, values_of(group, figure), width, colour, label) or drawn
    if not drawn:
        _no_data(ax, "task counts")
    ax.set_ylim(0, max(ax.get_ylim()[1], 1.0) * 1.2)  # headroom for the legend
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(" / ".join(figure.replace("_", " ") for figure in colours).capitalize() + " tasks", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, frameon=False, loc="upper left", ncols=len(colours))


def render_scenario_figure(scenario: str, groups: Sequence[Group], path: Path,
                           counts: Sequence[str] = COUNT_FIGURES) -> Path:
    """The scenario's figure (:func:`draw_scenario_figure`) as a PNG."""
    draw_scenario_figure(scenario, groups, counts).savefig(path, format="png", metadata=PNG_METADATA)
    return path


def draw_scenario_figure(scenario: str, groups: Sequence[Group], counts: Sequence[str] = COUNT_FIGURES) -> Figure:
    """Two panels: success ratio and the tasks of each class but completed, per configuration (Agg, no pyplot)."""
    figure = Figure(figsize=FIGURE_SIZE, dpi=FIGURE_DPI)
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    _draw_success(left, groups)
    _draw_classes(right, groups, counts)
    for ax in (left, right):
        ax.set_xticks(range(len(groups)), labels=[_wrapped(group.label) for group in groups], fontsize=7)
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.grid(True, axis="y", color="#e5e5e5", lw=0.6)
        ax.set_axisbelow(True)
    figure.suptitle(f"{scenario}: per configuration (bar: mean, dots: repeats)", fontsize=11)
    figure.subplots_adjust(left=0.06, right=0.98, bottom=0.2, top=0.85, wspace=0.18)
    return figure


def write_figures(study: Study, out_dir: StrPath) -> dict[str, Path]:
    """One PNG per scenario that has runs, ``<out_dir>/figures/<scenario>.png``; by scenario name."""
    out = Path(out_dir)
    pngs: dict[str, Path] = {}
    for scenario in study.scenarios:
        groups = study.groups_of(scenario.name)
        if groups:
            path = out / figure_file(scenario.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            pngs[scenario.name] = render_scenario_figure(scenario.name, groups, path, study.counts)
    return pngs


# ---------------------------------------------------------------------------------------
# Entry points


def table_rows(study: Study) -> list[dict[str, Any]]:
    """One row per configuration: each figure's mean, low and high over the repeats (a count's min and max, any other
    figure's 95 % interval of the mean), the verdict and agreement."""
    rows = []
    for group in study.groups:
        row: dict[str, Any] = {"scenario": group.scenario, "cell": group.cell, "configuration": group.label,
                               "null_control": group.null_control, "repeats": len(group.repeats)}
        for figure in group_figures(study):
            found = figure_summary(group, figure)
            row.update({f"{figure}_mean": found.mean, f"{figure}_low": found.low, f"{figure}_high": found.high})
        agreed = group_agreement(study, group)
        row.update({"delivery": delivery_text(group), "held": group_held(group), "agree": agreed.ok,
                    "agreement_problems": "; ".join(agreed.problems)})
        rows.append(row)
    return rows


def to_csv(study: Study) -> str:
    rows = table_rows(study)
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({key: "" if value is None else value for key, value in row.items()} for row in rows)
    return out.getvalue()


def write_study_report(study_dir: StrPath, out_dir: StrPath | None = None) -> tuple[Path, Path]:
    """Write the figures, ``study.md``, ``study.html``, ``comparison.csv`` and ``comparison.json`` into *out_dir*
    (default the study directory); return the first two's paths."""
    study = load_study(study_dir)
    out = Path(out_dir) if out_dir is not None else study.path
    out.mkdir(parents=True, exist_ok=True)
    write_figures(study, out)
    markdown, page = out / MARKDOWN_FILE, out / HTML_FILE
    markdown.write_text(to_markdown(study), encoding="utf-8")
    page.write_text(to_html(study, None if out_dir is None else out), encoding="utf-8")
    (out / CSV_FILE).write_text(to_csv(study), encoding="utf-8")
    (out / JSON_FILE).write_text(json.dumps(table_rows(study), indent=2) + "\n", encoding="utf-8")
    return markdown, page


def _check_reference(study_dir: Path, reference: Path) -> None:
    """Refuse a reference directory whose contents are not a previous study (or that would hold the study)."""
    if reference.exists() and not reference.is_dir():
        raise ValueError(f"{reference} is not a directory")
    source, target = study_dir.resolve(), reference.resolve()
    if source == target or target in source.parents:
        raise ValueError(f"{reference} holds the study {study_dir}: publishing would delete it")
    if reference.is_dir() and any(reference.iterdir()) and not (reference / STUDY_FILE).is_file():
        raise ValueError(f"{reference} is not empty and holds no {STUDY_FILE}: refusing to replace its contents")


def _run_target(reference: Path, path: str) -> Path:
    target = reference / path
    if Path(path).is_absolute() or not target.resolve().is_relative_to(reference.resolve()):
        raise ValueError(f"run path {path!r} leaves the reference directory")
    return target


def publish(study_dir: StrPath, reference_dir: StrPath) -> Path:
    """Copy study.json and each run's small files into *reference_dir*, report there; returns *reference_dir*.

    The study is added to what the reference holds as a part of it (each part keeps its machine, versions and
    commit), its runs replacing those of its scenarios, and of every part from its source unless it ran only some
    of them (:func:`chaoslab.report.study_parts.merge`). The new reference is made beside the old one and takes its
    place at the end, with the old one's ``sweeps/`` (:mod:`chaoslab.report.sweep_reference` publishes there).
    Refuses (ValueError) a directory that is neither absent, empty, nor a previous reference (holds a study.json),
    and a study not run in full (a quick study's ``mode``); FileNotFoundError without study.json.
    """
    source, reference = Path(study_dir), Path(reference_dir)
    data = run_files.read_json(source / STUDY_FILE)
    if data is None:
        raise FileNotFoundError(f"{source / STUDY_FILE} does not exist: not a study directory")
    if data.get("mode"):
        raise ValueError(f"{source} was not run in full ({data['mode']}): it is not published")
    _check_reference(source, reference)
    previous = run_files.read_json(reference / STUDY_FILE) if reference.is_dir() else None
    merged = study_parts.merge(previous, data)
    kept = len(merged["runs"]) - len(data.get("runs") or [])
    staging, old = reference.with_name(f".{reference.name}.new"), reference.with_name(f".{reference.name}.old")
    for leftover in (staging, old):  # of a publish that was interrupted
        if leftover.is_dir():
            shutil.rmtree(leftover)
    staging.mkdir(parents=True)
    (staging / STUDY_FILE).write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")
    for index, run in enumerate(merged["runs"]):
        path = str(run.get("path") or "")
        if not path:
            continue
        target = _run_target(staging, path)
        run_dir = (reference if index < kept else source) / target.relative_to(staging)
        for name in PUBLISHED_RUN_FILES:
            if (run_dir / name).is_file():
                target.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(run_dir / name, target / name)
    write_study_report(staging)
    if reference.is_dir():
        sweeps = reference / SWEEPS_DIR  # published there by make study-sweeps, not by a study
        if sweeps.is_dir() and not sweeps.is_symlink():
            shutil.copytree(sweeps, staging / SWEEPS_DIR, symlinks=True)
        reference.rename(old)
    staging.rename(reference)
    if old.is_dir():
        shutil.rmtree(old)
    return reference


def main(argv: list[str] | None = None) -> int:
    """Write the study report (and publish it); exit 0 when the study passed, 1 when not, 2 on an error."""
    parser = argparse.ArgumentParser(prog="python -m chaoslab.report.study_report", description=__doc__.splitlines()[0])
    parser.add_argument("study_dir", metavar="STUDY_DIR", help="the study directory (holds study.json)")
    parser.add_argument("--out", metavar="DIR", help="write the report here (default: the study directory)")
    parser.add_argument("--publish", metavar="REFERENCE_DIR", help="also copy the study's small files and report here")
    args = parser.parse_args(argv)
    try:
        written = list(write_study_report(args.study_dir, args.out))
        if args.publish:
            reference = publish(args.study_dir, args.publish)
            written += [reference / MARKDOWN_FILE, reference / HTML_FILE]
        passed = study_passed(load_study(args.study_dir))
    except (FileNotFoundError, ValueError) as err:
        print(f"study report: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    print("study passed" if passed else "study did not pass", file=sys.stderr)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
