"""The report page as a browser shows it: headless Chromium renders it without console
errors, the screenshot is not blank, and the figures' fault-window shading is visible."""

from __future__ import annotations

import numpy as np
import pytest

from chaoslab.report.report import FAULT_COLOUR, FIGURES, NODE_FIGURES, write_report
from tests import report_browser
from tests.unit.test_report import colour_pixels, make_run, png_pixels

pytestmark = pytest.mark.skipif(not report_browser.available(), reason=f"{report_browser.CHROMIUM} is not installed")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    run_dir, _ = make_run(tmp_path_factory.mktemp("browser") / "run-1")
    return write_report(run_dir)


@pytest.fixture(scope="module")
def rendering(page, tmp_path_factory):
    return report_browser.screenshot(page, tmp_path_factory.mktemp("shots") / "report.png")


def test_page_renders_without_console_messages(rendering):
    assert rendering.errors == []
    assert rendering.console == []


def test_screenshot_is_not_blank(rendering):
    pixels = png_pixels(rendering.png)
    assert pixels.shape[:2] == (report_browser.WINDOW[1], report_browser.WINDOW[0])
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200
    assert pixels.std() > 20


def test_fault_window_shading_is_visible(rendering):
    assert colour_pixels(png_pixels(rendering.png), FAULT_COLOUR) > 5_000


def test_dom_has_every_figure_embedded(page):
    dom = report_browser.dump_dom(page)
    for spec in FIGURES:
        assert f'id="figure-{spec.name}"' in dom
    assert dom.count('src="data:image/png;base64,') == len(FIGURES) + len(NODE_FIGURES)


def test_console_errors_are_detected(tmp_path):
    """The detector itself: a page with a script error yields an error line."""
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><p>x</p><script>undefinedFunction();</script></body></html>")
    rendering = report_browser.screenshot(broken, tmp_path / "broken.png", window=(400, 300))
    assert any("Uncaught ReferenceError" in line for line in rendering.errors)
