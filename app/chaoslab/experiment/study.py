"""A study: every scenario file of a directory, each matrix cell repeated k times, run one after another on the
lab into one directory, with one comparison report over all of it (:mod:`chaoslab.report.study_report`).

    experiments/results/<study-id>/study.json                       what ran, where, on which machine
    experiments/results/<study-id>/runs/<scenario>/<cell>/r<k>/     an ordinary run directory per repeat
    experiments/results/<study-id>/study.md, study.html, figures/   the comparison

Every scenario is checked before anything runs. The repeats of a cell run back to back, so the lab's settings
change once per cell; the lab's background load comes back once, at the end. Each run's report is drawn by a
process at the idle scheduling class while the next run goes on (:mod:`chaoslab.experiment.idle_reports`). A run
that fails its hypothesis or errors does not stop the study (its exit code is kept); Ctrl-C stops it, and what ran
so far is reported.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from chaoslab.analysis import run_dir
from chaoslab.analysis.figures import EFFECT_FIGURES
from chaoslab.experiment import published, runner
from chaoslab.experiment.ansible_runner import project_root
from chaoslab.experiment.idle_reports import IdleReports
from chaoslab.experiment.lab import LabControl
from chaoslab.experiment.scenario import Scenario, load_scenario
from chaoslab.node.tasks import KINDS as TASK_KINDS
from chaoslab.report import study_report

DEFAULT_REPEAT = 5
DEFAULT_CELL = "default"
# Seconds a run takes beyond its phases (settings, load on and off, collection, check; about 10 s measured
# on the local lab of a 2-CPU machine) and the drain it usually needs (drains end when drained), for the estimate
# of a study's time; while it runs, the estimate is scaled by how the runs so far compared with theirs.
RUN_OVERHEAD_S = 10.0
EXPECTED_DRAIN_S = 5.0


# A quick study (a first look): one repeat, no null controls, the phases around each fault at most this long, only
# the first and the last configuration of a scenario (e.g. early acknowledgement, and late with
# reject_on_worker_lost), run grouped by their Celery settings (a change of settings restarts the workers).
QUICK_PHASE_S = 3.0
QUICK_NOTE = (f"quick: one repeat of each scenario's first and last configuration, grouped by settings, no null "
              f"controls, baseline and recovery at most {QUICK_PHASE_S:g} s; a first look, not a result to publish")


@dataclass(frozen=True)
class PlannedRun:
    scenario: Scenario  # the cell's scenario (its settings applied; its faults removed for a null control)
    cell: str
    repeat: int
    null_control: bool = False

    @property
    def path(self) -> str:
        last = study_report.NULL_CONTROL_DIR if self.null_control else f"r{self.repeat}"
        return f"{study_report.RUNS_DIR}/{self.scenario.name}/{self.cell or DEFAULT_CELL}/{last}"

    @property
    def planned_seconds(self) -> float:
        """The run's expected length: its phases, a drain of at most EXPECTED_DRAIN_S, and RUN_OVERHEAD_S."""
        return sum(min(phase.duration, EXPECTED_DRAIN_S) if phase.name == "drain" else phase.duration
                   for phase in self.scenario.phases) + RUN_OVERHEAD_S


def expected_seconds(runs: list[PlannedRun]) -> float:
    return sum(run.planned_seconds for run in runs)


def scenario_files(source: Path, only: list[str] | None = None) -> list[Path]:
    """The scenario files of a study directory (not of its subdirectories: each is a study of its own, e.g.
    experiments/study/seed), sorted by name, or those named in ``only`` (file stems)."""
    files = sorted(source.glob("*.yml"))
    if not files:
        raise ValueError(f"{source}: no scenario files (*.yml)")
    if only:
        unknown = sorted(set(only) - {path.stem for path in files})
        if unknown:
            raise ValueError(f"{source}: no scenario {unknown[0]!r} (available: {', '.join(p.stem for p in files)})")
        files = [path for path in files if path.stem in only]
    return files


def plan(scenarios: list[Scenario], repeat: int, null_controls: bool = True) -> list[PlannedRun]:
    """Every run of the study in order: scenario by scenario, cell by cell, the repeats of a cell together, and after
    a scenario with a fault its null control (its first cell once, the faults removed)."""
    if repeat < 1:
        raise ValueError(f"repeat must be 1 or more, got {repeat}")
    runs = []
    for scenario in scenarios:
        cells = scenario.cells()
        runs += [PlannedRun(cell_scenario, label, k) for label, cell_scenario in cells for k in range(1, repeat + 1)]
        if null_controls and scenario.fault_phase is not None:
            label, first = cells[0]
            runs.append(PlannedRun(first.null_control(), label, 1, null_control=True))
    return runs


