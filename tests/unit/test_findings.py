"""docs/findings.md: every number is one run's figure, a cell's mean or a fact of the study, cited, and matches the
committed reference at the precision written (app/chaoslab/report/findings_check.py)."""

from __future__ import annotations

import json

import pytest

from chaoslab.report.findings_check import check_findings
from tests.conftest import ROOT

REFERENCE = ROOT / "experiments" / "reference"
FINDINGS = ROOT / "docs" / "findings.md"

RUN = "runs/demo/task_acks_late=false/r1"
CELL = "runs/demo/task_acks_late=false"
LATE = "runs/late/task_acks_late=false/r1"
"""A run whose throughput_drop is negative (the fault phase completed more)."""


def make_reference(root):
    """A reference study of one cell, two repeats: r1 and r2 differ, so a mean differs from either run."""
    root.mkdir()
    (root / "study.json").write_text(json.dumps({
        "study_id": "20260101-000000-study", "repeat": 2, "started": 100.0, "ended": 2504.4,
        "machine": {"cpus": 2, "memory_gib": 23.5, "kernel": "6.18.44-fc-v669", "os": "Debian GNU/Linux 12"},
        "versions": {"celery": "5.7.0", "project_commit": "36fec5b"},
        "scenarios": [{"name": "demo", "params": {"limit": "300MiB", "delay": "200ms", "bytes": "70%"},
                       "settings": {"visibility_timeout": 30}, "phases": {"fault": 10.0},
                       "published": {"source": "a prototype", "figures": {
                           "mean_run_time.cpu": {"baseline": 1.41, "fault": 4.35},
                           "success_ratio.memory": {"baseline": 1, "fault": 0.774}}}}],
    }))
    figures = {f"{CELL}/r1": {"lost": 3.0, "success_ratio": 0.988372, "p95_end_to_end": 0.325568,
                              "throughput_drop": 0.7, "p95_end_to_end_ratio": 1.45, "success_ratio_fault": 1.0,
                              "success_ratio_baseline": 0.996, "stuck": 2.0},
               f"{CELL}/r2": {"lost": 5.0, "success_ratio": 0.980315, "p95_end_to_end": 0.327663,
                              "throughput_drop": 0.72},
               LATE: {"lost": 0.0, "success_ratio": 1.0, "throughput_drop": -0.000123},
               f"{CELL}/null": {"lost": 0.0, "success_ratio": 1.0, "p95_end_to_end": 0.1}}
    for path, values in figures.items():
        run = root / path
        run.mkdir(parents=True)
        (run / "run.json").write_text(json.dumps({"status": "completed", "started": 0.0, "ended": 40.4}))
        (run / "summary.json").write_text(json.dumps({"figures": values, "phases": [
            {"name": "recovery", "throughput": 16.99, "latency": {"end_to_end": {"count": 80, "p95": 0.551306}}}]}))
        (run / "scenario.yml").write_text("load:\n  rate: 12.0\n  mix:\n  - kind: memory\n    args: {mb: 64}\n"
                                          "  - kind: sleep\n    args: {ms: 500}\n")
    (root / "figures").mkdir()
    (root / "figures" / "demo.png").write_bytes(b"")
    return root


