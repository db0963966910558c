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

Whether the page parsed is checked separately with ``--dump-dom`` (:func:`dump_dom`): the
serialised DOM after loading, to look for expected elements. That images decoded is best
checked on the screenshot's pixels (a colour only the figures contain).

Every run uses a fresh ``--user-data-dir`` and no network features (no QUIC, sync,
component updates or background networking); a run that hangs is killed with its whole
process group after *timeout* seconds.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class Rendering:
    png: Path
    console: list[str]
    """Every console message the page produced (the full stderr line)."""
    stderr: str

    @property
    def errors(self) -> list[str]:
        """Console messages that are errors: uncaught exceptions, failed loads, CSP refusals."""
        return [line for line in self.console if any(marker in line for marker in _ERROR_MARKERS)]


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
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={png}",
            f"--window-size={window[0]},{window[1]}",
            "--virtual-time-budget=5000",
            _uri(html_path),
        ],
        timeout,
    )
    if result.returncode != 0 or not png.exists():
        raise RuntimeError(f"chromium failed ({result.returncode}), no screenshot:\n{result.stderr[-3000:]}")
    return Rendering(png, console_messages(result.stderr), result.stderr)


def dump_dom(html_path: str | os.PathLike[str], timeout: float = 90.0) -> str:
    """The DOM of the loaded page, serialised by Chromium (``--dump-dom``)."""
    result = _run(["--virtual-time-budget=5000", "--dump-dom", _uri(html_path)], timeout)
    if result.returncode != 0:
        raise RuntimeError(f"chromium --dump-dom failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout
