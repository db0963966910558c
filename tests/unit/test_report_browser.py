"""The report page as a browser shows it: headless Chromium renders it without console
errors, shows every figure at its own size, one below the other, and the first figure on
screen is the figure the report drew, pixel for pixel (what the figures hold is checked on the figures themselves
in test_report.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from chaoslab.report.report import FIGURE_DPI, FIGURE_SIZE, FIGURES_DIR, write_report
from tests import report_browser
from tests.unit.test_report import ALL_FIGURES, make_run

pytestmark = pytest.mark.skipif(not report_browser.available(), reason=f"{report_browser.CHROMIUM} is not installed")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    run_dir, _ = make_run(tmp_path_factory.mktemp("browser") / "run-1")
    return write_report(run_dir)


@pytest.fixture(scope="module")
def shown(page, tmp_path_factory) -> list[report_browser.ShownImage]:
    return report_browser.measure(page, tmp_path_factory.mktemp("measured") / "report.html")


@pytest.fixture(scope="module")
def rendering(page, shown, tmp_path_factory):
    """The page in a window as wide as the usual one and tall enough to show the first figure whole."""
    _, top, _, height = shown[0].box
    window = (report_browser.WINDOW[0], math.ceil(top) + height + 20)
    return report_browser.screenshot(page, tmp_path_factory.mktemp("shots") / "report.png", window=window)


def test_page_renders_without_console_messages(rendering):
    assert rendering.errors == []
    assert rendering.console == []


def test_every_figure_is_shown_at_its_size(shown):
    size = (round(FIGURE_SIZE[0] * FIGURE_DPI), round(FIGURE_SIZE[1] * FIGURE_DPI))
    assert [image.alt for image in shown] == [spec.title for spec in ALL_FIGURES]
    for image in shown:
        assert image.natural == size, image.alt
        assert image.box[2:] == size, image.alt  # not squeezed by the page's width
    tops = [image.box[1] for image in shown]
    assert tops == sorted(tops) and len(set(tops)) == len(tops)  # one below the other, none on top of another


def test_the_first_figure_on_screen_is_the_figure_drawn(page, shown, rendering):
    """Where the throughput figure sits, the screenshot shows its PNG, pixel for pixel: decoded by the browser,
    unscaled and uncovered."""
    left, top, width, height = shown[0].box
    x, y = round(left), round(top)
    with Image.open(rendering.png) as screen, Image.open(page.parent / FIGURES_DIR / "throughput.png") as png:
        seen = np.asarray(screen.convert("RGB"), dtype=np.int16)[y:y + height, x:x + width]
        drawn = np.asarray(png.convert("RGB"), dtype=np.int16)
    assert seen.shape == drawn.shape
    assert np.abs(seen - drawn).max() <= 2


def test_console_errors_are_detected(tmp_path):
    """The detector itself: a page with a script error yields an error line."""
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><p>x</p><script>undefinedFunction();</script></body></html>")
    loaded = report_browser.load(broken, window=(400, 300))
    assert any("Uncaught ReferenceError" in line for line in loaded.errors)