GOOD = f"""# Demo

Study 20260101-000000-study `study.json study_id`, commit 36fec5b `study.json versions.project_commit`, Celery
5.7.0 `study.json versions.celery` on Debian 12 `study.json machine.os` (kernel 6.18 `study.json machine.kernel`),
2 `study.json machine.cpus` CPUs, 23.5 GiB `study.json machine.memory_gib`; 2 `study.json repeat` repeats, 40 min
`study.json duration`.

## `demo`

3 `{RUN} lost` tasks were lost in r1, a mean of 4 `mean {CELL} lost`; success 98.84 %
`{RUN} success_ratio`; p95 end to end 326 ms `{RUN} p95_end_to_end` (0.33 s `{RUN} p95_end_to_end`), a mean of
327 ms `mean {CELL} p95_end_to_end`; a drop of 71 % `mean {CELL} throughput_drop`. The cap was 300 MiB
`study.json scenarios.demo.params.limit`, the delay 200 ms `study.json scenarios.demo.params.delay` on 70 %
`study.json scenarios.demo.params.bytes`, the fault 10 s `study.json scenarios.demo.phases.fault`, the timeout
30 s `study.json scenarios.demo.settings.visibility_timeout`; 64 MiB `{RUN}/scenario.yml load.mix.memory.args.mb`
tasks and 500 ms `{RUN}/scenario.yml load.mix.sleep.args.ms` ones at 12/s `{RUN}/scenario.yml load.rate`; the
recovery completed 17/s `{RUN}/summary.json phases.recovery.throughput`; the run took 40 s `{RUN}/run.json duration`.

Not data: p95, r1 and r2, worker-1, x86_64, `task_acks_late`, `20260101-000000-study`, [a link](../x/2.md), the
run `{RUN}`, the figure `figures/demo.png`.

1. a numbered list item
2. another

```
fenced: 12 34.5 ms
```
"""


@pytest.fixture
def reference(tmp_path):
    return make_reference(tmp_path / "reference")


def problems(text, reference):
    return [str(problem) for problem in check_findings(text, reference)]


def test_the_committed_findings_match_the_reference():
    assert problems(FINDINGS.read_text(encoding="utf-8"), REFERENCE) == []


def test_a_text_that_follows_the_convention_passes(reference):
    assert problems(GOOD, reference) == []


@pytest.mark.parametrize(("written", "changed"), [
    ("3 `", "4 `"), ("98.84 %", "98.85 %"), ("326 ms", "327 ms"), ("0.33 s", "0.34 s"),
    ("327 ms `mean", "328 ms `mean"), ("71 %", "72 %"), ("300 MiB", "301 MiB"), ("200 ms", "201 ms"),
    ("70 %", "71 %"), ("12/s", "13/s"), ("40 s", "41 s"),
    ("5.7.0 `", "5.7.1 `"), ("6.18 `", "6.19 `"), ("36fec5b `", "36fec5c `"), ("40 min", "41 min"), ("17/s", "18/s"),
])
def test_a_number_changed_by_one_in_its_last_digit_fails(reference, written, changed):
    assert written in GOOD
    found = problems(GOOD.replace(written, changed, 1), reference)
    assert len(found) == 1 and "does not match" in found[0], found


def test_the_committed_findings_fail_with_one_digit_changed():
    text = FINDINGS.read_text(encoding="utf-8")
    assert "95.65 %" in text
    found = problems(text.replace("95.65 %", "95.64 %", 1), REFERENCE)
    assert len(found) == 1 and "the data say 95.65 %" in found[0], found


def test_an_uncited_number_fails(reference):
    found = problems(GOOD + "\nAbout 23 tasks were late by 5 s.\n", reference)
    assert [message.split(": ", 1)[1] for message in found] == ["23: a number without a citation",
                                                                "5: a number without a citation"]


def test_a_citation_must_stand_right_after_its_number(reference):
    found = problems(GOOD + f"\n3 tasks were lost (`{RUN} lost`).\n", reference)
    assert any("3: a number without a citation" in message for message in found)
    assert any("cites no number" in message for message in found)


@pytest.mark.parametrize(("cited", "why"), [
    ("runs/demo/task_acks_late=false/r3 lost", "no run runs/demo/task_acks_late=false/r3"),
    ("runs/other/task_acks_late=false/r1 lost", "no run runs/other/task_acks_late=false/r1"),
    ("mean runs/demo/task_acks_late=true lost", "no cell runs/demo/task_acks_late=true"),
    (f"{RUN} stolen", "no figure stolen"),
    (f"{RUN}/verdict.json passed", "no file"),
    ("study.json versions.redis", "no redis"),
])
def test_a_citation_to_something_missing_fails(reference, cited, why):
    found = problems(GOOD + f"\n3 `{cited}`\n", reference)
    assert len(found) == 1 and why in found[0], found


