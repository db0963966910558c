"""The committed reference study: made by `make study`, and its comparison report made again from the committed
summaries alone is byte for byte the committed one; docs/findings.md cites runs and figures that exist."""

from __future__ import annotations

import re

import pytest

from chaoslab.report import dose, study_report, sweep_reference
from tests.conftest import ROOT

REFERENCE = ROOT / "experiments" / "reference"
FINDINGS = ROOT / "docs" / "findings.md"
# A citation in findings.md: a run of the reference (runs/<scenario>/<cell>/r<k>) or one of its figures.
RUN_CITATION = re.compile(r"runs/[a-z0-9-]+/[a-z_=,0-9]+/r\d+")
FIGURE_CITATION = re.compile(r"figures/[a-z0-9-]+\.png")


def test_the_reference_is_a_complete_study_that_passed():
    study = study_report.load_study(REFERENCE)
    assert study.status == "completed"
    # the first edition (two repeats, no null controls, its own classes) is judged as it was made: every run held
    # its hypothesis; the second edition must pass the whole study's test (null controls, agreement)
    if study.first_edition:
        assert all(repeat.exit == 0 for group in study.groups for repeat in group.repeats)
    else:
        assert study_report.study_passed(study), study_report.to_markdown(study)
    assert study.repeat >= 2 and all(len(group.repeats) == (1 if group.null_control else study.repeat)
                                     for group in study.groups)
    for part in study.parts or [{"versions": study.versions, "machine": study.machine}]:  # each part ran on its own
        assert {"celery", "kombu", "redis", "project_commit"} <= set(part["versions"])
        assert {"cpus", "memory_gib", "kernel", "os"} <= set(part["machine"])
    sources = sorted(path.stem for folder in ("study", "study/seed", "study/brokers")
                     for path in (ROOT / "experiments" / folder).glob("*.yml"))
    studied = sorted({group.scenario for group in study.groups})
    # the second edition studies every scenario file, the prototype's seed experiments (make study-seed) and the
    # broker study (make study-brokers) too;
    # the first knew no whole-worker kill
    assert set(studied) <= set(sources) if study.first_edition else studied == sources


def test_the_comparison_report_is_made_again_from_the_committed_summaries(tmp_path):
    markdown, page = study_report.write_study_report(REFERENCE, tmp_path)
    assert markdown.read_bytes() == (REFERENCE / "study.md").read_bytes()
    assert page.read_bytes() == (REFERENCE / "study.html").read_bytes()
    for name in (study_report.CSV_FILE, study_report.JSON_FILE):
        assert (tmp_path / name).read_bytes() == (REFERENCE / name).read_bytes(), name
    for png in sorted((REFERENCE / "figures").glob("*.png")):
        assert (tmp_path / "figures" / png.name).read_bytes() == png.read_bytes(), png.name


def test_the_reference_holds_summaries_not_raw_ledgers():
    names = {path.name for path in REFERENCE.rglob("*") if path.is_file()}
    assert names <= {"study.json", "study.md", "study.html", study_report.CSV_FILE, study_report.JSON_FILE,
                     *study_report.PUBLISHED_RUN_FILES, *sweep_reference.KEPT, dose.FIGURE_FILE} | {
        path.name for path in (REFERENCE / "figures").glob("*.png")}


def sections() -> list[tuple[str, str]]:
    parts = re.split(r"^## (.+)$", FINDINGS.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return list(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.parametrize("fault", sorted({group.scenario for group in study_report.load_study(REFERENCE).groups}))
def test_findings_has_a_section_per_scenario_that_cites_its_runs_and_figure(fault):
    cited = [body for title, body in sections() if f"`{fault}`" in title]
    assert cited, f"docs/findings.md: no section titled with `{fault}`"
    body = cited[0]
    assert f"figures/{fault}.png" in body
    assert any(run.startswith(f"runs/{fault}/") for run in RUN_CITATION.findall(body))


def test_every_citation_in_findings_exists():
    text = FINDINGS.read_text(encoding="utf-8")
    runs, figures = RUN_CITATION.findall(text), FIGURE_CITATION.findall(text)
    assert runs and figures
    for cited in runs:
        assert (REFERENCE / cited / "summary.json").is_file(), cited
    for cited in figures:
        assert (REFERENCE / cited).is_file(), cited


def test_the_study_sweeps_are_published_and_findings_state_their_knees():
    """make study-sweeps: each sweep of experiments/study/sweeps is in the reference, every point judged, and
    docs/findings.md holds its table of knees as the published points give it."""
    sources = sorted(path.stem for path in (ROOT / "experiments" / "study" / "sweeps").glob("*.yml"))
    published = sorted(path.parent.name for path in (REFERENCE / "sweeps").glob("*/run.json"))
    assert published == sources
    text = FINDINGS.read_text(encoding="utf-8")
    assert sorted(found["where"] for found in sweep_reference.TABLE.finditer(text)) == [
        f"sweeps/{name}" for name in sources]
    assert sweep_reference.stale_tables(text, REFERENCE) == []
    for name in sources:
        curves = dose.load_curves(REFERENCE / "sweeps" / name)
        assert [curve.configuration for curve in curves] == ["task_acks_late=false", "task_acks_late=true"]
        assert all(point.passed is not None and point.throughput for curve in curves for point in curve.points)
        assert (REFERENCE / "sweeps" / name / dose.FIGURE_FILE).is_file()
