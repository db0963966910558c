"""Comparison rows read from real run directories (synthetic ledgers, the real checker)."""

from __future__ import annotations

import csv
import json

import pytest

from chaoslab.analysis.checker import CLASSES
from chaoslab.analysis.figures import fault_phase, success_ratio
from chaoslab.report.compare import (
    COLUMNS,
    MISSING,
    Row,
    compare,
    fmt_seconds,
    to_html,
    to_html_page,
    to_markdown,
    write_comparison,
)
from tests.unit.test_report import CELLS, HtmlTables, make_matrix, make_run


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs") / "run-1")


def summary_json(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


def phase_named(summary, name):
    return next(phase for phase in summary["phases"] if phase["name"] == name)


def assert_row_matches(row: Row, run_dir, summary):
    data = summary_json(run_dir)
    for cls in CLASSES:
        assert getattr(row, cls) == data["classes"][cls] == summary.classes[cls]
    assert row.p95_end_to_end == data["overall"]["latency"]["end_to_end"]["p95"]
    baseline = phase_named(data, "baseline")["throughput"]
    fault = data["fault_throughput"]  # inside the fault windows, not over the fault phase
    assert fault is not None and fault != phase_named(data, "fault")["throughput"]
    assert (row.throughput_baseline, row.throughput_fault) == (baseline, fault)
    assert row.throughput_drop == pytest.approx(1 - fault / baseline)
    assert row.recovery_time == data["recovery"]["time_s"] == summary.recovery.time_s
    assert row.delivery == data["delivery"]["guarantee"]
    assert row.success_ratio == pytest.approx(success_ratio(summary.tasks))


def test_single_run_row_equals_its_summary(single):
    run_dir, summary = single
    (row,) = compare([run_dir])
    assert_row_matches(row, run_dir, summary)
    assert (row.label, row.run_id, row.status, row.verdict) == ("worker-kill", "run-1", "completed", "did not hold")
    assert row.held is False
    assert row.throughput_drop > 0
    assert row.recovery_time is None  # the lost tasks never finish: wiping work is not a recovery
    assert "never finished" in summary.recovery.note


def test_success_ratio_is_over_tasks_sent(single):
    """Every duplicated task of the synthetic run ended in success; failed, lost and pending did not."""
    run_dir, summary = single
    (row,) = compare([run_dir])
    classes = summary.classes
    sent = len(summary.tasks) - classes["publish_failed"]
    assert row.success_ratio == pytest.approx((classes["completed"] + classes["duplicated_completed"]) / sent)


def test_matrix_parent_gives_one_row_per_cell(tmp_path):
    parent, summaries = make_matrix(tmp_path / "m1")
    single_dir, single_summary = make_run(tmp_path / "run-2", scenario="redis-restart")
    rows = compare([parent, single_dir])
    assert [row.label for row in rows] == [*(f"worker-kill / {label}" for label in CELLS), "redis-restart"]
    for row, label in zip(rows, CELLS, strict=False):
        assert_row_matches(row, parent / "cells" / label, summaries[label])
        assert row.run_id == f"m1-{label}"
    assert_row_matches(rows[-1], single_dir, single_summary)
    assert rows[0].lost != rows[1].lost


def test_a_summary_without_fault_throughput_falls_back_to_the_phase_overlapping_the_faults(tmp_path):
    phases = (("warmup", 0.0, 20.0), ("under-kill", 20.0, 40.0), ("after", 40.0, 75.0))
    run_dir, _ = make_run(tmp_path / "renamed", phases=phases)
    data = summary_json(run_dir)
    del data["fault_throughput"], data["figures"]  # as a summary of an earlier checker
    (run_dir / "summary.json").write_text(json.dumps(data))
    assert fault_phase(data)["name"] == "under-kill"
    (row,) = compare([run_dir])
    assert row.throughput_baseline == phase_named(data, "warmup")["throughput"]
    assert row.throughput_fault == phase_named(data, "under-kill")["throughput"]
    assert fault_phase({"phases": data["phases"], "faults": []}) is None


def test_run_without_summary_or_verdict_still_gives_a_row(tmp_path):
    run_dir, _ = make_run(tmp_path / "aborted", status="aborted", verdict=False)
    for name in ("summary.json", "tasks.csv"):
        (run_dir / name).unlink()
    (row,) = compare([run_dir])
    assert row.status == "aborted"
    assert row.lost is None and row.success_ratio is None and row.verdict is None
    assert MISSING in to_markdown([row])


def test_missing_cell_directory_is_a_row_marked_missing(tmp_path):
    parent, _ = make_matrix(tmp_path / "m2", cells={"only": 3})
    run = json.loads((parent / "run.json").read_text())
    (parent / "run.json").write_text(json.dumps({**run, "cells": ["only", "gone"]}))
    rows = compare([parent])
    assert [row.status for row in rows] == ["completed", "missing"]
    assert rows[1].label == "gone"


def test_markdown_table(single):
    run_dir, summary = single
    rows = compare([run_dir, run_dir])
    lines = to_markdown(rows).splitlines()
    assert len(lines) == 2 + len(rows)
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == [column.header for column in COLUMNS]
    cells = dict(zip(header, (cell.strip() for cell in lines[2].strip("|").split("|")), strict=True))
    assert cells["lost"] == str(summary.classes["lost"])
    assert cells["p95 end to end"] == fmt_seconds(summary.overall.latency["end_to_end"].p95)
    assert cells["verdict"] == "did not hold"


def test_html_fragment_and_page(single):
    run_dir, summary = single
    rows = compare([run_dir])
    fragment = to_html(rows)
    assert fragment.startswith('<div class="scroll">') and "<html" not in fragment
    table = HtmlTables(fragment).tables[0]
    assert table[0][1] == [column.header for column in COLUMNS]
    assert table[1][1][COLUMNS.index(next(c for c in COLUMNS if c.header == "lost"))] == str(summary.classes["lost"])
    assert '<td class="fail">did not hold</td>' in fragment
    page = to_html_page(rows)
    assert page.startswith("<!DOCTYPE html>") and fragment in page


def test_write_comparison(tmp_path, single):
    run_dir, _ = single
    rows = compare([run_dir])
    markdown, page = write_comparison(rows, tmp_path / "out")
    assert markdown.read_text() == to_markdown(rows)
    assert page.read_text() == to_html_page(rows)
    table = list(csv.DictReader((tmp_path / "out" / "comparison.csv").open(newline="")))
    data = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert len(table) == len(data) == 1
    assert table[0]["lost"] == str(rows[0].lost) and data[0]["lost"] == rows[0].lost
    assert table[0]["held"] == "False" and data[0]["held"] is False
    assert data[0]["throughput_drop"] == pytest.approx(rows[0].throughput_drop)
    assert set(data[0]) >= {"label", "run_id", "status", *CLASSES, "success_ratio", "verdict", "held"}