def test_a_mean_cited_as_a_run_or_a_run_as_a_mean_fails(reference):
    # the cell's mean is 4 lost (r1 3, r2 5) and 327 ms (r1 326 ms)
    for wrong in (f"4 `{RUN} lost`", f"3 `mean {CELL} lost`", f"327 ms `{RUN} p95_end_to_end`",
                  f"326 ms `mean {CELL} p95_end_to_end`"):
        found = problems(GOOD + f"\n{wrong}\n", reference)
        assert len(found) == 1 and "does not match" in found[0], (wrong, found)


def test_a_null_control_is_cited_as_a_run_and_is_no_repeat_of_a_mean(reference):
    assert problems(GOOD + f"\nwithout the fault, 100 ms `{CELL}/null p95_end_to_end` and 0 `{CELL}/null lost`\n",
                    reference) == []
    found = problems(GOOD + f"\n0 `mean {CELL}/null lost`\n", reference)
    assert len(found) == 1 and "a mean is over a cell's repeats" in found[0]
    # the cell's mean stays over r1 and r2 (4 lost), the null control's 0 not among them
    assert problems(GOOD + f"\n4 `mean {CELL} lost`\n", reference) == []


def test_a_mean_names_a_cell_and_a_run_names_its_repeat(reference):
    found = problems(GOOD + f"\n4 `{CELL} lost` and 3 `mean {RUN} lost`\n", reference)
    assert len(found) == 2
    assert "a cell is cited by its mean" in found[0] and "a mean is over a cell's repeats" in found[1]


@pytest.mark.parametrize(("text", "why"), [
    ("p95 went up 30-45 s.", "'30-45' is not one number"),
    ("a 2-CPU host", "'2-CPU': write the number as its own word"),
    ("the `timeout 30` setting", "30: a number without a citation (in code: cite it)"),
    ("success 98.84 `runs/demo/task_acks_late=false/r1 lost`", "does not match"),
    ("3 % `runs/demo/task_acks_late=false/r1 lost`", "but the value is a number"),
    ("lost `runs/demo/task_acks_late=false/r1 lost`", "'lost' is not a number"),
    ("3 `runs/demo lost`", "a run is runs/<scenario>/<cell>/r<k>"),
    ("3 `runs/demo/task_acks_late=false/r1 lost extra`", "is not a citation"),
    ("see `runs/demo/task_acks_late=false/r9`", "no such run, cell or file"),
    ("see `figures/nothing.png`", "no such file"),
])
def test_what_is_refused(reference, text, why):
    found = problems(GOOD + f"\n{text}\n", reference)
    assert any(why in message for message in found), found


def test_each_problem_is_one_line_with_its_line_number(reference):
    text = GOOD + "\nAbout 23 tasks.\n"
    found = problems(text, reference)
    line = text.splitlines().index("About 23 tasks.") + 1
    assert found == [f"line {line}: 23: a number without a citation"]
    assert all("\n" not in message for message in found)


def test_the_reference_figures_are_read_as_the_study_report_reads_them():
    """The first edition's runs keep their figures in verdict.json: a cited figure is that one."""
    run = "runs/baseline/task_acks_late=false/r1"
    p95 = json.loads((REFERENCE / run / "verdict.json").read_text())["figures"]["p95_end_to_end"] * 1000
    assert problems(f"{p95:.1f} ms `{run} p95_end_to_end`", REFERENCE) == []
    assert problems(f"{p95 + 0.2:.1f} ms `{run} p95_end_to_end`", REFERENCE) != []


# ---------------------------------------------------------------------------------------
# A number is a number: digits glued to letters, units of the wrong dimension, versions, rounding, signs


