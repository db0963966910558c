"""The run's figures: defined once, measured once by the checker's output, and read the same everywhere."""

from __future__ import annotations

import json

import pytest

from chaoslab.analysis import run_dir as run_files
from chaoslab.analysis import verdict
from chaoslab.analysis.figures import NAMES, UNIT_OF, UNITS, VOCABULARY, fault_phase, measure, throughput_drop
from chaoslab.experiment.scenario import FIGURES, Condition
from chaoslab.report.compare import compare
from chaoslab.report.study_report import load_repeat
from tests.conftest import ROOT
from tests.unit.test_report import make_run

# the fault phase is the third, and named as no other module guesses
PHASES = (("baseline", 0.0, 15.0), ("ramp", 15.0, 20.0), ("kill", 20.0, 40.0), ("recovery", 40.0, 70.0),
          ("drain", 70.0, 75.0))
SHOWN = ("success_ratio", "p95_end_to_end", "throughput_baseline", "throughput_fault", "throughput_drop",
         "recovery_time")


def test_throughput_drop():
    assert throughput_drop(10.0, 4.0) == pytest.approx(0.6)
    assert throughput_drop(None, 4.0) is None
    assert throughput_drop(0.0, 4.0) is None


def test_every_figure_has_a_unit_and_a_meaning_and_a_hypothesis_may_name_it():
    assert len(set(NAMES)) == len(VOCABULARY)
    assert all(figure.unit in UNITS and figure.meaning for figure in VOCABULARY)
    assert FIGURES == UNIT_OF


def test_the_docs_name_every_figure():
    text = (ROOT / "docs" / "experiments.md").read_text(encoding="utf-8")
    assert [name for name in NAMES if f"`{name}`" not in text and not name.startswith(("p50_", "p95_", "p99_"))] == []


def test_the_fault_phase_of_an_older_summary_is_found_by_name_else_by_overlap():
    phases = [{"name": "baseline", "start": 0, "end": 10, "throughput": 4.0},
              {"name": "under-kill", "start": 10, "end": 20, "throughput": 1.0},
              {"name": "after", "start": 20, "end": 30, "throughput": 3.0}]
    faults = [{"start": 12, "end": 25}]
    assert fault_phase({"phases": phases, "faults": faults})["name"] == "under-kill"
    assert fault_phase({"phases": [*phases, {"name": "fault", "start": 30, "end": 40}], "faults": faults})["name"] \
        == "fault"
    assert fault_phase({"phases": phases, "faults": []}) is None
    older = measure({"phases": phases, "faults": faults, "classes": {"lost": 1}}, None)
    assert older["throughput_drop"] == pytest.approx(0.75) and older["lost"] == 1.0


def test_a_figure_is_the_same_in_the_verdict_the_comparison_and_the_study_report(tmp_path):
    """A run whose fault phase is neither the second phase nor named fault: every reader takes the figures the
    checker wrote, so none of them guesses the fault phase its own way."""
    run_dir, summary = make_run(tmp_path / "study" / "runs" / "worker-kill" / "default" / "r1", phases=PHASES,
                                verdict=False)
    written = json.loads((run_dir / run_files.SUMMARY_FILE).read_text())["figures"]
    assert written["throughput_fault"] == summary.fault_throughput != summary.phases[1].throughput
    assert written["throughput_drop"] > 0 and written["success_ratio"] is not None
    _, judgements = verdict.judge([Condition(name, "<=", 1e9, "<= 1e9") for name in SHOWN],
                                  run_files.figures(run_dir))
    (row,) = compare([run_dir])
    repeat = load_repeat(tmp_path / "study", {"path": "runs/worker-kill/default/r1", "repeat": 1})
    for judgement in judgements:
        name = judgement.figure
        assert judgement.actual == getattr(row, name) == repeat.figures[name] == written[name], name


def test_the_fault_phase_is_set_against_the_baseline_overall_and_per_kind():
    """cpu tasks take 1 s in the baseline and 3 s in the fault phase; noop tasks take 0.1 s in both; one memory task
    of the fault phase fails. The ratios say by how much the fault phase's tasks were slower, kind by kind."""
    from tests.unit.test_checker import alive, end, pub, run, start

    records = [alive("w1", (1, None))]
    for i, (t, cpu_run) in enumerate([(t, 1.0) for t in range(0, 30, 3)] + [(t, 3.0) for t in range(30, 60, 3)]):
        records += [pub(f"c{i}", t, kind="cpu"), start(f"c{i}", t, kind="cpu"), end(f"c{i}", t + cpu_run, kind="cpu")]
        records += [pub(f"n{i}", t + 1, kind="noop"), start(f"n{i}", t + 1), end(f"n{i}", t + 1.1)]
    records += [pub("m1", 40, kind="memory"), start("m1", 40, kind="memory"),
                end("m1", 41, "failure", kind="memory")]
    values = measure(run(records).to_dict(), None)
    assert values["p95_run_time_ratio.cpu"] == pytest.approx(3.0)
    assert values["p95_run_time_ratio.noop"] == pytest.approx(1.0)
    assert values["mean_run_time_baseline.cpu"] == pytest.approx(1.0)
    assert values["mean_run_time_fault.cpu"] == pytest.approx(3.0)
    assert values["p95_run_time_ratio"] == pytest.approx(3.0)  # the slowest tenth are cpu tasks in both phases
    assert values["mean_run_time_baseline"] == pytest.approx(0.55)
    assert values["success_ratio.cpu"] == 1.0 and values["success_ratio.memory"] == 0.0
    assert values["p95_run_time_ratio.memory"] is None  # none in the baseline: no ratio
    assert values["throughput_baseline.noop"] == pytest.approx(10 / 30)
    assert values["throughput_fault.cpu"] == pytest.approx(9 / 30)  # the last one ends as the phase does


def test_a_hypothesis_names_per_kind_figures_and_multiples(tmp_path):
    from chaoslab.experiment.scenario import ScenarioError, _hypothesis

    (condition,) = _hypothesis({"p95_run_time_ratio.cpu": ">= 1.5"}, "hypothesis")
    assert (condition.figure, condition.op, condition.value) == ("p95_run_time_ratio.cpu", ">=", 1.5)
    for bad, message in (({"p95_run_time_ratio.gpu": ">= 1"}, "unknown figure"),
                         ({"lost.cpu": 0}, "unknown figure"),
                         ({"success_ratio.cpu": ">= 1.5"}, "<= 1"),
                         ({"p95_run_time_ratio": ">= -1"}, ">= 0")):
        with pytest.raises(ScenarioError, match=message):
            _hypothesis(bad, "hypothesis")
