"""What a CI system reads of runs and studies (chaoslab.report.ci_outputs): JUnit XML valid against the format's
schema, a test case per hypothesis line with the measured value in its message, a run that did not complete as an
error case, null controls as cases that pass when their hypothesis fails; JSON with each run's verdict."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import xmlschema

from chaoslab.report import ci_outputs
from tests.conftest import ROOT

SCHEMA = xmlschema.XMLSchema(str(Path(__file__).with_name("data") / "junit.xsd"))


def write(directory: Path, name: str, data: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(json.dumps(data), encoding="utf-8")


def a_run(directory: Path, conditions: list[tuple[str, str, float | None, bool]] | None, cell: str = "",
          error: str = "") -> Path:
    """A run directory as the runner leaves it: run.json, and verdict.json and summary.json when it was judged."""
    write(directory, "run.json", {"run_id": "20261205-demo", "scenario": "demo", "cell": cell,
                                  "status": "aborted" if conditions is None else "completed", "error": error,
                                  "started": 100.0, "ended": 160.0})
    if conditions is not None:
        write(directory, "verdict.json", {
            "passed": all(holds for *_, holds in conditions), "headline": "hypothesis held",
            "conditions": [{"figure": f, "condition": c, "actual": a, "holds": h} for f, c, a, h in conditions],
            "figures": {f: a for f, _, a, _ in conditions}, "warnings": []})
        write(directory, "summary.json", {"classes": {"completed": 10, "lost": 3}, "causes": {"lost": {"x": 3}},
                                          "delivery": {"guarantee": "at-most-once"}, "tasks": ["not carried"]})
    return directory


def cases_in(xml: str) -> list[ET.Element]:
    return list(ET.fromstring(xml).iter("testcase"))


def test_each_hypothesis_line_is_a_test_case_with_what_was_measured(tmp_path):
    run = a_run(tmp_path / "r", [("lost", "== 0", 3.0, False), ("p95_end_to_end", "<= 5s", 1.25, True)])
    xml = ci_outputs.junit({"20261205-demo": ci_outputs.run_cases(run)})
    SCHEMA.validate(xml)
    root = ET.fromstring(xml)
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("2", "1", "0")
    lost, p95 = cases_in(xml)
    assert (lost.get("classname"), lost.get("name")) == ("demo", "lost == 0")
    assert lost.find("failure").get("message") == "measured 3, wanted == 0"
    assert p95.find("failure") is None and p95.findtext("system-out").startswith("measured 1.25, wanted <= 5s")
    assert float(lost.get("time")) + float(p95.get("time")) == pytest.approx(60.0)


def test_a_run_that_did_not_complete_is_an_error_case(tmp_path):
    run = a_run(tmp_path / "r", None, error="PlaybookFailed: faults/worker-kill.yml: fatal: [worker-1]")
    xml = ci_outputs.junit({"r": ci_outputs.run_cases(run)})
    SCHEMA.validate(xml)
    (case,) = cases_in(xml)
    assert case.get("name") == "run" and case.find("error").get("message").startswith("PlaybookFailed")
    assert ET.fromstring(xml).get("errors") == "1"


def test_a_matrix_run_gives_each_cells_lines_under_its_cell(tmp_path):
    parent = tmp_path / "m"
    write(parent, "run.json", {"run_id": "m", "scenario": "demo", "status": "completed",
                               "cells": ["task_acks_late=false", "task_acks_late=true"]})
    a_run(parent / "cells" / "task_acks_late=false", [("lost", ">= 1", 2.0, True)], cell="task_acks_late=false")
    a_run(parent / "cells" / "task_acks_late=true", [("lost", "== 0", 0.0, True)], cell="task_acks_late=true")
    xml = ci_outputs.junit({"m": ci_outputs.run_cases(parent)})
    SCHEMA.validate(xml)
    assert [case.get("classname") for case in cases_in(xml)] == ["demo.task_acks_late=false",
                                                                  "demo.task_acks_late=true"]
    document = ci_outputs.run_json(parent, 0)
    assert [cell["cell"] for cell in document["cells"]] == ["task_acks_late=false", "task_acks_late=true"]
    assert document["cells"][0]["classes"] == {"completed": 10, "lost": 3} and "tasks" not in document["cells"][0]


def test_a_studys_null_control_passes_when_its_hypothesis_fails(tmp_path):
    study = tmp_path / "s"
    runs = [{"scenario": "kill", "cell": "task_acks_late=false", "repeat": 1, "null_control": False,
             "path": "runs/kill/task_acks_late=false/r1", "exit": 0},
            {"scenario": "kill", "cell": "task_acks_late=false", "repeat": 1, "null_control": True,
             "path": "runs/kill/task_acks_late=false/null", "exit": 1},
            {"scenario": "delay", "cell": "", "repeat": 1, "null_control": True, "path": "runs/delay/default/null",
             "exit": 0}]
    write(study, "study.json", {"study_id": "s", "status": "completed", "runs": runs})
    a_run(study / runs[0]["path"], [("lost", ">= 1", 2.0, True)], cell="task_acks_late=false")
    a_run(study / runs[1]["path"], [("lost", ">= 1", 0.0, False)], cell="task_acks_late=false")
    a_run(study / runs[2]["path"], [("p95_end_to_end_ratio", ">= 2", 2.5, True)])
    suites = ci_outputs.study_cases(study)
    xml = ci_outputs.junit(suites)
    SCHEMA.validate(xml)
    assert list(suites) == ["kill", "delay"]
    kill_line, kill_null, delay_null = cases_in(xml)
    assert kill_line.get("classname") == "kill.task_acks_late=false.r1" and kill_line.find("failure") is None
    assert kill_null.get("classname") == "kill.task_acks_late=false.null" and kill_null.find("failure") is None
    assert delay_null.find("failure").get("message") == ("the hypothesis held without the fault (it cannot tell the "
                                                         "fault's effect): p95_end_to_end_ratio >= 2")
    document = ci_outputs.study_json(study, 1, False)
    assert [(run["repeat"], run["null_control"], run["passed"]) for run in document["runs"]] == [
        (1, False, True), (1, True, False), (1, True, True)]


def test_text_a_task_wrote_cannot_break_the_xml(tmp_path):
    error = "ValueError: ]]></error><testcase name='x'/>\x1b[31m\x00 & <script>"
    xml = ci_outputs.junit({"r": ci_outputs.run_cases(a_run(tmp_path / "r", None, error=error))})
    SCHEMA.validate(xml)
    (case,) = cases_in(xml)
    assert case.find("error").get("message") == "ValueError: ]]></error><testcase name='x'/>\ufffd[31m\ufffd & <script>"


def test_chaoslab_run_refused_writes_an_error_case_and_only_json_on_stdout(tmp_path):
    """A scenario refused before anything starts: its one-line reason on stderr, an error case in the JUnit file, and
    stdout holding nothing but the JSON document (a CI step parses it as it is)."""
    bad = tmp_path / "bad.yml"
    bad.write_text("name: demo\nphases: []\n", encoding="utf-8")
    junit_file = tmp_path / "out.xml"
    proc = subprocess.run([sys.executable, "-m", "chaoslab.cli", "run", str(bad), "--junit", str(junit_file),
                           "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    document = json.loads(proc.stdout)
    assert document["exit"] == 2 and document["error"] in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    xml = junit_file.read_text(encoding="utf-8")
    SCHEMA.validate(xml)
    (case,) = cases_in(xml)
    assert case.find("error").get("message") == document["error"]