@pytest.mark.parametrize("word", ["10k", "5GB", "200MB", "3sec", "2h", "16k", "0.8CPU", "1e3", "2nd", "12ab",
                                  "1234xyz"])
def test_digits_glued_to_letters_are_no_name(reference, word):
    for text in (f"a {word} load", f"the `{word}` setting", f"{word} `{RUN} lost`"):
        found = problems(GOOD + f"\n{text}\n", reference)
        assert any(f"'{word}' is no number with a known unit" in message for message in found), (text, found)
        assert all("\n" not in message for message in found)


@pytest.mark.parametrize("name", ["36fec5b", "0123456789abcdef0123456789abcdef01234567", "20261125-202211-study",
                                  "20260101-000000-study-2", "p95", "r1", "worker-1", "x86_64", "v669"])
def test_names_that_hold_digits_pass(reference, name):
    assert problems(GOOD + f"\nthe name {name} and `{name}`\n", reference) == []


@pytest.mark.parametrize(("text", "why"), [
    ("17x", "written as a factor (x), but the value is a rate"),
    ("17 s", "written as a time (s), but the value is a rate"),
    ("17 ms", "written as a time (ms), but the value is a rate"),
])
def test_a_unit_must_be_of_the_dimension_of_a_summary_value(reference, text, why):
    found = problems(GOOD + f"\n{text} `{RUN}/summary.json phases.recovery.throughput`\n", reference)
    assert len(found) == 1 and why in found[0], found


@pytest.mark.parametrize(("text", "why"), [
    ("10x `study.json scenarios.demo.phases.fault`", "written as a factor (x), but the value is a time"),
    ("10/s `study.json scenarios.demo.phases.fault`", "written as a rate (/s), but the value is a time"),
    ("10 `study.json scenarios.demo.phases.fault`", "written as a number, but the value is a time"),
    (f"12 s `{RUN}/scenario.yml load.rate`", "written as a time (s), but the value is a rate"),
    ("30x `study.json scenarios.demo.settings.visibility_timeout`", "but the value is a time"),
    ("23.5 % `study.json machine.memory_gib`", "but the value is a size"),
    ("40x `study.json duration`", "but the value is a time"),
    ("326x `runs/demo/task_acks_late=false/r1/summary.json figures.p95_end_to_end`", "but the value is a time"),
    ("551 MiB `runs/demo/task_acks_late=false/r1/summary.json phases.recovery.latency.end_to_end.p95`",
     "but the value is a time"),
    ("2 s `study.json machine.cpus`", "the cited key's unit is not known: write the number bare"),
    ("2x `study.json repeat`", "the cited key's unit is not known"),
    ("80 s `runs/demo/task_acks_late=false/r1/summary.json phases.recovery.latency.end_to_end.count`",
     "the cited key's unit is not known"),
    ("2 % `runs/demo/task_acks_late=false/r1 stuck`", "the cited key's unit is not known"),
])
def test_a_unit_must_be_of_the_dimension_of_a_key(reference, text, why):
    found = problems(GOOD + f"\n{text}\n", reference)
    assert len(found) == 1 and why in found[0], found


def test_keys_of_a_known_unit_match_in_it(reference):
    text = (f"\n551 ms `{RUN}/summary.json phases.recovery.latency.end_to_end.p95`, 80\n"
            f"`{RUN}/summary.json phases.recovery.latency.end_to_end.count`, 326 ms `{RUN}/summary.json "
            f"figures.p95_end_to_end`, 1.5x `{RUN}/summary.json figures.p95_end_to_end_ratio`, 2 `{RUN} stuck`\n")
    assert problems(GOOD + text, reference) == []


