"""The study: its scenario files load, the plan runs each cell's repeats together, and bad input is refused
before anything runs."""

from __future__ import annotations

import itertools
import json
import shutil

import pytest

from chaoslab.experiment import study
from chaoslab.experiment.scenario import load_scenario
from chaoslab.report.study_report import fmt_duration
from tests.conftest import BIN, ROOT

STUDY = ROOT / "experiments" / "study"
SEED = STUDY / "seed"
MAIN_FILES = sorted(STUDY.glob("*.yml"))
FILES = sorted(MAIN_FILES + sorted(SEED.glob("*.yml")))  # the lab's study and the seed experiments' (a study each)
# The prototype's experiments and the faults it never tried, as the study must cover them.
REQUIRED_FAULTS = {"cpu-exhaustion", "memory-exhaustion", "network-delay", "network-loss", "network-partition",
                   "worker-kill", "worker-pause", "memory-limit", "redis-restart"}


def fault_of(scenario):
    return next((phase.fault.playbook for phase in scenario.phases if phase.fault is not None), None)


def test_the_study_covers_the_prototype_and_the_faults_it_never_tried():
    scenarios = study.load_all(FILES)
    assert {fault_of(s) for s in scenarios} >= REQUIRED_FAULTS
    assert any(fault_of(s) is None for s in scenarios), "no baseline scenario"
    persistence = {bool(s.redis.get("redis_aof")) for s in scenarios if fault_of(s) == "redis-restart"}
    assert persistence == {False, True}, "Redis restart with and without persistence"


# Faults under which when a message is acknowledged decides what happens to its task: a process dies, a worker is cut
# off from its messages, the broker restarts. Under the others nothing is redelivered (no process dies, no message
# outlives the visibility timeout), so the study runs them with early acknowledgement only, Celery's default.
ACKS_MATTER = {"worker-kill", "memory-limit", "network-partition", "redis-restart"}


@pytest.mark.parametrize("path", FILES, ids=[path.stem for path in FILES])
def test_study_scenarios_compare_acknowledgement_settings_where_they_can_matter(path):
    scenario = load_scenario(path, ROOT)
    cells = [cell.celery for _label, cell in scenario.cells()]
    assert all(cell.hypothesis for _label, cell in scenario.cells())
    acks = {cell.get("task_acks_late", False) for cell in cells}
    if fault_of(scenario) in ACKS_MATTER or fault_of(scenario) is None or path.parent.name == "seed":
        assert acks == {False, True}  # the baseline and the prototype's experiments, as it ran them, too
    else:
        assert acks == {False} and len(cells) == 1
    if fault_of(scenario) in ("worker-kill", "memory-limit"):  # where a pool process dies, reject_on_worker_lost
        late = {cell.get("task_reject_on_worker_lost", False) for cell in cells if cell.get("task_acks_late")}
        assert late == {False, True}


def test_the_seeds_compare_both_settings_under_the_faults_the_study_runs_with_one():
    scenarios = study.load_all(FILES)
    single = {fault_of(s) for s in scenarios if s.path.parent.name != "seed" and len(s.cells()) == 1}
    seeded = {fault_of(s) for s in scenarios if s.path.parent.name == "seed"}
    assert single - seeded == {"network-loss", "worker-pause"}  # neither was in the prototype


def test_the_plan_keeps_a_cells_repeats_together():
    scenarios = study.load_all([STUDY / "worker-kill.yml", STUDY / "baseline.yml"])
    runs = study.plan(scenarios, 2)
    assert [(r.scenario.name, r.repeat) for r in runs[:4]] == [
        ("worker-kill", 1), ("worker-kill", 2), ("worker-kill", 1), ("worker-kill", 2)]
    assert runs[0].path == "runs/worker-kill/task_acks_late=false/r1"
    assert runs[0].scenario.celery["task_acks_late"] is False and runs[4].scenario.celery["task_acks_late"] is True
    # the repeats of every cell, then the fault scenario's null control: its first cell once, the fault removed
    assert len(runs) == 2 * (3 + 2) + 1
    control = runs[6]
    assert (control.null_control, control.cell, control.path) == (
        True, "task_acks_late=false", "runs/worker-kill/task_acks_late=false/null")
    assert [phase.faults for phase in control.scenario.phases] == [()] * 4
    assert [phase.duration for phase in control.scenario.phases] == [p.duration for p in runs[0].scenario.phases]
    assert control.scenario.hypothesis == runs[0].scenario.hypothesis
    assert not any(run.null_control for run in runs[7:])  # the baseline has no fault: no null control
    assert len(study.plan(scenarios, 2, null_controls=False)) == 2 * (3 + 2)
    assert runs[0].planned_seconds == 6 + 10 + 6 + study.EXPECTED_DRAIN_S + study.RUN_OVERHEAD_S
    with pytest.raises(ValueError, match="repeat must be 1 or more, got 0"):
        study.plan(scenarios, 0)


@pytest.mark.parametrize("path", FILES, ids=[path.stem for path in FILES])
def test_every_fault_scenario_names_its_effect_and_a_figure_it_must_move(path):
    scenario = load_scenario(path, ROOT)
    study.check_falsifiable(scenario)
    if scenario.fault_phase is not None:
        for _label, cell in scenario.cells():
            assert {c.figure for c in cell.hypothesis} & study.EFFECT_FIGURES
            assert {c.figure for c in cell.hypothesis} - study.EFFECT_FIGURES


