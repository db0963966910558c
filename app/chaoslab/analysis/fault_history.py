"""Fault windows from the nodes' event ledgers as they are now: what faults run by hand did, and what they measured.

A run's checker reads the event ledgers it collected; ``chaoslab faults`` reads them from the nodes, for faults
started with ``ansible-playbook faults/<fault>.yml`` or the API (the ledgers are emptied when a run starts).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chaoslab.analysis.checker import FaultWindow, effect_line, fault_windows


@dataclass(frozen=True)
class HistoryRow:
    window: FaultWindow
    in_force: bool

    def effective(self) -> str:
        effect = self.window.effect
        if effect is None:
            return "in force, not measured yet" if self.in_force else "not measured"
        return {True: "yes", False: "NOT EFFECTIVE"}.get(effect.get("effective"), "not measured")

    def as_dict(self) -> dict[str, Any]:
        window = self.window
        return {"fault": window.fault, "node": window.target, "start": window.start,
                "end": None if self.in_force else window.end, "in_force": self.in_force, "effect": window.effect,
                "effective": self.effective()}


def _t(record: Mapping[str, Any]) -> float | None:
    t = record.get("t")
    return float(t) if isinstance(t, int | float) and not isinstance(t, bool) else None


def history(records: Iterable[Mapping[str, Any]], now: float) -> list[HistoryRow]:
    """Every fault window the records hold, oldest first; a window with no ``reverted`` record is in force."""
    events: list[tuple[float, str, str, str]] = []
    effects: list[tuple[float, str, str, dict[str, Any]]] = []
    for record in records:
        t = _t(record)
        if record.get("type") != "fault" or t is None:
            continue
        fault, node = str(record.get("fault")), str(record.get("node"))
        if record.get("event") in ("applied", "reverted"):
            events.append((t, str(record["event"]), fault, node))
        elif record.get("event") == "measured" and isinstance(record.get("effect"), dict):
            effects.append((t, fault, node, dict(record["effect"])))
    closed = {(fault, node, t) for t, event, fault, node in events if event == "reverted"}
    rows = []
    for window in fault_windows(events, now, effects):
        rows.append(HistoryRow(window, (window.fault, window.target, window.end) not in closed))
    return rows


def describe(row: HistoryRow) -> str:
    """What the fault did, in words: its measured effect, or why there is none."""
    if row.window.effect is None:
        return "the agent measures it while in force" if row.in_force else \
            "no measurement (a fault without a duration, or a kind not measured)"
    return effect_line(row.window.effect)
