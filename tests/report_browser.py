"""Render an HTML page in headless Chromium: a screenshot, the console messages and the DOM.

How console errors are caught (and why this way): Chromium run with
``--enable-logging=stderr --v=0`` writes every console message of the page to stderr as
``[pid:tid:time:LEVEL:CONSOLE:line] "message", source: URL (line)``. Uncaught exceptions
appear there too (``"Uncaught ReferenceError: ..."``). In Chromium 156 (Debian 12's) the
level printed is always INFO, whatever the page used (console.log or console.error), so
the level cannot tell errors from chatter. The report page has no scripts at all, so
*every* console message is unexpected: :func:`screenshot` returns them all, and
``errors`` picks those that are errors by their text (``Uncaught``, ``ERROR:CONSOLE``,
``Failed to load resource``, ``Refused to``). Everything else on stderr (D-Bus, GPU and
sandbox warnings of a headless machine) is ignored.

Whether the page parsed is checked separately with ``--dump-dom`` (:func:`load`): the
serialised DOM after loading, to look for expected elements, with the console messages
caught as above. Where the browser put each image and whether it decoded it, :func:`measure`
tells: it loads a copy of the page with one script added that writes, once the page has
loaded, every image's decoded size and its box on the page into the document's title.

Every run uses a fresh ``--user-data-dir`` and no network features (no QUIC, sync,
component updates or background networking); a run that hangs is killed with its whole
process group after *timeout* seconds.
"""

from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
WINDOW = (1280, 2400)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
_CONSOLE = re.compile(r":(?:[A-Z]+|VERBOSE\d*):CONSOLE(?:\(\d+\)|:\d+)?\]\s*(?P<message>.*)$")
_ERROR_MARKERS = ("Uncaught", "ERROR:CONSOLE", "Failed to load resource", "Refused to")
_LOGGING = ("--enable-logging=stderr", "--v=0")
_MEASURE_SCRIPT = """<script>
window.addEventListener("load", () => {
  document.title = JSON.stringify(Array.from(document.images, (img) => {
    const box = img.getBoundingClientRect();
    return {alt: img.alt, natural: [img.naturalWidth, img.naturalHeight],
            box: [box.left + scrollX + img.clientLeft, box.top + scrollY + img.clientTop, img.clientWidth,
                  img.clientHeight]};
  }));
});
</script>"""
_TITLE = re.compile(r"<title>(?P<text>.*?)</title>", re.DOTALL)


@dataclass(frozen=True)
class Console:
    console: list[str]
    """Every console message the page produced (the full stderr line)."""
    stderr: str

    @property
    def errors(self) -> list[str]:
        """Console messages that are errors: uncaught exceptions, failed loads, CSP refusals."""
        return [line for line in self.console if any(marker in line for marker in _ERROR_MARKERS)]


@dataclass(frozen=True)
class Rendering(Console):
    png: Path


@dataclass(frozen=True)
class Loaded(Console):
    dom: str
    """The DOM after loading, serialised."""


@dataclass(frozen=True)
class ShownImage:
    """An image as the browser laid it out, in CSS pixels (1 CSS pixel is one screenshot pixel here)."""

    alt: str
    natural: tuple[int, int]
    """Width and height of the image as its file states them; (0, 0) when the browser could not read it."""
    box: tuple[float, float, int, int]
    """Left, top (from the page's top left corner), width and height of the image's content box."""


def available() -> bool:
    return CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK)


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run Chromium in its own process group; kill that group if it outlives *timeout*."""
    with tempfile.TemporaryDirectory(prefix="chaoslab-chromium-") as profile:
        command = [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
        return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _uri(page: str | os.PathLike[str]) -> str:
    """A URL as it is, a file as a file:// URI."""
    text = str(page)
    return text if text.startswith(("http://", "https://")) else Path(page).resolve().as_uri()


def console_messages(stderr: str) -> list[str]:
    """The console lines in Chromium's stderr log."""
    return [line for line in stderr.splitlines() if _CONSOLE.search(line)]


def screenshot(
    html_path: str | os.PathLike[str],
    png_path: str | os.PathLike[str],
    window: tuple[int, int] = WINDOW,
    timeout: float = 90.0,
) -> Rendering:
    """Load *html_path* (a file) in headless Chromium, save a *window*-sized screenshot to
    *png_path*, and return it with the page's console messages."""
    png = Path(png_path).resolve()
    png.unlink(missing_ok=True)
    result = _run(
        [
            *_LOGGING,
            f"--screenshot={png}",
            # every image decoded and every compositor stage run before the frame is captured: on a busy machine an
            # image could otherwise still be blank in the screenshot
            "--run-all-compositor-stages-before-draw",
            f"--window-size={window[0]},{window[1]}",
            "--virtual-time-budget=5000",
            _uri(html_path),
        ],
        timeout,
    )
    if result.returncode != 0 or not png.exists():
        raise RuntimeError(f"chromium failed ({result.returncode}), no screenshot:\n{result.stderr[-3000:]}")
    return Rendering(console=console_messages(result.stderr), stderr=result.stderr, png=png)


def load(
    html_path: str | os.PathLike[str], window: tuple[int, int] = WINDOW, timeout: float = 90.0
) -> Loaded:
    """Load *html_path* (a file or a URL) in a *window*-sized headless Chromium; return the DOM it built
    (``--dump-dom``) with the page's console messages."""
    result = _run(
        [*_LOGGING, f"--window-size={window[0]},{window[1]}", "--virtual-time-budget=5000", "--dump-dom",
         _uri(html_path)],
        timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(f"chromium --dump-dom failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return Loaded(console=console_messages(result.stderr), stderr=result.stderr, dom=result.stdout)


def measure(
    html_path: str | os.PathLike[str], copy_path: str | os.PathLike[str], window: tuple[int, int] = WINDOW
) -> list[ShownImage]:
    """Every image of the page *html_path* (a file) as a *window*-sized Chromium lays it out, measured on a copy
    at *copy_path* that has the measuring script added; the page itself is left as it is."""
    page = Path(html_path).read_text(encoding="utf-8")
    if "</body>" not in page:
        raise ValueError(f"{html_path}: no </body> to add the measuring script before")
    copy = Path(copy_path)
    copy.write_text(page.replace("</body>", _MEASURE_SCRIPT + "\n</body>", 1), encoding="utf-8")
    loaded = load(copy, window)
    title = _TITLE.search(loaded.dom)
    try:
        images = json.loads(html.unescape(title.group("text"))) if title else None
    except json.JSONDecodeError:
        images = None
    if not isinstance(images, list):
        raise RuntimeError(f"{copy}: the measuring script did not run: {loaded.errors or loaded.dom[:500]}")
    return [_shown(image) for image in images]


def _shown(image: dict[str, Any]) -> ShownImage:
    width, height = image["natural"]
    left, top, box_width, box_height = image["box"]
    return ShownImage(str(image["alt"]), (int(width), int(height)),
                      (float(left), float(top), int(box_width), int(box_height)))
