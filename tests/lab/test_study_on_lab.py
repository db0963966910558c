"""A small study on the local lab: one scenario, two repeats, the report over both, published and regenerated."""

from __future__ import annotations

import json
import subprocess

import yaml

from chaoslab.report import study_report
from lab_state import service_pid
from tests.conftest import BIN, ROOT, ansible_env


def test_a_study_repeats_runs_reports_and_publishes(lab, tmp_path):
    source = tmp_path / "mini"
    source.mkdir()
    scenario = yaml.safe_load((ROOT / "experiments" / "study" / "baseline.yml").read_text())
    scenario.update(name="mini", phases=[{"name": "baseline", "duration": "8s"}, {"name": "drain", "duration": "20s"}])
    del scenario["matrix"]
    (source / "mini.yml").write_text(yaml.safe_dump(scenario))
    results, reference = tmp_path / "results", tmp_path / "reference"
    proc = subprocess.run([str(BIN / "chaoslab"), "study", str(source), "--repeat", "2", "--results", str(results),
                           "--publish", str(reference)], cwd=ROOT, env=ansible_env(COLUMNS="200"),
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "study 1/2 mini default r1/2, 0 s so far, about " in proc.stdout
    assert "study 2/2 mini default r2/2, " in proc.stdout
    (study_dir,) = results.iterdir()
    data = json.loads((study_dir / "study.json").read_text())
    assert data["status"] == "completed" and data["repeat"] == 2
    assert [(run["path"], run["exit"]) for run in data["runs"]] == [("runs/mini/default/r1", 0),
                                                                   ("runs/mini/default/r2", 0)]
    assert data["versions"]["celery"] and data["machine"]["cpus"]
    for run in data["runs"]:
        run_dir = study_dir / run["path"]
        assert {"run.json", "summary.json", "verdict.json", "report.html"} <= {p.name for p in run_dir.iterdir()}
        assert json.loads((run_dir / "verdict.json").read_text())["figures"]["success_ratio"] == 1.0
    study = study_report.load_study(study_dir)
    (group,) = study.groups
    assert study_report.agreement(group).ok and study_report.study_passed(study)
    markdown = (study_dir / "study.md").read_text()
    assert "| mini | default |" in markdown
    # the reference holds the small files only, and its report is made again from them alone
    published = {p.relative_to(reference).as_posix() for p in reference.rglob("*") if p.is_file()}
    assert "runs/mini/default/r1/summary.json" in published
    assert not any("ledgers" in name or name.endswith(("tasks.csv", "metrics.json")) for name in published)
    again = tmp_path / "again"
    study_report.write_study_report(reference, again)
    assert (again / "study.md").read_bytes() == (reference / "study.md").read_bytes()
    # the lab's background load runs again once the study is over
    assert service_pid("monitor", "loadgen") > 0
