"""One reading of a run's history: the checker over a run directory, and its output read back.

    summary = check_run("experiments/results/<run-id>", run)
    checked = load_check("experiments/results/<run-id>", run)

The checker reads ``run.json`` (the runner's: phases, planned fault windows, run end, clock corrections),
``ledgers/*.jsonl`` (the task ledgers and each node's event ledger) and ``snapshot.json`` (the broker and result
backend at collection, see :mod:`chaoslab.broker_state`), named by :mod:`chaoslab.analysis.run_dir`. The runner checks
a run through here; the report reads what the checker wrote, and checks the run here only for what it did not write,
so the two cannot read a run differently.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from chaoslab import clock
from chaoslab.analysis import run_dir
from chaoslab.analysis.checker import ResultLookup, Summary, check
from chaoslab.analysis.run_dir import StrPath
from chaoslab.ledger import ReadStats, read_records

IN_MEMORY: Final = "the ledgers (summary.json missing; checked in memory)"
SKIPPED_LINES: Final = ("torn_tails", "corrupt_lines", "torn_fragments", "oversized_lines")
"""Counts of :class:`chaoslab.ledger.ReadStats`: ledger lines the reader skipped."""


def run_end(run: Mapping[str, Any]) -> float:
    """The end of the run's last phase (what its figures cover); else when the runner ended."""
    if run.get("run_end"):
        return float(run["run_end"])
    phases = run.get("phases") or []
    ends = [float(phase["end"]) for phase in phases if phase.get("end")]
    return max(ends) if ends else float(run.get("ended") or run.get("started") or 0.0)


def planned_faults(run: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The runner's fault windows (used only when the nodes' own fault records are missing)."""
    return [{"fault": fault["fault"], "start": fault["start"], "end": fault.get("end") or run_end(run),
             "target": fault.get("target") or ""}
            for fault in run.get("faults") or [] if fault.get("start") is not None]


def check_run(directory: StrPath, run: Mapping[str, Any], stats: ReadStats | None = None,
              results: ResultLookup | None = None) -> Summary:
    """The checker over a run directory (its ledgers, snapshot and clock corrections); *results* looks up the result
    backend for the tasks the ledgers do not show completed (the runner's, before snapshot.json holds them). The
    ledger lines the reader skipped join the summary's record counts (:data:`SKIPPED_LINES`)."""
    stats = stats if stats is not None else ReadStats()
    summary = check(read_records(run_dir.ledger_paths(directory), stats), run.get("phases") or [],
                    planned_faults(run), run_end(run), snapshot=run_dir.read_snapshot(directory),
                    clocks=clock.from_dict(run.get("clocks") or {}), results=results)
    summary.records.update({name: getattr(stats, name) for name in SKIPPED_LINES})
    return summary


def load_check(directory: StrPath, run: Mapping[str, Any], stats: ReadStats | None = None) -> run_dir.Check:
    """What the checker wrote into the run directory. A run without summary.json or tasks.csv (aborted before the
    check) is checked here in memory, and nothing is written; a run made before the checker wrote executions.csv
    gets its executions from the same check."""
    parts = run_dir.read_parts(directory)
    if parts.summary is None or parts.tasks is None:
        return run_dir.check_of(check_run(directory, run, stats), IN_MEMORY)
    executions = parts.executions if parts.executions is not None else check_run(directory, run, stats).executions
    return run_dir.checked(parts.summary, parts.tasks, executions)
