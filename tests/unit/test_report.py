"""The run report on real run directories built from synthetic ledgers and the real checker.

The builders here (make_run, make_matrix, HtmlTables) are shared with test_compare.py and
test_report_browser.py.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from chaoslab.analysis.checker import CLASSES, check
from chaoslab.analysis.run_dir import write_check
from chaoslab.ledger import LedgerWriter, read_records
from chaoslab.report.report import (
    FAULT_COLOUR,
    FIGURE_DPI,
    FIGURE_SIZE,
    FIGURES,
    FIGURES_DIR,
    ID_LIST_LIMIT,
    NODE_FIGURES,
    REPORT_FILE,
    WHOLE_RUN,
    Timebase,
    binned_quantiles,
    busy_time,
    draw_figures,
    load_run,
    write_matrix_report,
    write_report,
)
from tests.figure_view import Band, FigureView

T0 = 1_700_000_000.0
PHASES = (("baseline", 0.0, 20.0), ("fault", 20.0, 40.0), ("recovery", 40.0, 70.0), ("drain", 70.0, 75.0))
RUN_END = 75.0
FAULT = {"fault": "worker-kill", "target": "workers[0]", "start": 22.0, "end": 32.0, "params": {"signal": "KILL"}}
RUN_TIMES = {"noop": 0.004, "sleep": 0.2}
ALL_FIGURES = (*FIGURES, *NODE_FIGURES)


# --- synthetic runs -------------------------------------------------------------------------


class History:
    """Synthetic ledgers: a publish ledger and one per worker node, and the true class of every id."""

    def __init__(self) -> None:
        self.publish: list[dict] = []
        self.nodes: dict[str, list[dict]] = {"worker-1": [], "worker-2": []}
        self.truth: Counter[str] = Counter()

    def published(self, task_id, kind, t, outcome="ok"):
        error = None if outcome == "ok" else "OperationalError"
        self.publish.append(
            {"type": "publish", "id": task_id, "kind": kind, "t": T0 + t, "outcome": outcome, "error": error}
        )

    def executed(self, task_id, kind, node, start, end=None, outcome="success", attempt=0, redelivered=False):
        common = {"id": task_id, "kind": kind, "node": node, "pid": 100 + int(node[-1]), "attempt": attempt}
        self.nodes[node].append(
            {"type": "start", **common, "redelivered": redelivered, "received": None, "t": T0 + start}
        )
        if end is not None:
            error_type = None if outcome == "success" else "RuntimeError"
            self.nodes[node].append(
                {"type": "end", **common, "t": T0 + end, "outcome": outcome, "error_type": error_type}
            )

    def records(self):
        return [*self.publish, *(record for records in self.nodes.values() for record in records)]

    def alive(self) -> None:
        """The alive records collection appends: each node's worker process still runs."""
        for node, records in self.nodes.items():
            pid = 100 + int(node[-1])
            records.append({"type": "alive", "node": node, "pids": [pid], "t": T0 + RUN_END})