def check_falsifiable(scenario: Scenario) -> None:
    """A study scenario with a fault says what the fault did and what it moved: its hypothesis (in every cell) names
    the fault's measured effect (``faults_not_effective``, each window as its node's measure judged it, or
    ``fault_effect``, the smallest measured ratio) and at least one figure of the tasks (ValueError otherwise)."""
    if scenario.fault_phase is None:
        return
    for label, cell in scenario.cells():
        figures = {condition.figure for condition in cell.hypothesis}
        where = f"{scenario.path}: hypothesis" + (f" of {label}" if label else "")
        if not figures & EFFECT_FIGURES:
            raise ValueError(f"{where} does not name faults_not_effective or fault_effect (what the fault measurably "
                             "did)")
        if not figures - EFFECT_FIGURES:
            raise ValueError(f"{where} names no figure the fault must move (a hypothesis that cannot fail)")


def machine() -> dict[str, Any]:
    """The controller host the study ran on."""
    os_name = "unknown"
    try:
        for line in Path("/etc/os-release").read_text(encoding="utf-8").splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"hostname": socket.gethostname(), "cpus": os.cpu_count(), "memory_gib": round(memory / 2**30, 1),
            "kernel": platform.release(), "os": os_name, "machine": platform.machine()}


def relative(path: Path, root: Path) -> str:
    """*path* relative to the project root when it lies below it, else absolute."""
    path = path.resolve()
    return str(path.relative_to(root) if path.is_relative_to(root) else path)


def scenario_entry(scenario: Scenario, root: Path) -> dict[str, Any]:
    fault = next((phase.fault for phase in scenario.phases if phase.fault is not None), None)
    return {
        "name": scenario.name,
        "file": relative(scenario.path, root),
        "description": scenario.description,
        "fault": fault.playbook if fault else None,
        "target": fault.target if fault else None,
        "params": dict(fault.params) if fault else {},
        "faults": [{"playbook": spec.playbook, "target": spec.target, "params": dict(spec.params), "at": spec.at,
                    "duration": spec.duration} for phase in scenario.phases for spec in phase.faults],
        "settings": scenario.celery,
        "redis": {key.removeprefix("redis_"): value for key, value in scenario.redis.items()},
        "rabbitmq": dict(scenario.rabbitmq),
        "phases": {phase.name: phase.duration for phase in scenario.phases},
        "hypothesis": hypothesis_map(scenario),
        "cell_hypotheses": {label: hypothesis_map(cell) for label, cell in scenario.cells()
                            if cell.hypothesis != scenario.hypothesis},
        "published": (published.to_data(scenario.published, scenario.published_source, TASK_KINDS, with_units=False,
                                        settings=scenario.published_settings) if scenario.published else None),
    }


def hypothesis_map(scenario: Scenario) -> dict[str, str]:
    return {condition.figure: condition.text for condition in scenario.hypothesis}


class Study:
    """Runs a plan on the lab and keeps study.json up to date after every run."""

    def __init__(self, source: Path, scenarios: list[Scenario], repeat: int, control: LabControl,
                 directory: Path, console: Console | None = None, quick: bool = False,
                 only: list[str] | None = None) -> None:
        self.repeat = repeat
        self.control = control
        self.directory = directory
        self.console = console or Console()
        self.runs: list[dict[str, Any]] = []
        self.started = time.time()
        self.status = "running"
        self.versions: dict[str, str] = {}
        root = project_root()
        # what study.json says of the study that does not change while it runs
        self.fixed = {"study_id": directory.name, "source": relative(source, root), "repeat": repeat,
                      **({"mode": QUICK_NOTE} if quick else {}), **({"only": sorted(only)} if only else {}),
                      "started": self.started, "machine": machine(),
                      "scenarios": [scenario_entry(scenario, root) for scenario in scenarios]}

    def write(self) -> None:
        data = {**self.fixed, "ended": None if self.status == "running" else time.time(), "status": self.status,
                "versions": self.versions, "runs": self.runs}
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / study_report.STUDY_FILE).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    def _progress(self, index: int, runs: list[PlannedRun]) -> None:
        took = sum(entry["seconds"] for entry in self.runs)
        planned = expected_seconds(runs[:index])
        estimate = expected_seconds(runs[index:]) * (took / planned if took and planned else 1.0)
        current = runs[index]
        self.console.print(
            f"[bold]study {index + 1}/{len(runs)}[/bold] {current.scenario.name} "
            f"{study_report.config_label(current.cell)} "
            f"{'null control (no fault)' if current.null_control else f'r{current.repeat}/{self.repeat}'}, "
            f"{study_report.fmt_duration(round(time.time() - self.started))} so far, "
            f"about {study_report.fmt_duration(round(estimate))} left",
            soft_wrap=True)

    def run(self, runs: list[PlannedRun]) -> int:
        reports = IdleReports()
        worker = runner.Runner(self.control, self.console, background_load=False, restore=False, report=reports)
        self.write()
        try:
            for index, planned in enumerate(runs):
                self._progress(index, runs)
                start = time.time()
                code = worker.run_cell(planned.scenario, self.directory / planned.path,
                                       f"{self.directory.name}/{planned.path}", planned.cell)
                self.runs.append({"scenario": planned.scenario.name, "cell": planned.cell,
                                  "settings": planned.scenario.celery, "repeat": planned.repeat,
                                  "null_control": planned.null_control, "path": planned.path, "exit": code,
                                  "seconds": round(time.time() - start, 1)})
                if not self.versions:
                    run_file = run_dir.read_run(self.directory / planned.path) or {}
                    self.versions = dict(run_file.get("versions") or {})
                self.write()
                if code == runner.EXIT_INTERRUPTED:
                    raise KeyboardInterrupt
            self.status = "completed"
        except KeyboardInterrupt:
            self.status = "aborted"
        finally:
            self.write()
            for name, step in (("Redis and the node sizes not restored (the next run or study puts them back)",
                                worker.restore_settings),
                               ("background load not restarted", self.control.background_load)):
                try:
                    step()
                except (Exception, KeyboardInterrupt) as err:  # the study's results stand without it
                    self.console.print(f"[yellow]{name}: {type(err).__name__}: {err}[/yellow]")
            for line in reports.wait():  # the runs' reports, drawn beside the study (its results stand without them)
                self.console.print(f"[yellow]{line}[/yellow]", highlight=False, soft_wrap=True)
        return runner.EXIT_INTERRUPTED if self.status == "aborted" else runner.EXIT_PASS


