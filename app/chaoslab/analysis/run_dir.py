"""A run directory: the name of every file in it, written whole or not at all, and read back as typed data.

    output = write_check(summary, "experiments/results/<run-id>", {"run_id": ..., "cell": ...})
    parts = read_parts("experiments/results/<run-id>")       # what the checker wrote (None for a missing file)
    values = figures("experiments/results/<run-id>")         # the run's figures, for any run directory

Every module that reads or writes a run directory names its files through here. A run directory holds:

``run.json``
    The runner's record: status, phases, planned fault windows, drain, versions, settings, clock corrections.
``scenario.yml``
    The scenario as run.
``ledgers/``
    The task ledgers (``*.jsonl``), each node's event ledger (``<node>.events.jsonl``) and each worker's effective
    settings (``<node>.settings.json``).
``faults/``
    What each fault's nodes reported when it took effect.
``snapshot.json``
    The broker and the result backend at collection (:mod:`chaoslab.broker_state`).
``metrics.json``
    The run's Prometheus series (:mod:`chaoslab.experiment.series`).
``summary.json``, ``tasks.csv``, ``executions.csv``
    The checker's output (:func:`write_check`): its summary with the run's figures (``figures``, see
    :mod:`chaoslab.analysis.figures`), one row per published task, and one row per execution (a start record
    paired with its end record, see :class:`chaoslab.analysis.checker.Execution`).
``verdict.json``
    Whether the hypothesis held, each condition, the run's figures and notes.
``report.html``, ``figures/``
    The report and its images.

A matrix run's parent directory holds ``run.json`` listing its ``cells``, one run directory per cell under
``cells/<label>/``, and the comparison of the cells (``comparison.md``, ``.html``, ``.csv``, ``.json``).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeVar

from chaoslab import broker_state
from chaoslab.analysis import figures as run_figures
from chaoslab.analysis.checker import (
    CSV_HEADER,
    EXECUTION_HEADER,
    WORKFLOW_HEADER,
    Execution,
    Summary,
    TaskResult,
    WorkflowResult,
)

RUN_FILE: Final = "run.json"
SCENARIO_FILE: Final = "scenario.yml"
LEDGERS_DIR: Final = "ledgers"
PUBLISH_LEDGER: Final = "publish.jsonl"
EVENTS_SUFFIX: Final = ".events.jsonl"
SETTINGS_SUFFIX: Final = ".settings.json"
FAULTS_DIR: Final = "faults"
SNAPSHOT_FILE: Final = "snapshot.json"
METRICS_FILE: Final = "metrics.json"
SUMMARY_FILE: Final = "summary.json"
TASKS_FILE: Final = "tasks.csv"
EXECUTIONS_FILE: Final = "executions.csv"
WORKFLOWS_FILE: Final = "workflows.csv"
VERDICT_FILE: Final = "verdict.json"
REPORT_FILE: Final = "report.html"
FIGURES_DIR: Final = "figures"
CELLS_DIR: Final = "cells"
COMPARISON_MARKDOWN: Final = "comparison.md"
COMPARISON_HTML: Final = "comparison.html"
COMPARISON_CSV: Final = "comparison.csv"
COMPARISON_JSON: Final = "comparison.json"

StrPath = str | os.PathLike[str]
_Row = TypeVar("_Row", TaskResult, Execution, WorkflowResult)


# ---------------------------------------------------------------------------------------
# Writing and reading whole files


def write_atomically(path: Path, text: str) -> None:
    """Write *path* through a temporary file renamed over it (a reader never sees half of it)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def write_json(path: Path, data: Any, indent: int | None = 2) -> Path:
    """*data* as JSON in *path*, atomically."""
    separators = None if indent is not None else (",", ":")
    write_atomically(path, json.dumps(data, indent=indent, separators=separators) + "\n")
    return path


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in *path*, or None when the file does not exist."""
    try:
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


def read_run(run_dir: StrPath) -> dict[str, Any] | None:
    """run.json, None when the directory has none (not a run directory)."""
    return read_json(Path(run_dir) / RUN_FILE)


def write_run(run_dir: StrPath, data: Mapping[str, Any]) -> Path:
    return write_json(Path(run_dir) / RUN_FILE, data)


def has_run(run_dir: StrPath) -> bool:
    return (Path(run_dir) / RUN_FILE).is_file()


def read_verdict(run_dir: StrPath) -> dict[str, Any] | None:
    return read_json(Path(run_dir) / VERDICT_FILE)


def write_verdict(run_dir: StrPath, data: Mapping[str, Any]) -> Path:
    return write_json(Path(run_dir) / VERDICT_FILE, data)


def write_scenario(run_dir: StrPath, text: str) -> Path:
    path = Path(run_dir) / SCENARIO_FILE
    write_atomically(path, text)
    return path


def report_path(run_dir: StrPath) -> Path:
    return Path(run_dir) / REPORT_FILE


# ---------------------------------------------------------------------------------------
# Matrix runs


def is_matrix(run_dir: StrPath) -> bool:
    """True when *run_dir* is the parent directory of a matrix run."""
    run = read_run(run_dir)
    return run is not None and "cells" in run


def cell_dirs(parent_dir: StrPath) -> list[Path]:
    """The cell directories of a matrix run, in the order its run.json lists them."""
    parent = Path(parent_dir)
    run = read_run(parent) or {}
    return [parent / CELLS_DIR / str(label) for label in run.get("cells", [])]


def expand_runs(run_dirs: Iterable[StrPath]) -> list[Path]:
    """Single runs as given; a matrix parent replaced by its cells."""
    expanded: list[Path] = []
    for run_dir in run_dirs:
        expanded.extend(cell_dirs(run_dir) if is_matrix(run_dir) else [Path(run_dir)])
    return expanded


# ---------------------------------------------------------------------------------------
# Ledgers, snapshot, metrics


def ledger_paths(run_dir: StrPath) -> list[Path]:
    """Every ledger of the run: the task ledgers and the nodes' event ledgers."""
    return sorted((Path(run_dir) / LEDGERS_DIR).glob("*.jsonl"))