def synthetic_history(rate=10.0, until=66.0, fault=True, lost_every=3, kinds=("noop", "sleep")):
    """Tasks at *rate*/s; during the fault window worker-1's tasks are lost (every
    *lost_every*-th) or run again on worker-2 (redelivery); some fail, one publish fails,
    one execution is still running at the end (pending)."""
    history = History()
    for i in range(int(rate * until)):
        t = i / rate
        task_id, kind = f"task-{i:05d}", kinds[i % len(kinds)]
        node = ("worker-1", "worker-2")[(i // 2) % 2]
        in_fault = fault and FAULT["start"] <= t < FAULT["end"]
        wait = 2.0 if in_fault else 0.05
        start = t + wait
        end = start + RUN_TIMES.get(kind, 0.01)
        if i == 7:
            history.published(task_id, kind, t, outcome="error")
            history.truth["publish_failed"] += 1
            continue
        history.published(task_id, kind, t)
        if in_fault and node == "worker-1" and i % lost_every == 0:
            history.truth["lost"] += 1
        elif in_fault and node == "worker-1":
            history.executed(task_id, kind, "worker-1", start)  # killed mid-run
            history.executed(task_id, kind, "worker-2", start + 5, end + 5, redelivered=True)
            history.truth["duplicated_completed"] += 1
        elif i == 600:
            history.executed(task_id, kind, node, start)
            history.truth["pending"] += 1
        elif i % 97 == 5:
            history.executed(task_id, kind, node, start, end, outcome="failure")
            history.truth["failed"] += 1
        else:
            history.executed(task_id, kind, node, start, end)
            history.truth["completed"] += 1
    history.alive()
    return history


def write_ledgers(run_dir: Path, history: History) -> list[Path]:
    ledgers = run_dir / "ledgers"
    ledgers.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, records in (("publish", history.publish), *history.nodes.items()):
        path = ledgers / f"{name}.jsonl"
        with LedgerWriter(path, fsync="never") as writer:
            for record in records:
                writer.write(record)
        paths.append(path)
    return paths


def verdict_for(summary):
    lost = summary.classes["lost"]
    ratio = summary.overall.success_ratio.get("noop", 0.0)
    conditions = [
        {"figure": "lost", "condition": "== 0", "actual": lost, "holds": lost == 0},
        {"figure": "success_ratio[noop]", "condition": ">= 0.5", "actual": ratio, "holds": ratio >= 0.5},
    ]
    return {"passed": all(c["holds"] for c in conditions), "conditions": conditions}


def make_run(
    run_dir: Path,
    history: History | None = None,
    *,
    status="completed",
    faults=(FAULT,),
    scenario="worker-kill",
    cell="",
    run_id=None,
    verdict=True,
    phases=PHASES,
    run_end=RUN_END,
):
    """A run directory as the runner leaves it: run.json, ledgers, summary.json, tasks.csv, executions.csv,
    verdict.json."""
    history = synthetic_history() if history is None else history
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = write_ledgers(run_dir, history)
    phase_list = [{"name": name, "start": T0 + start, "end": T0 + end} for name, start, end in phases]
    fault_list = [{**fault, "start": T0 + fault["start"], "end": T0 + fault["end"]} for fault in faults]
    summary = check(read_records(paths), phase_list, fault_list, T0 + run_end)
    write_check(summary, run_dir)
    run = {
        "run_id": run_id or run_dir.name,
        "scenario": scenario,
        "cell": cell,
        "status": status,
        "started": T0,
        "ended": T0 + run_end,
        "phases": phase_list,
        "faults": fault_list,
        "versions": {"celery": "5.7.0", "redis-server": "7.0.15"},
        "settings": {"task_acks_late": True, "worker_prefetch_multiplier": 1},
    }
    (run_dir / "run.json").write_text(json.dumps(run, indent=2))
    if verdict:
        (run_dir / "verdict.json").write_text(json.dumps(verdict_for(summary), indent=2))
    return run_dir, summary


CELLS = {"acks_late-on": 3, "acks_late-off": 2}
"""Matrix cells and the lost_every of each cell's history (different figures per cell)."""


def make_matrix(parent: Path, status="completed", cells=CELLS):
    """A matrix run: parent run.json listing the cells, one run directory per cell."""
    parent.mkdir(parents=True, exist_ok=True)
    summaries = {}
    for label, lost_every in cells.items():
        _, summaries[label] = make_run(
            parent / "cells" / label, synthetic_history(lost_every=lost_every), cell=label, run_id=f"m1-{label}"
        )
    run = {"run_id": "m1", "scenario": "worker-kill", "status": status, "cells": list(cells)}
    (parent / "run.json").write_text(json.dumps(run))
    return parent, summaries


@dataclass
class ShownFigure:
    """A <figure> of a page: its id, its image's alt text and source, and its caption."""

    id: str
    alt: str = ""
    src: str = ""
    caption: str = ""


class HtmlTables(HTMLParser):
    """Every <table> of a page as rows of (row class, [cell texts]); also <img> sources and <figure>s."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tables: list[list[tuple[str | None, list[str]]]] = []
        self.images: list[str] = []
        self.figures: list[ShownFigure] = []
        self._cell: list[str] | None = None
        self._caption: list[str] | None = None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append((attributes.get("class"), []))
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(attributes.get("src") or "")
            if self.figures:
                self.figures[-1].alt, self.figures[-1].src = attributes.get("alt") or "", self.images[-1]
        elif tag == "figure":
            self.figures.append(ShownFigure(attributes.get("id") or ""))
        elif tag == "figcaption":
            self._caption = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1][1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "figcaption" and self._caption is not None:
            self.figures[-1].caption = "".join(self._caption).strip()
            self._caption = None

    def handle_data(self, data):
        for collecting in (self._cell, self._caption):
            if collecting is not None:
                collecting.append(data)

    def table_with(self, header: str) -> list[tuple[str | None, list[str]]]:
        return next(table for table in self.tables if table and header in table[0][1])


# --- figures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    run_dir, summary = make_run(tmp_path_factory.mktemp("runs") / "run-1")
    page = write_report(run_dir)
    return run_dir, summary, page, page.read_text()


def views(run_dir: Path) -> dict[str, FigureView]:
    """What each figure of the run's report shows, by name."""
    return {name: FigureView.of(figure) for name, figure in draw_figures(load_run(run_dir)).items()}


@pytest.fixture(scope="module")
def figures(reported) -> dict[str, FigureView]:
    return views(reported[0])


OVER_TIME = [spec.name for spec in ALL_FIGURES if spec.over_time]
FIGURE_WORDS = {
    "throughput": ("completions/s", ["noop", "sleep", "all kinds"]),
    "run_time": ("mean run time (s)", ["noop", "sleep"]),
    "success_ratio": ("share of tasks published", ["success ratio", "failure ratio", "never finished"]),
    "in_flight": ("executions", ["worker-1", "worker-1, never ended", "worker-2"]),
    "execution_time": ("executions", ["noop", "noop, started in a fault", "sleep", "sleep, started in a fault"]),
    "queue_wait": ("queue wait (s)", ["p50", "p95", "max"]),
    "node_cpu": ("CPUs", []),
    "node_memory": ("MiB", []),
    "node_network": ("kB/s", []),
    "node_retransmits": ("segments/s", []),
}
"""Each figure's y axis label and legend entries (besides the fault window's) for the synthetic run."""


def test_every_figure_has_its_title_axis_labels_and_legend(figures):
    assert list(figures) == [spec.name for spec in ALL_FIGURES]
    for spec in ALL_FIGURES:
        view, (ylabel, legend) = figures[spec.name], FIGURE_WORDS[spec.name]
        assert view.title == spec.title
        assert view.xlabel == ("seconds since run start" if spec.over_time else "run time of an execution (s)")
        assert view.ylabel == ylabel, spec.name
        assert [text for text, _ in view.legend] == ["fault window"] * spec.over_time + legend, spec.name
        for text, colour in view.legend:  # a line's key in the legend looks like the line
            if text in view.curves:
                assert colour == view.curves[text].colour, (spec.name, text)


def test_fault_window_is_shaded_and_named_in_every_figure_over_time(figures):
    for name in OVER_TIME:
        view = figures[name]
        assert view.bands == [Band(FAULT["start"], FAULT["end"], FAULT_COLOUR)], name
        assert ("fault window", FAULT_COLOUR) in view.legend, name
        assert view.annotations == [("worker-kill on workers[0]", FAULT["start"])], name
    histogram = figures["execution_time"]
    assert (histogram.bands, histogram.annotations, histogram.top_labels) == ([], [], [])


def test_phases_are_marked_and_named_on_the_time_axis(figures):
    boundaries = sorted({bound for _, start, end in PHASES for bound in (start, end)})
    named = [(name, (start + end) / 2) for name, start, end in PHASES]
    for name in OVER_TIME:
        view = figures[name]
        assert view.xlim == (0.0, RUN_END), name
        assert view.marks == boundaries, name
        assert view.top_labels == named, name


def test_throughput_adds_up_to_the_completions_per_kind(reported, figures):
    _, summary, _, _ = reported
    curves = figures["throughput"].curves
    for kind in RUN_TIMES:  # 1 s bins: completions/s summed over the bins is the number of completions
        completed = [t for t in summary.tasks if t.kind == kind and t.completed_at is not None
                     and t.completed_at <= T0 + RUN_END]
        assert curves[kind].y.sum() == pytest.approx(len(completed)), kind
    assert np.allclose(curves["all kinds"].y, curves["noop"].y + curves["sleep"].y)
    assert curves["noop"].colour != curves["sleep"].colour


def test_success_ratio_shares_are_the_classes_of_the_tasks_published(reported, figures):
    _, summary, _, _ = reported
    curves = figures["success_ratio"].curves
    published = Timebase.for_duration(RUN_END).sums(np.array([t.publish_t - T0 for t in summary.tasks]))
    shares = {label: curves[label].y for label in ("success ratio", "failure ratio", "never finished")}
    assert np.allclose(sum(shares.values())[published > 0], 1.0)
    tasks = {label: round(float(np.nansum(share * published))) for label, share in shares.items()}
    classes = summary.classes
    assert tasks == {"success ratio": classes["completed"] + classes["duplicated_completed"],
                     "failure ratio": classes["failed"],
                     "never finished": classes["lost"] + classes["pending"] + classes["publish_failed"]}


def test_in_flight_has_one_line_per_node_adding_up_to_its_busy_time(reported, figures):
    _, summary, _, _ = reported
    curves = figures["in_flight"].curves
    for node in ("worker-1", "worker-2"):  # 1 s bins: the mean in flight summed over the bins is the busy time
        busy = sum(e.end - e.start for e in summary.executions if e.node == node and e.end is not None)
        assert curves[node].y.sum() == pytest.approx(busy), node
        assert curves[node].style == "-"
    assert curves["worker-1"].colour != curves["worker-2"].colour
    never_ended = curves["worker-1, never ended"]
    assert (never_ended.colour, never_ended.style) == (curves["worker-1"].colour, "--")
    assert never_ended.y.sum() == summary.classes["duplicated_completed"] + summary.classes["pending"]


def test_run_time_and_queue_wait_show_each_kinds_time_and_the_faults_wait(figures):
    run_time = figures["run_time"].curves
    for kind, seconds in RUN_TIMES.items():
        assert np.allclose(run_time[kind].y[np.isfinite(run_time[kind].y)], seconds, rtol=1e-3), kind
    waits = figures["queue_wait"].curves
    in_fault = (waits["max"].x > FAULT["start"]) & (waits["max"].x < FAULT["end"])
    assert np.allclose(waits["max"].y[in_fault], 2.0)
    before = waits["max"].x < FAULT["start"]
    assert np.allclose(waits["max"].y[before][np.isfinite(waits["max"].y[before])], 0.05)
    started = np.isfinite(waits["max"].y)
    p50, p95, top = (waits[label].y[started] for label in ("p50", "p95", "max"))
    assert (p50 <= p95).all() and (p95 <= top).all()


def test_figure_files_are_the_figures_drawn(reported):
    """Each PNG shows what the figure holds: the same pixels as the drawn figure, at the figure's size."""
    run_dir, _, _, _ = reported
    assert sorted(path.name for path in (run_dir / FIGURES_DIR).iterdir()) == sorted(
        f"{spec.name}.png" for spec in ALL_FIGURES)
    size = (round(FIGURE_SIZE[1] * FIGURE_DPI), round(FIGURE_SIZE[0] * FIGURE_DPI))
    for name, figure in draw_figures(load_run(run_dir)).items():
        figure.canvas.draw()
        drawn = np.asarray(figure.canvas.buffer_rgba())  # type: ignore[attr-defined]
        saved = (mpimg.imread(run_dir / FIGURES_DIR / f"{name}.png") * 255).round().astype(np.uint8)
        assert saved.shape[:2] == size, name
        assert np.array_equal(saved, drawn), name


# --- the page -------------------------------------------------------------------------------


def test_every_figure_is_embedded_with_its_title_and_caption(reported):
    run_dir, _, _, text = reported
    shown = HtmlTables(text).figures
    assert [figure.id for figure in shown] == [f"figure-{spec.name}" for spec in ALL_FIGURES]
    for figure, spec in zip(shown, ALL_FIGURES, strict=True):
        assert figure.alt == spec.title
        assert figure.caption == f"{spec.title}: {spec.caption}"
        data = figure.src.removeprefix("data:image/png;base64,")
        assert base64.b64decode(data) == (run_dir / FIGURES_DIR / f"{spec.name}.png").read_bytes(), spec.name


def test_images_are_embedded_and_nothing_is_fetched(reported):
    _, _, page, text = reported
    assert page.name == REPORT_FILE
    images = HtmlTables(text).images
    assert len(images) == len(FIGURES) + len(NODE_FIGURES)
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r"""src=["'](?!data:)""", text)
    assert "<script" not in text.lower()
    assert not re.search(r"(href|src)=[\"']?https?:", text)
    assert "<link" not in text.lower()


def test_verdict_rows_are_shown_and_highlighted(reported):
    run_dir, _, _, text = reported
    verdict = json.loads((run_dir / "verdict.json").read_text())
    rows = HtmlTables(text).table_with("condition")
    assert rows[0][1] == ["figure", "condition", "actual", "result"]
    shown = rows[1:]
    assert [cells[:2] for _, cells in shown] == [[c["figure"], c["condition"]] for c in verdict["conditions"]]
    assert [cells[3] for _, cells in shown] == ["did not hold", "held"]
    assert [css for css, _ in shown] == ["fail", "pass"]
    assert shown[0][1][2] == str(verdict["conditions"][0]["actual"])
    assert "Hypothesis did not hold" in text
    assert "PASS" not in text and "FAILED" not in text


def class_rows(text: str) -> dict[str, list[str]]:
    """The class table: class -> [tasks, causes, meaning]."""
    rows = HtmlTables(text).table_with("meaning")
    assert rows[0][1] == ["class", "tasks", "causes", "meaning"]
    return {cells[0]: cells[1:] for _, cells in rows[1:]}


def test_class_counts_causes_and_delivery_guarantee(reported):
    _, summary, _, text = reported
    rows = class_rows(text)
    assert list(rows) == [cls.replace("_", " ") for cls in CLASSES]
    assert [rows[cls.replace("_", " ")][0] for cls in CLASSES] == [f"{summary.classes[cls]:,}" for cls in CLASSES]
    assert rows["lost"][1] == f"never delivered {summary.classes['lost']}"
    assert rows["pending"][1] == "running 1"
    truth = synthetic_history().truth
    assert {cls: summary.classes[cls] for cls in truth} == dict(truth)
    delivery = HtmlTables(text).table_with("delivery guarantee observed")
    assert delivery[1][1][1] == summary.delivery.guarantee == "none"
    assert f"lost: {summary.classes['lost']} (never delivered {summary.classes['lost']})" in text
    assert "pending at the end: 1 (running 1)" in text


def test_phase_table_has_every_phase_and_the_whole_run(reported):
    _, summary, _, text = reported
    rows = HtmlTables(text).table_with("p95 end to end")
    names = [cells[0] for _, cells in rows[1:]]
    assert names == [*(name for name, _, _ in PHASES), WHOLE_RUN]
    for (_, cells), phase in zip(rows[1:], [*summary.phases, summary.overall], strict=True):
        assert cells[3] == f"{phase.published:,}"
        assert cells[4] == f"{phase.completed:,}"
        assert cells[5] == f"{phase.throughput:.2f}/s"


def test_lost_pending_and_duplicated_ids_are_listed(reported):
    _, summary, _, text = reported
    for cls in ("lost", "pending", "duplicated_completed"):
        ids = summary.ids(cls)
        assert f"{cls.replace('_', ' ')}: {len(ids)}" in text
        assert all(task_id in text for task_id in ids[:ID_LIST_LIMIT])


def test_versions_settings_faults_and_recovery_are_shown(reported):
    _, summary, _, text = reported
    tables = HtmlTables(text)
    versions = {cells[0]: cells[1] for _, cells in tables.table_with("name")[1:]}
    assert versions["celery"] == "5.7.0"
    assert "task_acks_late" in text and "worker_prefetch_multiplier" in text
    fault = tables.table_with("fault")[1][1]
    assert fault[:6] == ["worker-kill", "workers[0]", "22.0 s", "32.0 s", "10 s", "planned"]
    recovery = tables.table_with("recovery time")[1][1]
    assert recovery[1] == summary.recovery.note


def test_completed_run_has_no_banner(reported):
    assert 'id="status-banner"' not in reported[3]


@pytest.mark.parametrize(("status", "word"), [("aborted", "ABORTED"), ("failed", "FAILED"), ("running", "NOT FINISH")])
def test_unfinished_run_shows_a_banner_with_the_error(tmp_path, status, word):
    run_dir, _ = make_run(tmp_path / "run", status=status)
    run = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**run, "error": "interrupted (SIGINT)"}))
    text = write_report(run_dir).read_text()
    banner = re.search(r'<div class="banner" id="status-banner">([^<]*)</div>', text)
    assert banner is not None
    assert word in banner.group(1)
    assert "Error: interrupted (SIGINT)" in banner.group(1)
    assert f"({status})" in text.split("</title>")[0]