@pytest.mark.parametrize("text", [
    "669 `study.json machine.kernel`", "18.44 `study.json machine.kernel`", "44 `study.json machine.kernel`",
    "6.18.4 `study.json machine.kernel`", "6.18 ms `study.json machine.kernel`", "6.18x `study.json machine.kernel`",
    "70/s `study.json scenarios.demo.params.bytes`", "70x `study.json scenarios.demo.params.bytes`",
    "70 `study.json scenarios.demo.params.bytes`",
    "200x `study.json scenarios.demo.params.delay`", "200/s `study.json scenarios.demo.params.delay`",
    "200 `study.json scenarios.demo.params.delay`", "300 `study.json scenarios.demo.params.limit`",
    "-5.7.0 `study.json versions.celery`", "5.7.0x `study.json versions.celery`",
    "GNU `study.json machine.os`",
])
def test_a_number_matches_a_text_only_as_its_version(reference, text):
    found = problems(GOOD + f"\n{text}\n", reference)
    assert len(found) == 1 and "does not match" in found[0], found


@pytest.mark.parametrize("text", [
    "6 `study.json machine.kernel`", "6.18.44 `study.json machine.kernel`", "5 `study.json versions.celery`",
    "5.7 `study.json versions.celery`", "12 `study.json machine.os`", "0.2 s `study.json scenarios.demo.params.delay`",
    "0.29 GiB `study.json scenarios.demo.params.limit`",
])
def test_a_version_matches_its_leading_parts(reference, text):
    assert problems(GOOD + f"\n{text}\n", reference) == []


@pytest.mark.parametrize(("text", "why"), [
    (f"1 `{RUN} success_ratio`", "too coarse for a ratio"),                 # 0.988
    (f"100 % `{RUN} success_ratio_baseline`", "too coarse for a ratio"),    # 0.996: not all
    (f"1 `{RUN} success_ratio_baseline`", "too coarse for a ratio"),
    (f"1x `{RUN} p95_end_to_end_ratio`", "too coarse for a factor"),        # 1.45
    (f"0 % `{LATE} throughput_drop`", "too coarse for a ratio"),            # -0.0123 %
    (f"-0.01 % `{LATE} throughput_drop`", "too coarse for a ratio"),
    (f"70 % `{RUN} throughput_drop`", None),                                # 0.7: exactly what is written
])
def test_a_ratio_or_factor_shows_two_significant_digits_unless_exact(reference, text, why):
    found = problems(GOOD + f"\n{text}\n", reference)
    if why is None:
        assert found == []
    else:
        assert len(found) == 1 and why in found[0] and "write two significant digits" in found[0], found


@pytest.mark.parametrize("text", [
    f"0.99 `{RUN} success_ratio`", f"98.8 % `{RUN} success_ratio`", f"99.6 % `{RUN} success_ratio_baseline`",
    f"1.0 `{RUN} success_ratio_baseline`", f"1 `{RUN} success_ratio_fault`", f"100 % `{RUN} success_ratio_fault`",
    f"1.5x `{RUN} p95_end_to_end_ratio`", f"1.45\u00d7 `{RUN} p95_end_to_end_ratio`", f"2 `{RUN} stuck`",
])
def test_a_ratio_or_factor_with_enough_digits_or_exact_passes(reference, text):
    assert problems(GOOD + f"\n{text}\n", reference) == []


@pytest.mark.parametrize("text", [
    f"-0.012 % `{LATE} throughput_drop`", f"\u22120.012 % `{LATE} throughput_drop`",
    f"-0.0123 % `{LATE} throughput_drop`", f"-0.00012 `{LATE} throughput_drop`",
    f"a drop of \u22120.012% `{LATE} throughput_drop`",
])
def test_a_negative_number_is_written_with_its_sign(reference, text):
    assert problems(GOOD + f"\n{text}\n", reference) == []