def publish_ledger(run_dir: StrPath) -> Path:
    """The load generator's publish ledger: without it a run has no record of what it asked for."""
    return Path(run_dir) / LEDGERS_DIR / PUBLISH_LEDGER


def event_paths(run_dir: StrPath) -> list[Path]:
    return sorted((Path(run_dir) / LEDGERS_DIR).glob(f"*{EVENTS_SUFFIX}"))


def worker_settings(run_dir: StrPath) -> dict[str, Any]:
    """Each worker's effective settings as it reported them (``<node>.settings.json``); unreadable ones left out."""
    found = {}
    for path in sorted((Path(run_dir) / LEDGERS_DIR).glob(f"*{SETTINGS_SUFFIX}")):
        try:
            found[path.name.removesuffix(SETTINGS_SUFFIX)] = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
    return found


def write_snapshot(state: broker_state.BrokerState, run_dir: StrPath) -> Path:
    """``snapshot.json``, written whole or not at all (compact: it may hold a million ids)."""
    return write_json(Path(run_dir) / SNAPSHOT_FILE, state.to_dict(), indent=None)


def read_snapshot(run_dir: StrPath) -> broker_state.BrokerState | None:
    """The snapshot of a run directory, None when it has none (a run made before snapshots, or aborted early)."""
    data = read_json(Path(run_dir) / SNAPSHOT_FILE)
    return None if data is None else broker_state.from_dict(data)


def write_metrics(data: Mapping[str, Any], run_dir: StrPath) -> Path:
    return write_json(Path(run_dir) / METRICS_FILE, data, indent=None)


def read_metrics(run_dir: StrPath) -> dict[str, Any]:
    """The Prometheus series kept in a run directory (empty when there are none or they cannot be read)."""
    try:
        data = json.loads((Path(run_dir) / METRICS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data.get("series", {}) if isinstance(data, dict) else {}


# ---------------------------------------------------------------------------------------
# The checker's output


@dataclass(frozen=True, slots=True)
class Check:
    """What the checker found for a run, as its files hold it."""

    summary: dict[str, Any]
    """summary.json's data (with ``figures``)."""
    tasks: Sequence[TaskResult]
    executions: Sequence[Execution]
    source: str = SUMMARY_FILE
    """Where it was read from: ``summary.json``, or how it was checked in memory."""

    @property
    def figures(self) -> run_figures.Values:
        """The run's figures (:data:`chaoslab.analysis.figures.VOCABULARY`)."""
        return dict(self.summary["figures"])


def checked(summary: dict[str, Any], tasks: Sequence[TaskResult], executions: Sequence[Execution],
            source: str = SUMMARY_FILE) -> Check:
    """The checker's output from its parts; a summary written before it held the run's figures gets them here."""
    if not isinstance(summary.get("figures"), dict):
        summary = {**summary, "figures": run_figures.measure(summary, run_figures.success_ratio(tasks))}
    return Check(summary, tasks, executions, source)


def check_of(summary: Summary, source: str = SUMMARY_FILE) -> Check:
    """The checker's output for *summary*: its data with the run's figures, its tasks and executions."""
    return checked(summary.to_dict(), summary.tasks, summary.executions, source)


def _write_rows(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]],
                labels: Mapping[str, str] | None) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    prefix = tuple((labels or {}).values())
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow((*(labels or {}), *header))
        writer.writerows((*prefix, *row) for row in rows)
    partial.replace(path)