def test_more_than_fifty_ids_are_cut_with_a_count(tmp_path):
    run_dir, summary = make_run(tmp_path / "run", synthetic_history(rate=40.0, lost_every=1))
    lost = summary.ids("lost")
    assert len(lost) > ID_LIST_LIMIT
    text = write_report(run_dir).read_text()
    assert f"lost: {len(lost):,} (first {ID_LIST_LIMIT} shown)" in text
    assert lost[ID_LIST_LIMIT - 1] in text
    assert lost[ID_LIST_LIMIT] not in text


def test_empty_ledgers_and_no_fault_windows(tmp_path):
    run_dir, summary = make_run(tmp_path / "empty", History(), faults=(), verdict=False)
    assert summary.tasks == []
    text = write_report(run_dir).read_text()
    shown = views(run_dir)
    for spec in FIGURES:
        assert shown[spec.name].bands == [] and shown[spec.name].annotations == [], spec.name
        assert "fault window" not in [entry for entry, _ in shown[spec.name].legend], spec.name
    said = {name: [t for t in view.texts if t.startswith("no ")] for name, view in shown.items()}
    assert said == {"throughput": ["no completions recorded"], "run_time": ["no ended executions recorded"],
                    "success_ratio": ["no published tasks recorded"], "in_flight": ["no executions recorded"],
                    "execution_time": ["no ended executions recorded"], "queue_wait": ["no started tasks recorded"],
                    **{spec.name: ["no Prometheus series recorded"] for spec in NODE_FIGURES}}
    assert "No fault windows in this run." in text
    assert "No verdict" in text
    assert [cells[0] for cells in class_rows(text).values()] == ["0"] * len(CLASSES)


