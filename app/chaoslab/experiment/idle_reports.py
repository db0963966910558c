"""Run reports rendered beside a study instead of between its runs: each report (plots, a few seconds of CPU) in its
own process at the kernel's idle scheduling class (SCHED_IDLE), which runs only on CPU time nothing else wants, so
the next run starts at once and its figures are not perturbed by the drawing."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path


class IdleReports:
    """Callable with a run directory: starts ``chaoslab report`` on it; :meth:`wait` waits for every one."""

    def __init__(self) -> None:
        self.pending: list[tuple[Path, subprocess.Popen[bytes]]] = []

    def __call__(self, directory: Path) -> None:
        command = [sys.executable, "-m", "chaoslab.cli", "report", str(directory)]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # set from here, not in the child before exec (the runner has threads): its first milliseconds run as usual
        with contextlib.suppress(ProcessLookupError):  # it has ended already
            os.sched_setscheduler(process.pid, os.SCHED_IDLE, os.sched_param(0))
        self.pending.append((directory, process))

    def wait(self) -> list[str]:
        """Wait for every report started; one line per report that failed."""
        failed = []
        for directory, process in self.pending:
            _out, err = process.communicate()
            if process.returncode != 0:
                last = (err.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
                failed.append(f"{directory}: report failed ({last})")
        self.pending = []
        return failed
