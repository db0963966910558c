"""The run directory: every file named once, written whole, read back as the checker made it."""

from __future__ import annotations

import ast
import csv
import json

import pytest

from chaoslab.analysis import run_dir as run_files
from chaoslab.analysis.checker import CSV_HEADER, EXECUTION_HEADER
from chaoslab.analysis.figures import KIND_FIGURES, NAMES
from tests.conftest import ROOT
from tests.unit.test_checker import (
    COMPLETED,
    FAILED,
    KILLED,
    LOST,
    PENDING,
    REDELIVERED,
    pub,
    run,
    snap,
    start,
)

FILE_NAMES = {value for name, value in vars(run_files).items()
              if name.endswith("_FILE") or name.startswith("COMPARISON_")}


def checked_summary():
    records = COMPLETED + LOST + KILLED + REDELIVERED + FAILED + PENDING
    records += [pub("pf", 1, "error"), start("ghost", 2)]
    return run(records, snapshot=snap(queued=["wait"]))


def test_write_check_writes_summary_tasks_and_executions(tmp_path):
    summary = checked_summary()
    run_files.write_check(summary, tmp_path / "out", {"run_id": "r1", "cell": "x=1"})
    data = json.loads((tmp_path / "out" / run_files.SUMMARY_FILE).read_text())
    assert data["tasks"] == 7
    assert data["classes"] == {"completed": 1, "duplicated_completed": 1, "duplicated_not_completed": 0, "failed": 1,
                               "failed_by_worker": 0, "pending": 1, "lost": 2, "publish_failed": 1}
    assert data["causes"] == {"failed": {"RuntimeError": 1}, "lost": {"killed_running": 1, "never_delivered": 1},
                              "pending": {"queued": 1}, "publish_failed": {"error": 1}}
    assert data["ids"]["lost"] == ["killed", "lost"]
    assert data["ids"]["pending"] == ["wait"]
    assert data["ids"]["unknown"] == ["ghost"]
    assert (data["duplicated"], data["never_completed"]) == (1, 4)
    assert data["delivery"] == {"guarantee": "none", "unfinished": 2, "redelivered": 1, "pending": 1}
    assert data["snapshot"]["queued"] == 1
    assert list(data["figures"])[:len(NAMES)] == list(NAMES)
    # then the per-kind figures of the one kind published
    assert list(data["figures"])[len(NAMES):] == [f"{name}.noop" for name in KIND_FIGURES]
    assert data["figures"]["success_ratio"] == pytest.approx(2 / 6)  # ok and dup of the six sent
    assert (data["figures"]["lost"], data["figures"]["unknown"]) == (2.0, 1.0)
    with (tmp_path / "out" / run_files.TASKS_FILE).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == ("run_id", "cell", *CSV_HEADER)
    assert {row["run_id"] for row in rows} == {"r1"}
    assert {row["id"]: row["class"] for row in rows} == {
        "ok": "completed", "lost": "lost", "killed": "lost", "dup": "duplicated_completed", "bad": "failed",
        "wait": "pending", "pf": "publish_failed"}
    dup = next(row for row in rows if row["id"] == "dup")
    assert (dup["executions"], dup["nodes"], dup["queue_wait"], dup["phase"]) == ("2", "w1;w2", "1.0", "baseline")
    assert next(row for row in rows if row["id"] == "lost")["first_start"] == ""
    with (tmp_path / "out" / run_files.EXECUTIONS_FILE).open(newline="") as handle:
        executions = list(csv.DictReader(handle))
    assert tuple(executions[0]) == ("run_id", "cell", *EXECUTION_HEADER)
    assert len(executions) == sum(task.executions for task in summary.tasks) + 1  # and the ghost's
    assert [(e["id"], e["node"], e["end"]) for e in executions if e["id"] == "dup"] == [("dup", "w1", ""),
                                                                                        ("dup", "w2", "5.0")]
    assert next(e for e in executions if e["id"] == "ghost")["kind"] == ""


def test_tasks_and_executions_read_back_as_the_checker_made_them(tmp_path):
    summary = checked_summary()
    written = run_files.write_check(summary, tmp_path, {"run_id": "r1"})
    parts = run_files.read_parts(tmp_path)
    assert parts.tasks == summary.tasks and parts.executions == summary.executions
    assert parts.summary == written.summary
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_run_directory_without_the_checkers_files_reads_as_missing(tmp_path):
    assert run_files.read_parts(tmp_path) == (None, None, None)
    assert run_files.read_run(tmp_path) is None and run_files.read_snapshot(tmp_path) is None
    assert run_files.read_metrics(tmp_path) == {} and run_files.figures(tmp_path) == {}


def test_write_atomically_replaces_the_file_whole(tmp_path):
    path = tmp_path / run_files.RUN_FILE
    run_files.write_run(tmp_path, {"status": "running"})
    run_files.write_run(tmp_path, {"status": "completed"})
    assert run_files.read_run(tmp_path) == {"status": "completed"}
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_snapshot_round_trip(tmp_path):
    state = snap(queued=["a"], reserved=["b"])
    path = run_files.write_snapshot(state, tmp_path)
    assert path.name == run_files.SNAPSHOT_FILE and "\n" not in path.read_text().rstrip("\n")
    assert run_files.read_snapshot(tmp_path) == state


def test_an_older_runs_figures_are_its_verdicts_and_the_rest_measured_from_its_summary(tmp_path):
    summary = checked_summary()
    run_files.write_check(summary, tmp_path)
    data = json.loads((tmp_path / run_files.SUMMARY_FILE).read_text())
    measured = data.pop("figures")
    (tmp_path / run_files.SUMMARY_FILE).write_text(json.dumps(data))  # as written before it held figures
    assert run_files.figures(tmp_path) == measured  # the success ratio from tasks.csv
    run_files.write_verdict(tmp_path, {"passed": True, "figures": {"lost": 9.0, "stuck": 1.0}})
    assert run_files.figures(tmp_path) == {**measured, "lost": 9.0, "stuck": 1.0}


def _literals(path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in FILE_NAMES:
            yield node.lineno, node.value


def test_the_run_directorys_file_names_are_spelled_in_one_module():
    spelled = {f"{path.relative_to(ROOT)}:{line}": name
               for path in sorted((ROOT / "app" / "chaoslab").rglob("*.py")) if path.name != "run_dir.py"
               for line, name in _literals(path)}
    assert {"run.json", "summary.json", "tasks.csv", "executions.csv", "snapshot.json"} <= FILE_NAMES
    assert not spelled, spelled


def test_tasks_written_before_a_column_was_added_read_with_its_default(tmp_path):
    run_files.write_check(checked_summary(), tmp_path, {"run_id": "r1", "cell": ""})
    tasks = run_files.read_tasks(tmp_path)
    assert tasks is not None and any(task.run_start is not None for task in tasks)
    with (tmp_path / run_files.TASKS_FILE).open(newline="") as handle:
        rows = list(csv.reader(handle))
    drop = rows[0].index("run_start")  # as a checker before run_start wrote it
    (tmp_path / run_files.TASKS_FILE).write_text(
        "".join(",".join(cell for i, cell in enumerate(row) if i != drop) + "\n" for row in rows))
    older = run_files.read_tasks(tmp_path)
    assert older == [task._replace(run_start=None) for task in tasks]
    without_id = [",".join(cell for i, cell in enumerate(row) if i != rows[0].index("kind")) for row in rows]
    (tmp_path / run_files.TASKS_FILE).write_text("\n".join(without_id) + "\n")
    with pytest.raises(ValueError, match="the header lacks a column of"):
        run_files.read_tasks(tmp_path)
