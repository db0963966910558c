"""A small study on the local lab: one fault scenario, two repeats and its null control, the report over them,
published and regenerated."""

from __future__ import annotations

import json
import subprocess
from xml.etree import ElementTree

import yaml

from chaoslab.report import study_report
from lab_state import service_pid
from tests.conftest import BIN, ROOT, ansible_env


def test_a_study_repeats_runs_reports_and_publishes(lab, tmp_path):
    """A fault scenario twice, then its null control: the fault moves what the hypothesis names, the same run without
    it does not, and the study says both."""
    source = tmp_path / "mini"
    source.mkdir()
    scenario = yaml.safe_load((ROOT / "experiments" / "study" / "worker-kill.yml").read_text())
    scenario.update(name="mini", phases=[
        {"name": "baseline", "duration": "5s"},
        # fired when both of worker-1's pool processes run a task, so that the first kill hits one whatever the
        # timing (a kill every 2 s from the phase's start hit only idle processes in about one run in twenty)
        {"name": "fault", "duration": "6s", "fault": {"playbook": "worker-kill", "target": "workers[0]",
                                                      "params": {"mode": "child", "every": "2s"},
                                                      "trigger": "running>=2"}},
        {"name": "drain", "duration": "20s"}])
    scenario["matrix"] = scenario["matrix"][:1]  # early acknowledgement: a killed child's task is failed_by_worker
    (source / "mini.yml").write_text(yaml.safe_dump(scenario))
    results, reference = tmp_path / "results", tmp_path / "reference"
    junit = tmp_path / "study.xml"
    proc = subprocess.run([str(BIN / "chaoslab"), "study", str(source), "--repeat", "2", "--results", str(results),
                           "--publish", str(reference), "--junit", str(junit)], cwd=ROOT,
                          env=ansible_env(COLUMNS="200"), capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "study 1/3 mini acks_late=false r1/2, 0 s so far, about " in proc.stdout
    assert "study 2/3 mini acks_late=false r2/2, " in proc.stdout
    assert "study 3/3 mini acks_late=false null control (no fault), " in proc.stdout
    (study_dir,) = results.iterdir()
    data = json.loads((study_dir / "study.json").read_text())
    assert data["status"] == "completed" and data["repeat"] == 2
    cell = "runs/mini/task_acks_late=false"
    # the repeats held their hypothesis; the null control's did not (exit 1)
    assert [(run["path"], run["null_control"], run["exit"]) for run in data["runs"]] == [
        (f"{cell}/r1", False, 0), (f"{cell}/r2", False, 0), (f"{cell}/null", True, 1)]
    assert data["versions"]["celery"] and data["machine"]["cpus"]
    for run in data["runs"]:
        run_dir = study_dir / run["path"]
        assert {"run.json", "summary.json", "verdict.json", "report.html"} <= {p.name for p in run_dir.iterdir()}
    control = json.loads((study_dir / cell / "null" / "verdict.json").read_text())
    failed = {item["figure"] for item in control["conditions"] if not item["holds"]}
    # no fault acted (no window measured: faults_not_effective is None), and no task died with a child
    assert {"faults_not_effective", "failed_by_worker"} <= failed, control
    assert control["figures"]["failed_by_worker"] == 0 and control["figures"]["faults_not_effective"] is None
    assert control["figures"]["fault_effect"] is None
    assert json.loads((study_dir / cell / "null" / "run.json").read_text())["faults"] == []
    study = study_report.load_study(study_dir)
    (group, null) = study.groups
    assert study_report.group_agreement(study, group).ok is None  # two repeats: classes only
    assert study_report.group_verdict(null) == study_report.NULL_FAILED
    assert study_report.study_passed(study)
    markdown = (study_dir / "study.md").read_text()
    assert "| mini | acks_late=false, no fault (null control) |" in markdown
    # the reference holds the small files only, and its report is made again from them alone
    published = {p.relative_to(reference).as_posix() for p in reference.rglob("*") if p.is_file()}
    assert f"{cell}/r1/summary.json" in published and f"{cell}/null/verdict.json" in published
    assert not any("ledgers" in name or name.endswith(("tasks.csv", "metrics.json")) for name in published)
    again = tmp_path / "again"
    study_report.write_study_report(reference, again)
    assert (again / "study.md").read_bytes() == (reference / "study.md").read_bytes()
    # for CI: a suite for the scenario, each repeat's hypothesis lines passing, and the null control a passing case
    # because its hypothesis failed
    suite = ElementTree.parse(junit).getroot().find("testsuite")
    assert suite is not None and (suite.get("name"), suite.get("failures"), suite.get("errors")) == ("mini", "0", "0")
    classnames = [case.get("classname") for case in suite.iter("testcase")]
    lines = json.loads((study_dir / cell / "r1" / "verdict.json").read_text())["conditions"]
    assert classnames.count("mini.task_acks_late=false.r1") == len(lines) >= 2
    assert classnames[-1] == "mini.task_acks_late=false.null"
    # the lab's background load runs again once the study is over
    assert service_pid("monitor", "loadgen") > 0
