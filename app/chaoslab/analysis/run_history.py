"""One reading of a run's history: everything the checker needs, read from a run directory.

    summary = check_run("experiments/results/<run-id>")

A run directory holds ``run.json`` (the runner's: phases, planned fault windows, run end, clock corrections),
``ledgers/*.jsonl`` (the task ledgers and each node's event ledger) and ``snapshot.json`` (the broker and result
backend at collection, see :mod:`chaoslab.broker_state`). The runner and the report both check a run through here,
so they cannot read it differently.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from chaoslab import broker_state, clock
from chaoslab.analysis.checker import ResultLookup, Summary, check
from chaoslab.ledger import ReadStats, read_records

LEDGERS_DIR: Final = "ledgers"
EVENTS_SUFFIX: Final = ".events.jsonl"
SETTINGS_SUFFIX: Final = ".settings.json"

StrPath = str | os.PathLike[str]


def ledger_paths(run_dir: StrPath) -> list[Path]:
    """Every ledger of the run: the task ledgers and the nodes' event ledgers."""
    return sorted((Path(run_dir) / LEDGERS_DIR).glob("*.jsonl"))


def event_paths(run_dir: StrPath) -> list[Path]:
    return sorted((Path(run_dir) / LEDGERS_DIR).glob(f"*{EVENTS_SUFFIX}"))


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


def check_run(run_dir: StrPath, run: Mapping[str, Any], stats: ReadStats | None = None,
              results: ResultLookup | None = None) -> Summary:
    """The checker over a run directory (its ledgers, snapshot and clock corrections); *results* looks up the result
    backend for the tasks the ledgers do not show completed (the runner's, before snapshot.json holds them)."""
    return check(read_records(ledger_paths(run_dir), stats), run.get("phases") or [], planned_faults(run),
                 run_end(run), snapshot=broker_state.read(run_dir), clocks=clock.from_dict(run.get("clocks") or {}),
                 results=results)


def worker_settings(run_dir: StrPath) -> dict[str, Any]:
    """Each worker's effective settings as it reported them (``<node>.settings.json``)."""
    import json

    found = {}
    for path in sorted((Path(run_dir) / LEDGERS_DIR).glob(f"*{SETTINGS_SUFFIX}")):
        try:
            found[path.name.removesuffix(SETTINGS_SUFFIX)] = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
    return found