def test_a_hypothesis_that_cannot_fail_is_refused(tmp_path):
    text = (STUDY / "cpu-exhaustion.yml").read_text()
    without = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("  faults_not_effective:"))
    assert without != text
    (tmp_path / "no-effect.yml").write_text(without)
    with pytest.raises(ValueError, match="does not name faults_not_effective or fault_effect"):
        study.load_all([tmp_path / "no-effect.yml"])
    hypothesis = text[text.index("hypothesis:"):]
    (tmp_path / "effect-only.yml").write_text(text.replace(hypothesis, 'hypothesis:\n  faults_not_effective: 0\n'))
    with pytest.raises(ValueError, match="names no figure the fault must move"):
        study.load_all([tmp_path / "effect-only.yml"])


def test_scenario_files_and_only(tmp_path):
    assert study.scenario_files(STUDY) == MAIN_FILES  # a subdirectory is a study of its own
    assert study.scenario_files(SEED) == sorted(SEED.glob("*.yml")) and len(MAIN_FILES) < len(FILES)
    assert study.scenario_files(STUDY, ["baseline"]) == [STUDY / "baseline.yml"]
    with pytest.raises(ValueError, match="no scenario 'nope' \\(available: baseline, "):
        study.scenario_files(STUDY, ["nope"])
    with pytest.raises(ValueError, match="no scenario files"):
        study.scenario_files(tmp_path)


def test_two_files_with_one_name_are_refused(tmp_path):
    shutil.copy(STUDY / "baseline.yml", tmp_path / "a.yml")
    shutil.copy(STUDY / "baseline.yml", tmp_path / "b.yml")
    with pytest.raises(ValueError, match="scenario name 'baseline' is used by more than one file"):
        study.load_all(study.scenario_files(tmp_path))


def run_cli(*args: str):
    import subprocess

    return subprocess.run([str(BIN / "chaoslab"), "study", *args], cwd=ROOT, capture_output=True, text=True,
                          check=False)


def test_check_counts_the_runs():
    proc = run_cli("--check")
    assert proc.returncode == 0, proc.stderr
    scenarios = [load_scenario(path, ROOT) for path in MAIN_FILES]
    cells = sum(len(scenario.cells()) for scenario in scenarios)
    controls = sum(scenario.fault_phase is not None for scenario in scenarios)
    _scenarios, runs = study.planned(STUDY, 5)
    about = fmt_duration(round(study.expected_seconds(runs)))
    assert proc.stdout.strip() == (f"experiments/study: valid ({len(MAIN_FILES)} scenarios, {5 * cells + controls} "
                                   f"runs, about {about})")
    without = run_cli("--check", "--no-null-controls", "--repeat", "2")
    assert without.stdout.startswith(f"experiments/study: valid ({len(MAIN_FILES)} scenarios, {2 * cells} runs, ")


def test_a_quick_study_is_one_repeat_with_the_time_around_each_fault_shortened():
    scenarios, runs = study.planned(STUDY, 5, quick=True)
    top = MAIN_FILES
    assert [s.path for s in scenarios] == top
    assert not any(run.null_control for run in runs)
    for scenario in scenarios:  # each scenario's first and last configuration
        cells = [label for label, _cell in scenario.cells()]
        assert sorted(run.cell for run in runs if run.scenario.name == scenario.name) == sorted({cells[0], cells[-1]})
    settings = [run.scenario.celery for run in runs]
    changes = sum(1 for before, after in itertools.pairwise(settings) if before != after)
    assert changes == len({json.dumps(given, sort_keys=True) for given in settings}) - 1  # grouped by settings
    full = {s.name: s for s in study.load_all(top)}
    for scenario in scenarios:
        for quick, written in zip(scenario.phases, full[scenario.name].phases, strict=True):
            if quick.faults or quick.name == "drain":
                assert quick == written  # the fault and its timing as written; the drain ends when drained
            else:
                assert quick.duration == min(written.duration, study.QUICK_PHASE_S)
    assert any(q.duration < w.duration for s in scenarios for q, w in zip(s.phases, full[s.name].phases, strict=True))
    named, _runs = study.planned(SEED, 5, only=["seed-cpu-stress"], quick=True)
    assert [s.name for s in named] == ["seed-cpu-stress"]
    proc = run_cli("--check", "--quick")
    assert proc.stdout.startswith(f"experiments/study: valid ({len(top)} scenarios, {len(runs)} runs, about "), proc
    for extra in (["--repeat", "3"], ["--publish", "experiments/reference"]):
        refused = run_cli("--check", "--quick", *extra)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1
        assert "--quick runs one repeat and is not published" in refused.stderr


def test_a_bad_scenario_is_one_line_before_anything_runs(tmp_path):
    shutil.copy(STUDY / "baseline.yml", tmp_path / "baseline.yml")
    (tmp_path / "broken.yml").write_text((STUDY / "worker-kill.yml").read_text().replace("every: 2s", "every: 2"))
    proc = run_cli(str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"chaoslab study: {tmp_path}/broken.yml: phases[1].fault.params.every: ")
    assert "has no unit" in proc.stderr
    assert proc.stdout == ""