def test_run_without_faults_has_no_shading(tmp_path):
    run_dir, _ = make_run(tmp_path / "calm", synthetic_history(fault=False), faults=())
    for name, view in views(run_dir).items():
        assert view.bands == [] and view.annotations == [], name
        assert "fault window" not in [entry for entry, _ in view.legend], name
        assert view.top_labels == ([(phase, (start + end) / 2) for phase, start, end in PHASES]
                                   if name in OVER_TIME else []), name


def test_missing_summary_is_checked_in_memory(tmp_path):
    run_dir, summary = make_run(tmp_path / "aborted", status="aborted")
    (run_dir / "summary.json").unlink()
    (run_dir / "tasks.csv").unlink()
    text = write_report(run_dir).read_text()
    assert [cells[0] for cells in class_rows(text).values()] == [f"{summary.classes[cls]:,}" for cls in CLASSES]
    assert "checked in memory" in text
    assert not (run_dir / "summary.json").exists()


def test_loaded_arrays_match_the_checker(reported):
    run_dir, summary, _, _ = reported
    data = load_run(run_dir)
    assert len(data.tasks.publish) == len(summary.tasks)
    completed = sorted(t.completed_at - T0 for t in summary.tasks if t.completed_at is not None)
    assert np.allclose(np.sort(data.tasks.completed[np.isfinite(data.tasks.completed)]), completed)
    assert data.executions.nodes == ["worker-1", "worker-2"]
    assert len(data.executions.start) == sum(t.executions for t in summary.tasks)
    unended = summary.classes["duplicated_completed"] + summary.classes["pending"]
    assert int(np.isnan(data.executions.end).sum()) == unended
    assert [(w.label, w.start, w.end) for w in data.faults] == [("worker-kill on workers[0]", 22.0, 32.0)]


