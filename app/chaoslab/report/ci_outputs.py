"""What a CI system reads of runs and studies: JUnit XML (a test case per hypothesis line, with the measured value in
its message; a run that did not complete is an error case) and a JSON document (each run's verdict and outcome).

Both are made from run directories as the runner left them (run.json, verdict.json, summary.json), so a run judged
later, or a study's runs, are written the same way:

    cases = run_cases(run_dir)                    # a run, or every cell of a matrix run
    xml = junit({"my-scenario": cases})           # one <testsuite> per key
    data = runs_json([run_dir])                   # JSON-ready
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from chaoslab.analysis import run_dir
from chaoslab.report.study_report import STUDY_FILE

# Classes, causes and delivery of summary.json that the JSON output carries (the rest stays in the run directory).
SUMMARY_KEYS: Final = ("classes", "causes", "delivery")
# Characters XML 1.0 cannot hold (a value read from a run is text a user's task may have written, e.g. an error).
_NOT_XML: Final = {code: "\ufffd" for code in (*range(0, 9), 11, 12, *range(14, 32))}


@dataclass(frozen=True)
class Case:
    """One JUnit test case: a hypothesis line of one run (or the run itself, when it has no verdict)."""

    classname: str
    """Where the line belongs: the scenario, its cell and repeat (``network-delay.broker=redis.r1``)."""
    name: str
    """The line: ``lost == 0``; for a run without a verdict, ``run``."""
    seconds: float = 0.0
    failure: str | None = None
    """Why the line did not hold: what was measured against what was asked."""
    error: str | None = None
    """Why the run has no verdict (it did not complete)."""
    output: str = ""
    """What was measured, and where the run is (the case's system-out, shown by CI systems for passed cases too)."""


def _number(value: Any) -> str:
    if value is None:
        return "not measured"
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return str(int(value))
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _seconds(run: Mapping[str, Any]) -> float:
    started, ended = run.get("started"), run.get("ended")
    if isinstance(started, (int, float)) and isinstance(ended, (int, float)) and ended >= started:
        return round(float(ended) - float(started), 3)
    return 0.0


def _label(directory: Path, run: Mapping[str, Any], prefix: str) -> str:
    """*prefix* when given (a study's ``<scenario>.<cell>.r<k>``), else the run's scenario and cell."""
    if prefix:
        return prefix
    return ".".join(part for part in (str(run.get("scenario") or directory.name), str(run.get("cell") or "")) if part)


def cell_cases(directory: Path, prefix: str = "", expect_failure: bool = False) -> list[Case]:
    """The test cases of one run directory (one cell): a case per hypothesis line, or one error case when the run
    has no verdict. *expect_failure*: a null control, whose hypothesis must not hold (one case says whether it
    failed as it must)."""
    run = run_dir.read_run(directory) or {}
    verdict = run_dir.read_verdict(directory)
    classname = _label(directory, run, prefix)
    seconds = _seconds(run)
    if verdict is None:
        why = str(run.get("error") or f"no verdict (status {run.get('status') or 'unknown'})")
        return [Case(classname, "run", seconds, error=why, output=f"run directory: {directory}")]
    conditions = [item for item in verdict.get("conditions") or [] if isinstance(item, Mapping)]
    if expect_failure:
        held = [f"{item.get('figure')} {item.get('condition')}" for item in conditions if item.get("holds")]
        failure = None if not verdict.get("passed") else (
            "the hypothesis held without the fault (it cannot tell the fault's effect): " + ", ".join(held))
        return [Case(classname, "null control: the hypothesis fails without the fault", seconds, failure=failure,
                     output=f"run directory: {directory}")]
    cases = []
    for item in conditions:
        line = f"{item.get('figure')} {item.get('condition')}"
        measured = f"measured {_number(item.get('actual'))}"
        cases.append(Case(classname, line, seconds / max(len(conditions), 1),
                          failure=None if item.get("holds") else f"{measured}, wanted {item.get('condition')}",
                          output=f"{measured}, wanted {item.get('condition')}; run directory: {directory}"))
    return cases


def run_cases(directory: Path) -> list[Case]:
    """The test cases of a run directory: its own, or every cell's of a matrix run."""
    if run_dir.is_matrix(directory):
        return [case for cell in run_dir.cell_dirs(directory) for case in cell_cases(cell)]
    return cell_cases(directory)


def _text(value: str) -> str:
    return value.translate(_NOT_XML)


def junit(suites: Mapping[str, Sequence[Case]]) -> str:
    """JUnit XML (the schema CI systems read: testsuites > testsuite > testcase, with failure or error)."""
    root = ET.Element("testsuites", name="chaoslab")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    seconds = 0.0
    for suite_name, cases in suites.items():
        failures = sum(case.failure is not None for case in cases)
        errors = sum(case.error is not None for case in cases)
        took = sum(case.seconds for case in cases)
        suite = ET.SubElement(root, "testsuite", name=_text(suite_name), tests=str(len(cases)),
                              failures=str(failures), errors=str(errors), skipped="0", time=f"{took:.3f}")
        for case in cases:
            element = ET.SubElement(suite, "testcase", classname=_text(case.classname), name=_text(case.name),
                                    time=f"{case.seconds:.3f}")
            if case.error is not None:
                ET.SubElement(element, "error", message=_text(case.error), type="RunError").text = _text(case.error)
            elif case.failure is not None:
                ET.SubElement(element, "failure", message=_text(case.failure),
                              type="HypothesisFailed").text = _text(case.failure)
            if case.output:
                ET.SubElement(element, "system-out").text = _text(case.output)
        totals["tests"] += len(cases)
        totals["failures"] += failures
        totals["errors"] += errors
        seconds += took
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{seconds:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def cell_json(directory: Path) -> dict[str, Any]:
    """One run (cell) as the JSON output gives it: its status, verdict, figures and the checker's classes."""
    run = run_dir.read_run(directory) or {}
    verdict = run_dir.read_verdict(directory)
    summary = run_dir.read_json(directory / run_dir.SUMMARY_FILE) or {}
    return {
        "directory": str(directory), "scenario": run.get("scenario"), "cell": run.get("cell") or "",
        "status": run.get("status"), "error": run.get("error") or None,
        "passed": None if verdict is None else bool(verdict.get("passed")),
        "headline": None if verdict is None else verdict.get("headline"),
        "conditions": [] if verdict is None else list(verdict.get("conditions") or []),
        "figures": {} if verdict is None else dict(verdict.get("figures") or {}),
        "warnings": [] if verdict is None else list(verdict.get("warnings") or []),
        **{key: summary.get(key) for key in SUMMARY_KEYS},
    }


def run_json(directory: Path, exit_code: int) -> dict[str, Any]:
    """A run (every cell of a matrix run) and its exit code as the JSON output gives them."""
    run = run_dir.read_run(directory) or {}
    cells = run_dir.cell_dirs(directory) if run_dir.is_matrix(directory) else [directory]
    return {"run_id": run.get("run_id") or directory.name, "scenario": run.get("scenario"),
            "directory": str(directory), "exit": exit_code, "cells": [cell_json(cell) for cell in cells]}


def cases_of_runs(directories: Iterable[Path]) -> dict[str, list[Case]]:
    """A test suite per run directory, named by its run id."""
    return {directory.name: run_cases(directory) for directory in directories}


def _study_runs(directory: Path) -> list[Mapping[str, Any]]:
    data = run_dir.read_json(directory / STUDY_FILE) or {}
    return [run for run in data.get("runs") or [] if isinstance(run, Mapping) and run.get("path")]


def study_cases(directory: Path) -> dict[str, list[Case]]:
    """A test suite per scenario of a study: each run's hypothesis lines (``<scenario>.<cell>.r<k>``), and for each
    null control one case that its hypothesis failed as it must."""
    suites: dict[str, list[Case]] = {}
    for run in _study_runs(directory):
        scenario, cell = str(run.get("scenario")), str(run.get("cell") or "")
        last = "null" if run.get("null_control") else f"r{run.get('repeat')}"
        prefix = ".".join(part for part in (scenario, cell, last) if part)
        suites.setdefault(scenario, []).extend(
            cell_cases(directory / str(run["path"]), prefix, expect_failure=bool(run.get("null_control"))))
    return suites


def study_json(directory: Path, exit_code: int, passed: bool | None) -> dict[str, Any]:
    """A study as the JSON output gives it: its verdict (every run held, every null control failed, the repeats
    agree) and each run's."""
    data = run_dir.read_json(directory / STUDY_FILE) or {}
    return {"study_id": data.get("study_id") or directory.name, "directory": str(directory), "exit": exit_code,
            "status": data.get("status"), "passed": passed,
            "runs": [{**cell_json(directory / str(run["path"])), "repeat": run.get("repeat"),
                      "null_control": bool(run.get("null_control")), "exit": run.get("exit")}
                     for run in _study_runs(directory)]}
