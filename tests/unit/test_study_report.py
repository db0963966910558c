"""The study report over synthetic study directories (study.json and per-run JSON files)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from chaoslab.analysis.checker import CLASSES
from chaoslab.report import study_report
from chaoslab.report.compare import MISSING, fmt_count, fmt_rate, fmt_ratio
from chaoslab.report.study_report import (
    Agreement,
    agreement,
    agreement_text,
    config_label,
    fmt_number,
    fmt_spread,
    load_study,
    main,
    publish,
    spread,
    study_passed,
    to_html,
    to_markdown,
    write_figures,
    write_study_report,
)

ACKS = "task_acks_late=true,task_reject_on_worker_lost=false"
NO_ACKS = "task_acks_late=false,task_reject_on_worker_lost=false"
CLASS_NAMES = CLASSES
REPORT_FILES = ("study.md", "study.html", "figures/cpu-exhaustion.png", "figures/baseline.png")


def figures(**overrides):
    """Every hypothesis figure, as verdict.json holds them."""
    values = {
        **dict.fromkeys(CLASSES, 0.0), "completed": 600.0, "duplicated": 0.0, "never_completed": 0.0,
        "unknown": 0.0, "success_ratio": 1.0, "throughput": 10.0, "throughput_drop": 0.2, "recovery_time": 3.5,
    }
    for latency in ("queue_wait", "run_time", "end_to_end"):
        values.update({f"p50_{latency}": 0.01, f"p95_{latency}": 0.05, f"p99_{latency}": 0.09})
    values.update(overrides)
    return values


def run(scenario, cell, repeat, exit=0, passed=True, files=("run", "summary", "verdict"), verdict_figures=True,
        guarantee="exactly-once", **overrides):
    """One entry of a synthetic study: study.json's runs entry plus what its run directory holds."""
    return {
        "scenario": scenario, "cell": cell, "repeat": repeat, "exit": exit, "passed": passed, "files": files,
        "verdict_figures": verdict_figures, "guarantee": guarantee, "figures": figures(**overrides),
    }


def summary_for(spec):
    values = spec["figures"]
    end_to_end = {"p50": values["p50_end_to_end"], "p95": values["p95_end_to_end"], "p99": values["p99_end_to_end"]}
    baseline = 12.0
    return {
        "classes": {name: int(value) for name, value in values.items() if name in (*CLASS_NAMES, "stuck")},
        "delivery": {"guarantee": spec["guarantee"], "unfinished": int(values["lost"]), "redelivered": 0,
                     "pending": 0},
        "recovery": {"time_s": values["recovery_time"], "note": "recovered"},
        "overall": {"throughput": values["throughput"], "latency": {"end_to_end": end_to_end}},
        "phases": [
            {"name": "baseline", "throughput": baseline},
            {"name": "fault", "throughput": baseline * (1 - values["throughput_drop"])},
        ],
    }