def test_executions_are_the_ones_the_checker_wrote(tmp_path):
    """The report pairs nothing itself: it draws executions.csv, and checks the ledgers only for a run made before
    the checker wrote that file."""
    run_dir, summary = make_run(tmp_path / "run")
    from_file = load_run(run_dir).executions
    executions = run_dir / "executions.csv"
    lines = executions.read_text().splitlines()
    header = lines[0].split(",")
    node = header.index("node")
    kept = [line for line in lines[1:] if line.split(",")[node] == "worker-2"]
    executions.write_text("\n".join([lines[0], *kept]) + "\n")
    assert load_run(run_dir).executions.nodes == ["worker-2"]
    assert len(load_run(run_dir).executions.start) == len(kept)
    executions.unlink()  # a run made before executions.csv: the checker's own pairing, in memory
    again = load_run(run_dir).executions
    assert again.nodes == from_file.nodes and np.array_equal(again.start, from_file.start, equal_nan=True)
    assert np.array_equal(again.end, from_file.end, equal_nan=True)
    assert len(again.start) == len(summary.executions)


def test_an_execution_ending_after_the_run_end_is_drawn_as_never_ended(tmp_path):
    history = synthetic_history(until=10.0, fault=False)
    history.executed("late", "noop", "worker-1", RUN_END - 1.0, RUN_END + 5.0)
    history.published("late", "noop", RUN_END - 1.5)
    run_dir, summary = make_run(tmp_path / "late", history)
    late = next(e for e in summary.executions if e.id == "late")
    assert late.end == T0 + RUN_END + 5.0  # the checker keeps it
    data = load_run(run_dir)
    index = int(np.nanargmax(data.executions.start))
    assert data.executions.start[index] == pytest.approx(RUN_END - 1.0) and np.isnan(data.executions.end[index])