@pytest.mark.parametrize(("text", "why"), [
    (f"0.012 % `{LATE} throughput_drop`", "the data say -0.012 %"),
    (f"-0.013 % `{LATE} throughput_drop`", "the data say -0.012 %"),
    (f"-70 % `{RUN} throughput_drop`", "the data say 70 %"),
    (f"-3 `{RUN} lost`", "the data say 3"),
    (f"\u22120.0 % `{RUN} stuck`", "unit is not known"),
])
def test_a_sign_is_checked(reference, text, why):
    found = problems(GOOD + f"\n{text}\n", reference)
    assert len(found) == 1 and "does not match" in found[0] and why in found[0], found


def test_a_negative_number_needs_its_citation(reference):
    found = problems(GOOD + "\na drop of -5 % and \u22123.5 s\n", reference)
    assert [message.split(": ", 1)[1] for message in found] == ["-5: a number without a citation",
                                                                "\u22123.5: a number without a citation"]


def test_a_text_that_is_no_quantity_of_the_written_unit_says_so_once(reference):
    found = problems(GOOD + "\n2 s `study.json versions.celery`\n", reference)
    assert len(found) == 1 and found[0].endswith("the data say '5.7.0', not a time"), found


def test_a_key_that_holds_dots_is_cited_whole(reference):
    """Published figures are keyed by per-kind figure names (mean_run_time.cpu)."""
    key = "study.json scenarios.demo.published.figures"
    text = (f"\nThe prototype: CPU tasks 1.41 s `{key}.mean_run_time.cpu.baseline` -> 4.35 s "
            f"`{key}.mean_run_time.cpu.fault`, memory tasks' success 77.4 % `{key}.success_ratio.memory.fault`.\n")
    assert problems(GOOD + text, reference) == []
    assert problems(GOOD + text.replace("4.35 s", "4.36 s"), reference)


def test_a_sweep_point_is_cited_as_a_run_and_its_knees_table_is_checked_whole(reference):
    """A published sweep (chaoslab.report.sweep_reference): one point's figure or file key is cited like a run's;
    the table of knees, numbers and all, must be what the published points give."""
    from chaoslab.report import sweep_reference

    point = reference / "sweeps" / "delay" / "cells" / "delay=0ms"
    point.mkdir(parents=True)
    (point / "run.json").write_text(json.dumps({"status": "completed"}))
    (point / "summary.json").write_text(json.dumps({"figures": {"lost": 0.0, "p95_end_to_end": 0.0574}, "phases": [
        {"name": "fault", "throughput": 19.99, "latency": {"end_to_end": {"p95": 0.0574}}}]}))
    (point / "verdict.json").write_text(json.dumps({"passed": True, "figures": {"lost": 0.0}}))
    (reference / "sweeps" / "delay" / "run.json").write_text(json.dumps({"sweep": {"param": "delay", "points": [
        {"cell": "delay=0ms", "configuration": "", "value": "0ms", "dose": 0.0}]}}))
    cited = "sweeps/delay/cells/delay=0ms"
    table = sweep_reference.table(sweep_reference.dose.load_curves(reference / "sweeps" / "delay"), "delay")
    text = (f"At no delay 20/s `{cited}/summary.json phases.fault.throughput`, p95 57 ms `{cited} p95_end_to_end`.\n"
            f"<!-- knees: sweeps/delay -->\n{table}<!-- /knees -->\n")
    assert problems(text, reference) == []
    assert problems(text.replace("57 ms", "58 ms"), reference) == [
        f"line 1: 58 ms does not match `{cited} p95_end_to_end`: the data say 57 ms (57.4)"]
    changed = text.replace("| none |", "| 0ms |")
    assert changed != text and [problem.split(": ", 1)[1] for problem in problems(changed, reference)] == [
        "knees: sweeps/delay: the table is not what the published runs give (python -m "
        f"chaoslab.report.sweep_reference --table {reference / 'sweeps' / 'delay'})"]
    assert "a sweep's point is sweeps/<sweep>/cells/<cell>" in problems(
        f"20/s `mean {cited}/summary.json phases.fault.throughput`", reference)[0]
