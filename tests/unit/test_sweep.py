"""Sweeps: one fault parameter run at several values, crossed with the matrix (chaoslab.experiment.scenario), and
the dose-response report with each configuration's knee (chaoslab.report.dose)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from chaoslab.experiment.scenario import ScenarioError, load_scenario, to_yaml
from chaoslab.report import dose, sweep_reference
from tests.conftest import ROOT

BASE: dict[str, Any] = {
    "name": "delay-sweep",
    "load": {"rate": 5, "mix": [{"kind": "noop", "weight": 1}]},
    "phases": [{"name": "baseline", "duration": "5s"},
               {"name": "fault", "duration": "10s",
                "fault": {"playbook": "network-delay", "target": "redis", "params": {"delay": "100ms",
                                                                                   "peers": "workers"}}},
               {"name": "drain", "duration": "10s"}],
    "hypothesis": {"lost": 0},
}


def scenario(tmp_path: Path, **extra: Any):
    path = tmp_path / "sweep.yml"
    path.write_text(yaml.safe_dump({**BASE, **extra}), encoding="utf-8")
    return load_scenario(path, ROOT)


def refusal(tmp_path: Path, **extra: Any) -> str:
    with pytest.raises(ScenarioError) as err:
        scenario(tmp_path, **extra)
    assert "\n" not in str(err.value)
    return str(err.value).split(": ", 1)[1]


def test_a_sweep_runs_each_value_for_each_configuration_lowest_dose_first(tmp_path):
    swept = scenario(tmp_path, matrix={"task_acks_late": [False, True]},
                     sweep={"param": "delay", "values": ["0ms", "50ms", "1s"], "knee_p95": "2s"})
    assert (swept.sweep.doses, swept.sweep.knee_p95) == ((0.0, 0.05, 1.0), 2.0)
    cells = swept.cells()
    assert [label for label, _ in cells] == [
        "task_acks_late=false,delay=0ms", "task_acks_late=false,delay=50ms", "task_acks_late=false,delay=1s",
        "task_acks_late=true,delay=0ms", "task_acks_late=true,delay=50ms", "task_acks_late=true,delay=1s"]
    faults = [[fault.params for phase in cell.phases for fault in phase.faults] for _, cell in cells]
    # the zero dose runs without the fault (the curve's origin); the others with the value asked
    assert faults[:3] == [[], [{"delay": "50ms", "peers": "workers"}], [{"delay": "1s", "peers": "workers"}]]
    assert all(cell.sweep is None and not cell.matrix for _, cell in cells)
    assert cells[4][1].celery == {"task_acks_late": True}
    # a point's scenario file loads back as that one run
    again = tmp_path / "again.yml"
    again.write_text(to_yaml(cells[2][1]), encoding="utf-8")
    assert load_scenario(again, ROOT).phases == cells[2][1].phases
    assert [point["configuration"] for point in swept.sweep_points()] == ["task_acks_late=false"] * 3 + [
        "task_acks_late=true"] * 3


def test_a_sweep_without_a_matrix_is_one_curve(tmp_path):
    swept = scenario(tmp_path, sweep={"param": "delay", "values": ["10ms", "20ms"]})
    assert [label for label, _ in swept.cells()] == ["delay=10ms", "delay=20ms"]
    assert [point["configuration"] for point in swept.sweep_points()] == ["", ""]


@pytest.mark.parametrize(("sweep", "message"), [
    ({"param": "jitter_rate", "values": ["1ms", "2ms"]},
     "sweep.param: no fault of the fault phase takes 'jitter_rate' (they take: correlation, delay, "
     "distribution, duration, engine, jitter, peers, trigger)"),
    ({"param": "delay", "values": ["100ms", "50ms"]}, "sweep.values[1]: 50ms is not above 100ms: give the values "
                                                     "from the lowest dose up, each once"),
    ({"param": "delay", "values": ["1s", "1000ms"]}, "sweep.values[1]: 1000ms is not above 1s"),
    ({"param": "delay", "values": ["10ms", "5%"]}, "sweep.values[1].delay: "),
    ({"param": "delay", "values": ["10ms", "20"]}, "sweep.values[1].delay: "),
    ({"param": "delay", "values": ["10ms"]}, "sweep.values: 2 to 20 values, got 1"),
    ({"param": "delay", "values": ["10ms", 20]}, "sweep.values[1]: a value as the fault takes it, as text"),
    ({"param": "delay", "values": ["10ms", "20ms; reboot"]}, "sweep.values[1]: a value as the fault takes it"),
    ({"param": "delay", "values": ["10ms", "{{ 7 * 7 }}ms"]}, "sweep.values[1]: a value as the fault takes it"),
    ({"param": "delay"}, "sweep.values: missing (required)"),
    ({"param": "delay", "values": ["10ms", "20ms"], "every": "1s"}, "sweep.every: unknown key"),
])
def test_bad_sweeps_are_refused_in_one_line(tmp_path, sweep, message):
    assert refusal(tmp_path, sweep=sweep).startswith(message)


def test_a_sweep_needs_a_quantity_and_a_fault(tmp_path):
    kill = {**BASE, "phases": [BASE["phases"][0],
                               {"name": "fault", "duration": "10s", "fault": {"playbook": "worker-kill",
                                                                              "target": "workers[0]"}},
                               BASE["phases"][2]]}
    path = tmp_path / "kill.yml"
    path.write_text(yaml.safe_dump({**kill, "sweep": {"param": "mode", "values": ["main", "child"]}}))
    with pytest.raises(ScenarioError, match=r"sweep\.param: mode is not a quantity"):
        load_scenario(path, ROOT)
    no_fault = [BASE["phases"][0], BASE["phases"][2]]
    assert refusal(tmp_path, phases=no_fault, sweep={"param": "delay", "values": ["1ms", "2ms"]}).startswith(
        "sweep: a sweep varies a fault's parameter: the scenario has no fault phase")


def points(*rows: tuple[str, float, float | None, float | None]) -> list[dose.Point]:
    return [dose.Point(value, amount, value, throughput=throughput, latency={"p95": p95})
            for value, amount, throughput, p95 in rows]


def test_the_knee_is_the_lowest_dose_past_the_latency_limit_or_half_the_throughput():
    curve = points(("0ms", 0.0, 10.0, 0.2), ("50ms", 0.05, 9.0, 1.0), ("200ms", 0.2, 6.0, 2.5),
                   ("1s", 1.0, 4.0, 9.0))
    by_latency = dose.knee(curve, knee_p95=2.0)
    assert by_latency is not None and by_latency.point.value == "200ms"
    assert by_latency.why == "p95 end to end 2.5 s > 2 s"
    by_throughput = dose.knee(curve)
    assert by_throughput is not None and by_throughput.point.value == "1s"
    assert by_throughput.why == "throughput 4/s < 50% of 10/s at 0ms"
    assert dose.knee(curve[:3]) is None  # 6/s is not under half of 10/s
    assert dose.knee(points(("0ms", 0.0, None, None), ("1s", 1.0, 1.0, 1.0))) is None  # no reference throughput
    assert dose.knee([]) is None


def a_point_run(cell: Path, throughput: float, p95: float, lost: int, effect: float | None) -> None:
    cell.mkdir(parents=True)
    (cell / "summary.json").write_text(json.dumps({"phases": [
        {"name": "baseline", "throughput": 10.0, "latency": {"end_to_end": {"p95": 0.1}}},
        {"name": "fault", "throughput": throughput,
         "latency": {"end_to_end": {"p50": p95 / 2, "p95": p95, "p99": p95 * 1.2}}}]}))
    (cell / "verdict.json").write_text(json.dumps({"passed": lost == 0, "figures": {
        "lost": lost, "duplicated": 0, "failed": 0, "fault_effect": effect}}))


def a_sweep_run(parent: Path) -> Path:
    """A sweep run's directory as the runner leaves it: three delays under two settings, the last past the knee."""
    values = (("0ms", 0.0, 10.0, 0.2, 0, None), ("100ms", 0.1, 8.0, 0.9, 0, 1.01), ("1s", 1.0, 3.0, 6.0, 2, 0.98))
    sweep_points = []
    for configuration in ("task_acks_late=false", "task_acks_late=true"):
        for value, amount, throughput, p95, lost, effect in values:
            cell = f"{configuration},delay={value}"
            a_point_run(parent / "cells" / cell, throughput, p95, lost, effect)
            (parent / "cells" / cell / "tasks.csv").write_text("id\n")  # not published
            sweep_points.append({"cell": cell, "configuration": configuration, "value": value, "dose": amount})
    (parent / "run.json").write_text(json.dumps({"run_id": "run", "scenario": "s", "cells": [
        p["cell"] for p in sweep_points], "sweep": {"param": "delay", "knee_p95": 5.0, "points": sweep_points}}))
    return parent