def write_run(run_dir: Path, spec, started: float) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    files = spec["files"]
    if "run" in files:
        run_json = {
            "run_id": run_dir.name, "scenario": spec["scenario"], "cell": spec["cell"],
            "status": "completed" if spec["exit"] in (0, 1) else "aborted", "started": started,
            "ended": started + 60, "phases": [], "faults": [], "versions": {}, "settings": {}, "error": "",
        }
        (run_dir / "run.json").write_text(json.dumps(run_json))
    if "summary" in files:
        (run_dir / "summary.json").write_text(json.dumps(summary_for(spec)))
    if "verdict" in files:
        verdict = {"passed": spec["passed"], "conditions": [{"figure": name, "holds": False}
                                                            for name in spec.get("failed", ())]}
        if spec["verdict_figures"]:
            verdict["figures"] = spec["figures"]
        (run_dir / "verdict.json").write_text(json.dumps(verdict))
    for name in ("scenario.yml", "tasks.csv", "report.html", "ledgers/publisher.jsonl", "figures/throughput.png"):
        if name in files:
            (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (run_dir / name).write_text(f"{name} of {run_dir.name}\n")


SCENARIOS = [
    {"name": "cpu-exhaustion", "file": "experiments/study/cpu-exhaustion.yml", "description": "Burn the CPUs.",
     "fault": "cpu-exhaustion", "target": "workers[0]", "params": {"workers": 2},
     "hypothesis": {"lost": "0", "success_ratio": ">= 0.99"}},
    {"name": "baseline", "file": "experiments/study/baseline.yml", "description": "No fault.",
     "fault": None, "target": None, "params": {}, "hypothesis": {}},
]


def make_study(root: Path, runs, status="completed", scenarios=SCENARIOS) -> Path:
    """A study directory: study.json and one run directory per entry of *runs*."""
    entries = []
    for index, spec in enumerate(runs):
        cell_dir = spec["cell"] or "default"
        last = "null" if spec.get("null_control") else f"r{spec['repeat']}"
        path = f"runs/{spec['scenario']}/{cell_dir}/{last}"
        if spec["files"] is not None:
            write_run(root / path, spec, 1795615000.0 + 100 * index)
        entries.append({
            "scenario": spec["scenario"], "cell": spec["cell"], "settings": spec.get("settings", {}),
            "repeat": spec["repeat"],
            "path": path, "exit": spec["exit"], "seconds": 61.2, "null_control": bool(spec.get("null_control")),
        })
    study = {
        "study_id": "20261125-200000-study", "source": "experiments/study", "repeat": 2,
        "started": 1795615000.0, "ended": 1795617000.0, "status": status,
        "machine": {"hostname": "h", "cpus": 2, "memory_gib": 23.5, "kernel": "6.1.0", "os": "Debian 12"},
        "versions": {"celery": "5.6.0", "kombu": "5.7.0", "redis": "7.0.15", "python": "3.11.2",
                     "project_commit": "abc1234"},
        "scenarios": scenarios, "runs": entries,
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "study.json").write_text(json.dumps(study, indent=2))
    return root


def good_runs():
    return [
        run("cpu-exhaustion", ACKS, 1, throughput=9.0, success_ratio=0.969),
        run("cpu-exhaustion", NO_ACKS, 1, throughput=9.5, lost=3, success_ratio=0.995),
        run("cpu-exhaustion", ACKS, 2, throughput=9.3, success_ratio=0.981),
        run("cpu-exhaustion", NO_ACKS, 2, throughput=9.6, lost=5, success_ratio=0.992),
        run("baseline", "", 1, throughput=20.0),
        run("baseline", "", 2, throughput=20.5),
    ]


@pytest.fixture
def study_dir(tmp_path):
    return make_study(tmp_path / "study", good_runs())


def group_of(study, scenario, cell):
    return next(g for g in study.groups if (g.scenario, g.cell) == (scenario, cell))


def report_bytes(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in REPORT_FILES}


# ---------------------------------------------------------------------------------------
# Loading


def test_groups_in_order_of_first_run(study_dir):
    study = load_study(study_dir)
    assert [(g.scenario, g.cell) for g in study.groups] == [
        ("cpu-exhaustion", ACKS), ("cpu-exhaustion", NO_ACKS), ("baseline", "")]
    acks = study.groups[0]
    assert [r.repeat for r in acks.repeats] == [1, 2]
    assert acks.repeats[0].path == f"runs/cpu-exhaustion/{ACKS}/r1"
    assert (acks.repeats[0].exit, acks.repeats[0].passed, acks.repeats[0].status) == (0, True, "completed")
    assert acks.repeats[1].figures["throughput"] == 9.3
    assert acks.repeats[0].delivery == "exactly-once"
    assert [s.name for s in study.scenarios] == ["cpu-exhaustion", "baseline"]
    assert (study.study_id, study.status, study.repeat) == ("20261125-200000-study", "completed", 2)


def test_config_labels():
    assert config_label(ACKS) == "acks_late=true, reject_on_worker_lost=false"
    assert config_label("worker_prefetch_multiplier=1,task_time_limit=30") == "prefetch=1, task_time_limit=30"
    assert config_label("") == "default"


def test_scenario_only_in_runs_gets_a_section(tmp_path):
    study = load_study(make_study(tmp_path / "s", [run("extra", "", 1)], scenarios=SCENARIOS[:1]))
    assert [s.name for s in study.scenarios] == ["cpu-exhaustion", "extra"]
    markdown = to_markdown(study)
    assert "## extra" in markdown
    assert "No runs of this scenario" in markdown  # cpu-exhaustion never ran


# ---------------------------------------------------------------------------------------
# Spread


def test_spread_formatting():
    assert fmt_spread(spread([0.969, 0.981]), fmt_ratio) == "97.50 % (96.90 %\u201398.10 %)"
    assert fmt_spread(spread([8.0, 8.0]), fmt_rate) == "8.00/s"
    assert fmt_spread(spread([0.5]), fmt_ratio) == "50.00 %"
    assert fmt_spread(spread([0.0, 3.0]), fmt_number) == "1.5 (0\u20133)"
    assert fmt_spread(spread([1200.0, 1200.0]), fmt_number) == fmt_count(1200) == "1,200"
    assert fmt_spread(spread([None, None]), fmt_rate) == MISSING
    assert fmt_spread(spread([2.0, None]), fmt_rate) == "2.00/s (+1 unknown)"
    value = spread([1.0, 2.0, 6.0])
    assert (value.mean, value.low, value.high, value.unknown) == (3.0, 1.0, 6.0, 0)


# ---------------------------------------------------------------------------------------
# Agreement and the study's verdict


def agreement_of(tmp_path, *specs):
    study = load_study(make_study(tmp_path / "a", list(specs)))
    return agreement(study.groups[0])


def repeats(count, **figures_per_repeat):
    """*count* repeats of the baseline, figure=[value per repeat] (a value repeated when one is given)."""
    return [run("baseline", "", k + 1, **{name: values[k] if isinstance(values, list) else values
                                          for name, values in figures_per_repeat.items()}) for k in range(count)]


def test_repeats_agree_when_each_figures_interval_is_within_ten_percent_of_its_mean(tmp_path):
    result = agreement_of(tmp_path, *repeats(5, throughput=[10.0, 10.2, 9.9, 10.1, 10.3],
                                             success_ratio=[0.99, 1.0, 0.995, 1.0, 0.99]))
    assert result == Agreement(True, [], 5)
    assert agreement_text(result) == "yes (5 repeats)"


def test_agreement_one_repeat(tmp_path):
    result = agreement_of(tmp_path, run("baseline", "", 1, throughput=1.0, success_ratio=None))
    assert result == Agreement(True, [], 1)
    assert agreement_text(result) == "one repeat"


def test_two_repeats_cannot_tell_for_figures_but_can_for_classes(tmp_path):
    result = agreement_of(tmp_path, run("baseline", "", 1, throughput=10.0), run("baseline", "", 2, throughput=30.0))
    assert result == Agreement(None, [], 2)
    assert agreement_text(result) == "classes only (2 repeats: too few for intervals)"
    lost_once = agreement_of(tmp_path, run("baseline", "", 1, lost=2), run("baseline", "", 2))
    assert lost_once.ok is False and lost_once.problems == ["lost in r1 (2) but not in r2"]


def test_a_wide_interval_is_a_disagreement_named_by_its_width(tmp_path):
    result = agreement_of(tmp_path, *repeats(5, throughput=[8.0, 9.5, 11.0, 8.5, 12.0]))
    # mean 9.8, s = 1.68, t(0.975, 4) = 2.776: half-width 2.09, 21 % of the mean
    assert not result.ok
    assert result.problems == ["throughput \u00b121 % (95 % interval 7.71/s\u201311.89/s)"]
    assert agreement_text(result) == "no: throughput \u00b121 % (95 % interval 7.71/s\u201311.89/s)"


def test_a_figure_near_zero_agrees_within_its_units_floor(tmp_path):
    # a success ratio of 99.6 % +- 0.6 points: far below 10 % of the mean and of 2 points, agrees
    assert agreement_of(tmp_path, *repeats(4, success_ratio=[0.99, 1.0, 1.0, 0.995])).ok
    result = agreement_of(tmp_path, *repeats(4, success_ratio=[0.6, 1.0, 0.7, 0.9]))
    assert result.problems[0].startswith("success ratio \u00b1")


def test_the_figures_a_hypothesis_names_must_agree_on_the_verdict_at_least(tmp_path):
    scenarios = [{**SCENARIOS[1], "hypothesis": {"p95_run_time": "<= 1s"}}]
    # mean 0.51 s, s = 0.49, t(0.975, 3) = 3.18: the 95 % interval reaches 1.29 s, beyond "<= 1s"
    specs = repeats(4, p95_run_time=[0.05, 0.9, 0.1, 1.0])
    study = load_study(make_study(tmp_path / "h", specs, scenarios=scenarios))
    assert study_report.agreement(study.groups[0]).ok  # the key figures alone agree
    (problem,) = study_report.group_agreement(study, study.groups[0]).problems
    assert problem.startswith("p95 run time \u00b1") and problem.endswith(", beyond the hypothesis's <= 1s)")
    assert not study_passed(study)
    # as wide (+-96 %), but the whole interval (0 s to 0.83 s) meets "<= 1s": the repeats agree on the verdict
    within = load_study(make_study(tmp_path / "w", repeats(4, p95_run_time=[0.05, 0.6, 0.1, 0.5]),
                                   scenarios=scenarios))
    assert study_report.group_agreement(within, within.groups[0]).ok and study_passed(within)
    unnamed = load_study(make_study(tmp_path / "u", repeats(4, p95_run_time=[0.05, 0.9, 0.1, 1.0])))
    assert study_report.group_agreement(unnamed, unnamed.groups[0]).ok  # a figure no hypothesis names: shown only


def test_every_class_must_agree_exactly_on_whether_it_occurred(tmp_path):
    result = agreement_of(tmp_path, run("baseline", "", 1, lost=3), run("baseline", "", 2, lost=0),
                          run("baseline", "", 3, lost=0, duplicated=1))
    assert result.problems == ["lost in r1 (3) but not in r2, r3", "duplicated in r3 (1) but not in r1, r2"]


def test_lost_in_every_repeat_agrees(tmp_path):
    assert agreement_of(tmp_path, *repeats(3, lost=[3, 7, 4])).ok


def test_unknown_figure_is_a_problem(tmp_path):
    result = agreement_of(tmp_path, run("baseline", "", 1), run("baseline", "", 2, success_ratio=None))
    assert result.problems == ["success ratio unknown in r2"]


def test_study_passed(study_dir):
    assert study_passed(load_study(study_dir))


@pytest.mark.parametrize(
    ("runs", "status"),
    [
        pytest.param([run("baseline", "", 1), run("baseline", "", 2, exit=1, passed=False)], "completed", id="exit"),
        pytest.param([run("baseline", "", 1), run("baseline", "", 2, lost=1)], "completed", id="disagree"),
        pytest.param(repeats(3, throughput=[5.0, 10.0, 20.0]), "completed", id="disagree-interval"),
        pytest.param([run("baseline", "", 1), run("baseline", "", 2)], "aborted", id="aborted"),
        pytest.param([], "completed", id="no-runs"),
    ],
)
def test_study_not_passed(tmp_path, runs, status):
    assert not study_passed(load_study(make_study(tmp_path / "s", runs, status=status)))


# ---------------------------------------------------------------------------------------
# Rendering


def test_markdown_rows(study_dir):
    markdown = to_markdown(load_study(study_dir))
    assert markdown.startswith("# Study 20261125-200000-study\n")
    assert "- started: 2026-11-25T13:56:40Z" in markdown
    assert "- duration: 33 min 20 s" in markdown
    assert "| hostname | h |" in markdown and "| project_commit | abc1234 |" in markdown
    acks_row = (
        "| cpu-exhaustion | acks_late=true, reject_on_worker_lost=false | 0 | 0 | 0 | 0 | 0 | 97.50 % "
        "(89.88 %\u2013100.00 %) | 50 ms | 20.00 % | 3.5 s | exactly-once | held | classes only (2 repeats: too few "
        "for intervals) |"
    )
    assert acks_row in markdown
    assert "| cpu-exhaustion | acks_late=false, reject_on_worker_lost=false | 4 (3\u20135) |" in markdown
    assert "| baseline | default | 0 | 0 | 0 | 0 | 0 | 100.00 % |" in markdown
    assert "| scenario | configuration | lost | pending | duplicated | failed | failed by worker |" in markdown
    assert "first edition" not in markdown
    assert "- fault: cpu-exhaustion on workers[0] (workers=2)" in markdown
    assert "- fault: none (baseline)" in markdown
    assert "`lost 0`; `success_ratio >= 0.99`" in markdown
    assert f"- acks_late=true, reject_on_worker_lost=false r2: `runs/cpu-exhaustion/{ACKS}/r2`" in markdown
    assert "![cpu-exhaustion: " in markdown and "](figures/cpu-exhaustion.png)" in markdown


def test_html_page(study_dir):
    page = to_html(load_study(study_dir))
    assert page.startswith("<!DOCTYPE html>") and page.endswith("</html>\n")
    assert "<title>Study 20261125-200000-study</title>" in page
    assert '<img alt="cpu-exhaustion: ' in page and 'src="figures/cpu-exhaustion.png"' in page
    assert '<td class="pass">held</td>' in page
    assert "report.html" not in page  # no run has a report: plain paths


def test_disagreement_shown(tmp_path):
    study = load_study(make_study(tmp_path / "s", repeats(5, throughput=[8.0, 9.5, 11.0, 8.5, 12.0])))
    assert "no: throughput \u00b121 % (95 % interval 7.71/s\u201311.89/s)" in to_markdown(study)
    assert '<td class="fail">no: throughput \u00b121 %' in to_html(study)


def test_delivery_guarantees_joined(tmp_path):
    study = load_study(make_study(tmp_path / "s", [run("baseline", "", 1), run("baseline", "", 2,
                                                                                 guarantee="at-least-once")]))
    assert "| exactly-once / at-least-once |" in to_markdown(study)


def test_rendering_is_deterministic(study_dir, tmp_path):
    study = load_study(study_dir)
    assert to_markdown(study) == to_markdown(load_study(study_dir))
    assert to_html(study) == to_html(load_study(study_dir))
    write_study_report(study_dir)
    first = report_bytes(study_dir)
    write_study_report(study_dir)
    assert report_bytes(study_dir) == first
    assert b"matplotlib" not in first["figures/cpu-exhaustion.png"]


def test_publish_and_regenerate_give_identical_bytes(study_dir, tmp_path):
    write_study_report(study_dir)
    reference = publish(study_dir, tmp_path / "reference")
    published = report_bytes(reference)
    assert published == report_bytes(study_dir)
    write_study_report(reference, tmp_path / "again")
    assert report_bytes(tmp_path / "again") == published
    assert publish(study_dir, reference) == reference  # republishing over a reference is allowed
    assert report_bytes(reference) == published


def test_publishing_a_study_keeps_what_else_the_reference_holds(study_dir, tmp_path):
    """The sweeps' curves are published into the same reference (chaoslab.report.sweep_reference): a study published
    after them must not drop them."""
    reference = publish(study_dir, tmp_path / "reference")
    curve = reference / "sweeps" / "redis-delay" / "cells" / "delay=0ms" / "summary.json"
    curve.parent.mkdir(parents=True)
    curve.write_text('{"tasks": 1}\n')
    (reference / "sweeps" / "redis-delay" / "dose.png").write_bytes(b"png")
    assert publish(study_dir, reference) == reference
    assert curve.read_text() == '{"tasks": 1}\n'
    assert (reference / "sweeps" / "redis-delay" / "dose.png").read_bytes() == b"png"
    assert (reference / "study.json").is_file() and (reference / "study.md").is_file()


def test_publish_copies_only_the_small_files(tmp_path):
    files = ("run", "summary", "verdict", "scenario.yml", "tasks.csv", "report.html", "ledgers/publisher.jsonl",
             "figures/throughput.png")
    source = make_study(tmp_path / "s", [run("baseline", "", 1, files=files)])
    reference = tmp_path / "ref"
    reference.mkdir()
    (reference / "study.json").write_text("{}")
    (reference / "stale.txt").write_text("old")
    publish(source, reference)
    run_dir = reference / "runs/baseline/default/r1"
    assert sorted(p.name for p in run_dir.iterdir()) == ["run.json", "scenario.yml", "summary.json", "verdict.json"]
    assert not (reference / "stale.txt").exists()
    assert (run_dir / "summary.json").read_bytes() == (source / "runs/baseline/default/r1/summary.json").read_bytes()
    write_study_report(source)
    link = '<a href="runs/baseline/default/r1/report.html"><code>runs/baseline/default/r1</code></a>'
    assert link in (source / "study.html").read_text()
    published = (reference / "study.html").read_text()
    assert "report.html" not in published and "<code>runs/baseline/default/r1</code>" in published


def test_publish_refuses_a_foreign_directory(study_dir, tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty"):
        publish(study_dir, foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="would delete"):
        publish(study_dir, study_dir)


def test_a_quick_study_is_never_published(study_dir, tmp_path):
    data = json.loads((study_dir / "study.json").read_text())
    (study_dir / "study.json").write_text(json.dumps({**data, "mode": "quick: a first look"}))
    assert ("mode", "quick: a first look") in study_report.header_facts(load_study(study_dir))
    with pytest.raises(ValueError, match=re.escape("was not run in full (quick: a first look): it is not published")):
        publish(study_dir, tmp_path / "reference")
    assert not (tmp_path / "reference").exists()


def test_missing_files_give_dashes(tmp_path):
    runs = [
        run("cpu-exhaustion", ACKS, 1, exit=2, files=("run",)),
        run("cpu-exhaustion", ACKS, 2, exit=2, files=None),  # no run directory at all
    ]
    study_dir = make_study(tmp_path / "s", runs, status="aborted")
    study = load_study(study_dir)
    repeats = study.groups[0].repeats
    assert [r.status for r in repeats] == ["aborted", "missing"]
    assert all(r.passed is None and r.delivery is None for r in repeats)
    markdown, page = write_study_report(study_dir)
    text = markdown.read_text()
    row = f"| cpu-exhaustion | {config_label(ACKS)} | {MISSING} | {MISSING} | {MISSING} | {MISSING} |"
    assert row in text
    assert "throughput unknown in r1, r2" in text
    assert "No runs of this scenario" in text  # baseline never ran
    assert page.is_file() and (study_dir / "figures/cpu-exhaustion.png").is_file()
    assert not study_passed(study)


def test_figures_fall_back_to_summary(tmp_path):
    study_dir = make_study(tmp_path / "s", [run("baseline", "", 1, verdict_figures=False, lost=2, throughput=7.5,
                                                throughput_drop=0.25, recovery_time=4.0)])
    repeat = load_study(study_dir).groups[0].repeats[0]
    assert repeat.passed is True
    assert repeat.figures["lost"] == 2.0 and repeat.figures["throughput"] == 7.5
    assert repeat.figures["recovery_time"] == 4.0 and repeat.figures["p95_end_to_end"] == 0.05
    assert repeat.figures["throughput_drop"] == pytest.approx(0.25)
    assert repeat.figures["success_ratio"] is None
    row = (f"| baseline | default | 2 | 0 | 0 | 0 | 0 | {MISSING} | 50 ms | 25.00 % | 4 s | exactly-once | held "
           "| one repeat |")
    assert row in to_markdown(load_study(study_dir))


def test_write_figures_one_png_per_scenario_with_runs(tmp_path):
    study = load_study(make_study(tmp_path / "s", [run("baseline", "", 1)]))
    pngs = write_figures(study, tmp_path / "out")
    assert list(pngs) == ["baseline"]
    assert pngs["baseline"] == tmp_path / "out/figures/baseline.png"
    assert pngs["baseline"].read_bytes().startswith(b"\x89PNG")


def bar_heights(ax) -> list[float]:
    return [patch.get_height() for patch in ax.patches]


def test_the_scenario_figure_shows_each_configurations_mean_and_its_repeats(tmp_path):
    """What a reader sees: one bar per configuration at the mean of its repeats, a dot per repeat, in order."""
    study = load_study(make_study(tmp_path / "s", good_runs()))
    groups = study.groups_of("cpu-exhaustion")
    figure = study_report.draw_scenario_figure("cpu-exhaustion", groups, study.counts)
    success, classes = figure.axes
    assert figure.get_suptitle() == "cpu-exhaustion: per configuration (bar: mean, dots: repeats)"
    assert [label.get_text() for label in success.get_xticklabels()] == [
        study_report._wrapped(group.label) for group in groups]
    acks, no_acks = study_report.config_label(ACKS), study_report.config_label(NO_ACKS)
    means = {acks: (0.969 + 0.981) / 2, no_acks: (0.995 + 0.992) / 2}
    assert bar_heights(success) == pytest.approx([means[group.label] for group in groups])
    dots = sorted(round(float(y), 3) for collection in success.collections for _, y in collection.get_offsets())
    assert dots == [0.969, 0.981, 0.992, 0.995]
    # the class panel: its legend names the classes, and its tallest bar is the mean of the lost tasks (3 and 5)
    legend = classes.get_legend()
    assert legend is not None and "lost" in [text.get_text() for text in legend.get_texts()]
    assert max(bar_heights(classes)) == pytest.approx(4.0)


def test_main_exit_codes(study_dir, tmp_path, capsys):
    assert main([str(study_dir), "--out", str(tmp_path / "out"), "--publish", str(tmp_path / "ref")]) == 0
    printed = capsys.readouterr().out.split()
    assert str(tmp_path / "out" / "study.html") in printed and str(tmp_path / "ref" / "study.md") in printed
    failing = make_study(tmp_path / "failing", [run("baseline", "", 1, exit=1, passed=False)])
    assert main([str(failing)]) == 1
    assert main([str(tmp_path / "nowhere")]) == 2


def test_a_cells_own_hypothesis_is_shown_with_the_scenarios(tmp_path):
    scenarios = [{**SCENARIOS[0], "cell_hypotheses": {NO_ACKS: {"lost": ">= 1", "success_ratio": ">= 0.99"}}},
                 SCENARIOS[1]]
    root = make_study(tmp_path / "study", good_runs(), scenarios=scenarios)
    study = study_report.load_study(root)
    markdown = study_report.to_markdown(study)
    assert "- hypothesis: `lost 0`; `success_ratio >= 0.99`" in markdown
    label = study_report.config_label(NO_ACKS)
    assert f"- hypothesis with {label}: `lost >= 1`; `success_ratio >= 0.99`" in markdown
    assert f"<th>hypothesis with {label}</th>" in study_report.to_html(study)


def test_a_first_edition_study_is_shown_in_its_own_classes_with_a_note(tmp_path):
    """Runs judged before the checker reconciled tasks with the broker know "stuck", not "pending"."""
    old = run("baseline", "", 1, lost=3)
    old["figures"] = {name: value for name, value in old["figures"].items() if name in figures()
                      and name not in ("pending", "failed_by_worker", "duplicated_completed",
                                       "duplicated_not_completed", "never_completed")} | {"stuck": 1.0}
    study = load_study(make_study(tmp_path / "s", [old]))
    assert study.first_edition and study.counts == study_report.FIRST_EDITION_COUNTS
    markdown = to_markdown(study)
    assert "| scenario | configuration | lost | duplicated | failed | stuck | success ratio |" in markdown
    assert f"> {study_report.FIRST_EDITION_NOTE}" in markdown
    assert html.escape(study_report.FIRST_EDITION_NOTE) in to_html(study)


def test_the_comparison_is_also_written_as_csv_and_json(study_dir, tmp_path):
    write_study_report(study_dir, tmp_path / "out")
    rows = json.loads((tmp_path / "out" / "comparison.json").read_text())
    table = (tmp_path / "out" / "comparison.csv").read_text().splitlines()
    study = load_study(study_dir)
    assert len(rows) == len(table) - 1 == len(study.groups)
    acks = next(row for row in rows if row["cell"] == ACKS)
    assert acks["success_ratio_mean"] == pytest.approx(0.975)
    # a ratio's 95 % interval (two repeats: t = 12.71), cut at 100 %
    assert (acks["success_ratio_low"], acks["success_ratio_high"]) == pytest.approx((0.8988, 1.0), abs=1e-4)
    no_acks = next(row for row in rows if row["cell"] == NO_ACKS)
    assert (no_acks["lost_mean"], no_acks["lost_low"], no_acks["lost_high"]) == (4, 3, 5)  # a count's min and max
    assert acks["held"] is True and acks["agree"] is None and acks["repeats"] == 2
    assert table[0].startswith("scenario,cell,configuration,null_control,repeats,lost_mean,lost_low,lost_high,")


def null_control(scenario, cell, passed, failed=("p95_run_time_ratio.cpu",)):
    """A null control's run: study.json marks it, its verdict names the conditions that did not hold."""
    return {**run(scenario, cell, 1, exit=0 if passed else 1, passed=passed), "null_control": True,
            "failed": list(failed)}


def test_a_null_control_must_fail_on_a_figure_the_fault_moves(tmp_path):
    base = good_runs()
    failing = load_study(make_study(tmp_path / "ok", [*base, null_control("cpu-exhaustion", ACKS, False)]))
    control = next(group for group in failing.groups if group.null_control)
    assert control.label == "acks_late=true, reject_on_worker_lost=false, no fault (null control)"
    assert study_report.group_verdict(control) == "did not hold, as it must"
    assert study_passed(failing)
    assert "no fault (null control) | 1 |" in to_markdown(failing)
    holding = load_study(make_study(tmp_path / "held", [*base, null_control("cpu-exhaustion", ACKS, True, ())]))
    assert study_report.group_verdict(holding.groups[-1]) == "held without the fault: the hypothesis cannot fail"
    assert not study_passed(holding)
    effect_only = load_study(make_study(tmp_path / "effect", [*base, null_control("cpu-exhaustion", ACKS, False,
                                                                                  ("fault_effect",))]))
    assert study_report.group_verdict(effect_only.groups[-1]).startswith("failed only on the fault's effect")
    assert not study_passed(effect_only)


def test_significant_differences_between_configurations_are_listed(tmp_path):
    specs = [*(run("baseline", ACKS, k + 1, throughput=value) for k, value in enumerate([10.0, 10.2, 9.9, 10.1, 10.3])),
             *(run("baseline", NO_ACKS, k + 1, throughput=value) for k, value in enumerate([12.0, 12.3, 11.8, 12.1]))]
    study = load_study(make_study(tmp_path / "d", specs))
    rows, made = study_report.difference_rows(study, "baseline")
    assert made == len(study_report.difference_figures(study, study.groups))
    (row,) = rows  # the throughput; nothing else differs
    assert row[:3] == ["throughput", config_label(ACKS), config_label(NO_ACKS)]
    assert row[3].startswith("+1.95/s (+") and float(row[4]) < 0.001
    markdown = to_markdown(study)
    assert "significant at 5 % (Welch's t-test; 1 of " in markdown
    assert "| throughput | acks_late=true, reject_on_worker_lost=false | acks_late=false" in markdown


def test_the_report_opens_with_published_figures_beside_the_labs(tmp_path):
    published = {"source": "the research prototype's screenshots",
                 "figures": {"mean_run_time.cpu": {"baseline": 1.41, "fault": 4.35},
                             "success_ratio.memory": {"baseline": 1.0, "fault": 0.774}}}
    scenarios = [{**SCENARIOS[0], "published": published}, SCENARIOS[1]]
    slower = [(1.0, 3.1), (1.1, 2.9), (0.9, 3.3)]
    specs = [run("cpu-exhaustion", ACKS, k + 1, **{"mean_run_time_baseline.cpu": b, "mean_run_time_fault.cpu": f,
                                                   "success_ratio_baseline.memory": 1.0,
                                                   "success_ratio_fault.memory": 1.0})
             for k, (b, f) in enumerate(slower)]
    study = load_study(make_study(tmp_path / "p", specs, scenarios=scenarios))
    rows = study_report.published_rows(study)
    assert rows[0][:3] == ["cpu-exhaustion", config_label(ACKS), "mean_run_time.cpu"]
    assert rows[0][3] == "1.41 s \u2192 4.35 s (up)"
    assert rows[0][4].startswith("1 s (") and " \u2192 3.1 s (" in rows[0][4]
    assert rows[0][5:] == ["up", "yes"]
    # the prototype lost memory tasks under the fault; here none failed: not the same direction
    assert rows[1][3] == "100.00 % \u2192 77.40 % (down)" and rows[1][5:] == ["unchanged", "no"]
    markdown = to_markdown(study)
    assert markdown.index("## Published figures beside this lab's") < markdown.index("## Machine")
    assert "- cpu-exhaustion: the research prototype's screenshots" in markdown
    assert '<td class="fail">no</td>' in to_html(study)


def test_published_figures_are_set_only_beside_the_configuration_they_were_published_for(tmp_path):
    published = {"source": "the prototype (without acks late)", "settings": {"task_acks_late": False},
                 "figures": {"success_ratio.memory": {"baseline": 1.0, "fault": 0.774}}}
    scenarios = [{**SCENARIOS[0], "published": published}, SCENARIOS[1]]
    specs = [run("cpu-exhaustion", cell, 1, **{"success_ratio_baseline.memory": 1.0, "success_ratio_fault.memory": f})
             | {"settings": {"task_acks_late": late, "task_reject_on_worker_lost": False}}
             for cell, late, f in ((ACKS, True, 1.0), (NO_ACKS, False, 0.5))]
    rows = study_report.published_rows(load_study(make_study(tmp_path / "s", specs, scenarios=scenarios)))
    assert [row[1] for row in rows] == [config_label(NO_ACKS)]
    assert rows[0][5:] == ["down (one repeat)", "yes"]


def test_a_change_within_the_repeats_noise_is_no_clear_change(tmp_path):
    specs = [run("baseline", "", k + 1, **{"mean_run_time_baseline": b, "mean_run_time_fault": f})
             for k, (b, f) in enumerate([(1.0, 1.2), (1.0, 0.8), (1.0, 1.1)])]
    group = load_study(make_study(tmp_path / "n", specs)).groups[0]
    assert study_report.lab_change(group, "mean_run_time_baseline", "mean_run_time_fault") == "no clear change"
    one = load_study(make_study(tmp_path / "o", specs[:1])).groups[0]
    assert study_report.lab_change(one, "mean_run_time_baseline", "mean_run_time_fault") == "up (one repeat)"


def test_a_scenario_with_several_faults_names_each_with_its_window():
    info = study_report.ScenarioInfo(
        "redis-restart", "", "", "redis-restart", "redis", {"mode": "kill"}, None, {},
        faults=({"playbook": "redis-restart", "target": "redis", "params": {"mode": "kill"}, "at": 4.0,
                 "duration": None},
                {"playbook": "worker-pause", "target": "workers", "params": {}, "at": 0.0, "duration": 6.0}))
    assert study_report.fault_text(info) == (
        "redis-restart on redis (mode=kill) from 4 s; worker-pause on workers from 0 ms for 6 s")


def test_each_scenario_says_the_settings_its_configurations_share(tmp_path):
    scenarios = [{**SCENARIOS[0], "settings": {"worker_prefetch_multiplier": 4, "visibility_timeout": 30},
                  "redis": {"aof": True, "appendfsync": "everysec"}}, {**SCENARIOS[1], "settings": {}}]
    study = load_study(make_study(tmp_path / "s", good_runs(), scenarios=scenarios))
    markdown = to_markdown(study)
    assert "- shared settings: worker_prefetch_multiplier=4, visibility_timeout=30\n- Redis: aof=true, " \
           "appendfsync=everysec" in markdown
    assert "- shared settings: Celery's defaults and the lab's" in markdown
    assert "<th>shared settings</th>" in to_html(study)


def only(name: str) -> list[dict]:
    return [scenario for scenario in SCENARIOS if scenario["name"] == name]


def _restamp(study_dir: Path, **fields) -> Path:
    data = json.loads((study_dir / "study.json").read_text())
    (study_dir / "study.json").write_text(json.dumps({**data, **fields}, indent=2))
    return study_dir


def test_a_study_of_other_scenarios_is_published_as_a_part_beside_the_reference(tmp_path):
    main = _restamp(make_study(tmp_path / "main", [run("baseline", "", 1), run("baseline", "", 2)],
                               scenarios=only("baseline")), started=1000.0, ended=4600.0)
    seed = _restamp(make_study(tmp_path / "seed", [run("cpu-exhaustion", ACKS, 1), run("cpu-exhaustion", ACKS, 2)],
                               scenarios=only("cpu-exhaustion")),
                    study_id="20261205-seed", source="experiments/study/seed", started=90000.0, ended=91800.0,
                    machine={"hostname": "other", "cpus": 4, "memory_gib": 8, "kernel": "6.2"},
                    versions={"celery": "5.6.0", "project_commit": "def5678"})
    reference = publish(main, tmp_path / "reference")
    assert not load_study(reference).parts  # one study: its own study.json, byte for byte
    assert json.loads((reference / "study.json").read_text()) == json.loads((main / "study.json").read_text())
    publish(seed, reference)
    study = load_study(reference)
    assert [group.scenario for group in study.groups] == ["baseline", "cpu-exhaustion"]
    assert [part["source"] for part in study.parts] == ["experiments/study", "experiments/study/seed"]
    assert [part["versions"]["project_commit"] for part in study.parts] == ["abc1234", "def5678"]
    assert study.parts[1]["machine"]["hostname"] == "other" and study.versions["project_commit"] == "def5678"
    for repeat in (repeat for group in study.groups for repeat in group.repeats):  # both parts' runs, as published
        assert sorted(path.name for path in (reference / repeat.path).iterdir()) == ["run.json", "summary.json",
                                                                                     "verdict.json"], repeat.path
    facts = dict(study_report.header_facts(study))
    assert facts["duration"] == "1 h 30 min 00 s" and facts["runs"] == "4"  # the parts' own times added up
    text = to_markdown(study)
    assert "## Parts" in text and "| experiments/study/seed | cpu-exhaustion | 2 |" in text and "def5678" in text
    assert "<h2" in to_html(study) and "other: 4 CPUs, 8 GiB, kernel 6.2" in to_html(study)
    # the same source again replaces its own part only; a leftover of an interrupted publish is cleared
    (tmp_path / ".reference.new").mkdir()
    again = _restamp(make_study(tmp_path / "main2", [run("baseline", "", 1)], scenarios=only("baseline")),
                     study_id="20261206-main")
    publish(again, reference)
    study = load_study(reference)
    assert [part["study_id"] for part in study.parts] == ["20261205-seed", "20261206-main"]
    assert [len(group.repeats) for group in study.groups] == [2, 1]  # cpu-exhaustion kept, baseline replaced
    assert not (reference / "runs/baseline/default/r2").exists()
    assert not (tmp_path / ".reference.new").exists() and not (tmp_path / ".reference.old").exists()
    # a study of the same scenarios from elsewhere replaces the part that had them
    moved = _restamp(make_study(tmp_path / "moved", [run("cpu-exhaustion", ACKS, 1)],
                                scenarios=only("cpu-exhaustion")), source="elsewhere")
    publish(moved, reference)
    assert [part["source"] for part in load_study(reference).parts] == ["experiments/study", "elsewhere"]
    assert [len(group.repeats) for group in load_study(reference).groups] == [1, 1]


def test_a_study_of_some_scenarios_of_a_source_replaces_only_those(tmp_path):
    runs = [run("baseline", "", 1), run("cpu-exhaustion", ACKS, 1)]
    whole = make_study(tmp_path / "whole", runs)
    reference = publish(whole, tmp_path / "reference")
    some = _restamp(make_study(tmp_path / "some", [run("baseline", "", 1), run("baseline", "", 2)],
                               scenarios=only("baseline")), study_id="20261206-some", only=["baseline"])
    publish(some, reference)
    study = load_study(reference)
    assert [part.get("only") for part in study.parts] == [None, ["baseline"]]
    assert [(group.scenario, len(group.repeats)) for group in study.groups] == [("cpu-exhaustion", 1), ("baseline", 2)]
    publish(whole, reference)  # the whole source again: every part from it goes
    assert not load_study(reference).parts and [len(g.repeats) for g in load_study(reference).groups] == [1, 1]