def load_all(files: list[Path]) -> list[Scenario]:
    """Every scenario checked before anything runs (the first problem raises ScenarioError)."""
    scenarios = [load_scenario(path) for path in files]
    for scenario in scenarios:
        check_falsifiable(scenario)
    names = [scenario.name for scenario in scenarios]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"scenario name {twice[0]!r} is used by more than one file")
    return scenarios


def new_study_id(source: Path) -> str:
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{source.name}"


def planned(source: Path, repeat: int, only: list[str] | None = None, null_controls: bool = True,
            quick: bool = False) -> tuple[list[Scenario], list[PlannedRun]]:
    """The study's scenarios (every one checked) and its runs; a quick study's as :data:`QUICK_NOTE` says."""
    scenarios = load_all(scenario_files(source, only))
    if quick:
        scenarios = [scenario.shortened(QUICK_PHASE_S) for scenario in scenarios]
        return scenarios, quick_plan(scenarios)
    return scenarios, plan(scenarios, repeat, null_controls)


def quick_plan(scenarios: list[Scenario]) -> list[PlannedRun]:
    """One run of each scenario's first and last cell, those with the same Celery settings one after another (in
    scenario order otherwise), so that the workers restart only when the settings change."""
    runs = []
    for scenario in scenarios:
        cells = scenario.cells()
        runs += [PlannedRun(cell, label, 1) for label, cell in (cells if len(cells) <= 2 else (cells[0], cells[-1]))]
    order = list(dict.fromkeys(json.dumps(run.scenario.celery, sort_keys=True, default=str) for run in runs))
    return sorted(runs, key=lambda run: order.index(json.dumps(run.scenario.celery, sort_keys=True, default=str)))


def run_study(source: Path, repeat: int, control: LabControl, results: Path | None = None,
              publish: Path | None = None, only: list[str] | None = None, console: Console | None = None,
              null_controls: bool = True, quick: bool = False,
              claimed: Callable[[Path], object] | None = None) -> int:
    """Run the study; 0 when every run held its hypothesis, every null control's failed and no cell's repeats
    disagree, 1 otherwise. A quick study is never published. *claimed* is told the study's directory before the first
    run."""
    if quick and publish is not None:
        raise ValueError("a quick study is a first look: it is not published")
    console = console or Console()
    scenarios, runs = planned(source, repeat, only, null_controls, quick)
    repeat = 1 if quick else repeat
    directory = (results or project_root() / "experiments" / "results") / new_study_id(source)
    if claimed is not None:
        claimed(directory)
    console.print(f"study of {len(scenarios)} scenarios, {len(runs)} runs ({repeat} per cell) -> {directory}"
                  + (f" ({QUICK_NOTE})" if quick else ""))
    code = Study(source, scenarios, repeat, control, directory, console, quick, only).run(runs)
    markdown, page = study_report.write_study_report(directory)
    console.print(f"study report: {page} ({markdown})")
    if publish is not None and code != runner.EXIT_INTERRUPTED:
        console.print(f"published: {study_report.publish(directory, publish)}")
    if code == runner.EXIT_INTERRUPTED:
        return code
    study = study_report.load_study(directory)
    passed = study_report.study_passed(study)
    verdict = "PASS" if passed else "FAIL"
    console.print(f"study {verdict}{' (quick: a first look, without null controls)' if quick else ''}: {directory}")
    return runner.EXIT_PASS if passed else runner.EXIT_FAIL