def test_the_curves_of_a_sweep_run_are_read_from_its_cells_and_drawn(tmp_path):
    parent = a_sweep_run(tmp_path / "run")
    curves = dose.load_curves(parent)
    assert [curve.configuration for curve in curves] == ["task_acks_late=false", "task_acks_late=true"]
    first = curves[0]
    assert [point.throughput for point in first.points] == [10.0, 8.0, 3.0]
    assert first.points[1].measured == pytest.approx(0.101) and first.points[0].measured is None
    assert first.points[2].counts == {"lost": 2.0, "duplicated": 0.0, "failed": 0.0}
    assert first.knee is not None and first.knee.point.value == "1s" and first.knee.why.startswith("p95 end to end 6")
    png = dose.write_figure(curves, "delay", parent)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = dose.section_html(curves, "delay", "data:,")
    assert "task_acks_late=false: knee at 1s: p95 end to end 6 s &gt; 5 s" in html
    assert html.count('<tr class="fail">') == 2  # each configuration's point at the knee
    assert dose.load_curves(tmp_path / "nothing") == []


def test_a_published_sweep_keeps_what_its_curves_need_and_its_knees_table_is_checked(tmp_path):
    parent, reference = a_sweep_run(tmp_path / "run"), tmp_path / "reference"
    curves = sweep_reference.publish(parent, reference / "sweeps" / "delay")
    published = reference / "sweeps" / "delay"
    assert curves == dose.load_curves(parent)  # the same curves from the copy
    assert (published / "dose.png").is_file() and not list(published.rglob("tasks.csv"))
    text = sweep_reference.table(curves, "delay")
    assert text.splitlines()[:2] == ["| configuration | knee | why | delay=0ms | delay=100ms | delay=1s |",
                                     "|---|---|---|---|---|---|"]
    assert text.splitlines()[2] == ("| task_acks_late=false | 1s | p95 end to end 6 s > 5 s | 10/s, p95 0.2 s | "
                                    "8/s, p95 0.9 s | 3/s, p95 6 s, lost 2 |")
    findings = f"Before.\n<!-- knees: sweeps/delay -->\n{text}<!-- /knees -->\nAfter.\n"
    assert sweep_reference.stale_tables(findings, reference) == []
    changed = findings.replace("| 1s | p95", "| 100ms | p95", 1)
    assert sweep_reference.stale_tables(changed, reference) == [
        "knees: sweeps/delay: the table is not what the published runs give (python -m "
        f"chaoslab.report.sweep_reference --table {published})"]
    assert sweep_reference.stale_tables(findings.replace("sweeps/delay", "sweeps/none"), reference) == [
        "knees: sweeps/none: no published sweep there"]
    with pytest.raises(ValueError, match="not a sweep run"):
        sweep_reference.publish(tmp_path / "nothing", tmp_path / "out")