# --- the binned statistics ------------------------------------------------------------------


def test_bins_are_one_second_or_adaptive():
    assert np.allclose(Timebase.for_duration(75).widths, 1.0)
    long = Timebase.for_duration(3 * 3600)
    assert long.bins <= 600 and np.allclose(long.widths, 30.0)
    ragged = Timebase.for_duration(10.5)
    assert ragged.bins == 11 and ragged.edges[-1] == 10.5 and ragged.widths[-1] == 0.5


def test_binned_quantiles_are_nearest_rank_per_bin():
    rng = np.random.default_rng(1)
    times, values = rng.uniform(0, 10, 500), rng.exponential(1.0, 500)
    timebase = Timebase.for_duration(10)
    p50, p95 = binned_quantiles(timebase, times, values, (50, 95))
    for b in range(10):
        ordered = np.sort(values[(times >= b) & (times < b + 1)])
        for got, percentile in ((p50[b], 50), (p95[b], 95)):
            assert got == ordered[math.ceil(percentile / 100 * len(ordered)) - 1]
    empty = binned_quantiles(timebase, np.array([]), np.array([]), (50,))[0]
    assert np.isnan(empty).all()


def test_busy_time_integrates_executions_in_flight():
    starts, ends = np.array([0.0, 0.5, 2.0]), np.array([1.0, 1.5, 2.25])
    busy = busy_time(starts, ends, np.array([0.0, 1.0, 2.0, 3.0]))
    assert np.allclose(np.diff(busy), [1.5, 0.5, 0.25])