def write_check(summary: Summary, run_dir: StrPath, labels: Mapping[str, str] | None = None) -> Check:
    """Write ``summary.json`` (with the run's figures), ``tasks.csv``, ``executions.csv`` and, for a load with
    canvases, ``workflows.csv`` (one verdict per canvas) into *run_dir*.

    *labels* (e.g. ``{"run_id": ..., "cell": ...}``) become leading columns of every row of the CSV files, so that
    the tasks and executions of many runs can be read as one table.
    """
    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    output = check_of(summary)
    write_json(out / SUMMARY_FILE, output.summary)
    _write_rows(out / TASKS_FILE, CSV_HEADER, output.tasks, labels)
    _write_rows(out / EXECUTIONS_FILE, EXECUTION_HEADER, output.executions, labels)
    if summary.workflow_results:
        _write_rows(out / WORKFLOWS_FILE, WORKFLOW_HEADER, summary.workflow_results, labels)
    return output


def _parser(annotation: Any) -> Callable[[str], Any]:
    """How a CSV cell of a field annotated *annotation* is read back (csv writes None as an empty cell)."""
    text = str(getattr(annotation, "__forward_arg__", annotation))  # NamedTuple keeps postponed ones as ForwardRef
    base, optional = text.removesuffix(" | None"), text.endswith(" | None")
    parse: Callable[[str], Any] = {"str": str, "int": int, "float": float, "bool": lambda text: text == "True"}[base]
    if optional:
        return lambda text: None if text == "" else parse(text)
    return parse


def _read_rows(path: Path, row_type: type[_Row], header: Sequence[str]) -> list[_Row] | None:
    """The rows of one of the checker's CSV files as *row_type*, by column name (leading labels skipped); None when
    the file does not exist."""
    annotations = row_type.__annotations__
    try:
        handle = path.open(newline="", encoding="utf-8")
    except FileNotFoundError:
        return None
    with handle:
        reader: Iterator[list[str]] = csv.reader(handle)
        names = next(reader, None)
        if names is None:
            return []
        # a column a later version added (it has a default) may be missing from an older file: its default then
        defaults = row_type._field_defaults
        missing = [name for name in header if name not in names]
        if any(field not in defaults for field, name in zip(row_type._fields, header, strict=True) if name in missing):
            raise ValueError(f"{path}: the header lacks a column of {', '.join(header)}")
        fields = [(names.index(name) if name in names else None, _parser(annotations[field]), defaults.get(field))
                  for field, name in zip(row_type._fields, header, strict=True)]
        make = row_type._make
        return [make([default if column is None else parse(row[column]) for column, parse, default in fields])
                for row in reader]


def read_tasks(run_dir: StrPath) -> list[TaskResult] | None:
    """tasks.csv, one TaskResult per published task; None without the file."""
    return _read_rows(Path(run_dir) / TASKS_FILE, TaskResult, CSV_HEADER)


def read_workflows(run_dir: StrPath) -> list[WorkflowResult] | None:
    """workflows.csv, one WorkflowResult per canvas; None without the file (a load without canvases)."""
    return _read_rows(Path(run_dir) / WORKFLOWS_FILE, WorkflowResult, WORKFLOW_HEADER)


def read_executions(run_dir: StrPath) -> list[Execution] | None:
    """executions.csv, one Execution per execution; None without the file (a run made before it was written)."""
    return _read_rows(Path(run_dir) / EXECUTIONS_FILE, Execution, EXECUTION_HEADER)


def read_summary(run_dir: StrPath) -> dict[str, Any] | None:
    return read_json(Path(run_dir) / SUMMARY_FILE)


class Parts(NamedTuple):
    """The checker's files as they are: None for each one missing."""

    summary: dict[str, Any] | None
    tasks: list[TaskResult] | None
    executions: list[Execution] | None


def read_parts(run_dir: StrPath) -> Parts:
    path = Path(run_dir)
    summary = read_summary(path)
    if summary is None:
        return Parts(None, None, None)
    return Parts(summary, read_tasks(path), read_executions(path))


def figures(run_dir: StrPath, summary: Mapping[str, Any] | None = None) -> run_figures.Values:
    """The run's figures: summary.json's (*summary*, when already read); for a run made before summary.json held
    them, those verdict.json holds, and :func:`~chaoslab.analysis.figures.measure` over its summary for the rest
    (the success ratio from tasks.csv). Empty without summary.json and verdict.json."""
    path = Path(run_dir)
    summary = summary if summary is not None else read_summary(path)
    if summary is not None and isinstance(summary.get("figures"), dict):
        return dict(summary["figures"])
    verdict = read_verdict(path) or {}
    stored = dict(verdict["figures"]) if isinstance(verdict.get("figures"), dict) else {}
    if summary is None:
        return stored
    if "success_ratio" in stored:
        ratio = stored["success_ratio"]
    else:
        tasks = read_tasks(path)
        ratio = None if tasks is None else run_figures.success_ratio(tasks)
    return {**run_figures.measure(summary, ratio), **stored}