# --- matrix and speed -----------------------------------------------------------------------


def test_matrix_report_embeds_each_cell_and_the_comparison(tmp_path):
    parent, summaries = make_matrix(tmp_path / "m1")
    page = write_matrix_report(parent)
    text = page.read_text()
    tables = HtmlTables(text)
    comparison = tables.table_with("throughput drop")
    assert [cells[0] for _, cells in comparison[1:]] == [f"worker-kill / {label}" for label in CELLS]
    lost = comparison[0][1].index("lost")
    for (_, cells), label in zip(comparison[1:], CELLS, strict=True):
        assert cells[lost] == f"{summaries[label].classes['lost']:,}"
        assert f'href="cells/{label}/report.html"' in text
        assert (parent / "cells" / label / REPORT_FILE).exists()
    assert len(tables.images) == 2 * len(CELLS)
    assert all(src.startswith("data:image/png;base64,") for src in tables.images)
    assert all((parent / f"comparison.{ext}").exists() for ext in ("md", "html", "csv", "json"))
    assert write_report(parent) == page


def test_matrix_with_a_missing_cell_and_aborted_status(tmp_path):
    parent, _ = make_matrix(tmp_path / "m2", status="aborted", cells={"only": 3})
    run = json.loads((parent / "run.json").read_text())
    (parent / "run.json").write_text(json.dumps({**run, "cells": ["only", "never-ran"]}))
    text = write_matrix_report(parent).read_text()
    assert 'id="status-banner"' in text
    assert "No run directory for this cell" in text


def test_fifty_thousand_tasks_are_reported_quickly(tmp_path):
    run_dir, summary = make_run(tmp_path / "big", synthetic_history(rate=800.0, until=66.0))
    assert len(summary.tasks) >= 50_000
    began = time.perf_counter()
    write_report(run_dir)
    assert time.perf_counter() - began < 20.0


def test_idle_reports_draw_each_run_in_an_idle_process_and_name_failures(tmp_path):
    from chaoslab.experiment.idle_reports import IdleReports

    run_dir, _ = make_run(tmp_path / "idle")
    reports = IdleReports()
    reports(run_dir)
    reports(tmp_path / "no-such-run")
    policies = []
    for _directory, process in reports.pending:
        try:
            policies.append(os.sched_getscheduler(process.pid))
        except ProcessLookupError:  # ended already (only the one that fails fast can)
            policies.append(None)
    assert policies[0] == os.SCHED_IDLE
    failed = reports.wait()
    assert reports.pending == []
    assert (run_dir / "report.html").is_file()
    assert len(failed) == 1 and failed[0].startswith(f"{tmp_path / 'no-such-run'}: report failed (")
    assert failed[0].endswith("not a run directory)")  # the command's one-line error, not a traceback
