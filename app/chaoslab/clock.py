"""Clock offsets between the lab's machines, measured against one reference every node reaches: the broker's clock.

Each node (and the controller) asks Redis for its ``TIME`` a number of times and keeps the answer with the shortest
round trip: offset = the middle of the round trip on the local clock - the broker's time, known to within half that
round trip. A node's offset to the controller is its offset to the broker minus the controller's. The runner measures
at the start and at the end of a run; the checker corrects each node's records by the offset, interpolated in time.

On a node, ``python -m chaoslab.node.clock_record --events FILE`` appends a ``clock`` record to its event
ledger::

    {"type": "clock", "node": "worker-1", "t": ..., "offset": 0.0021, "uncertainty": 0.0004}
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

SAMPLES: Final = 20
WARN_OFFSET_S: Final = 0.050
"""An offset above this (at the start or end of a run) is named in the verdict."""


class TimeSource(Protocol):
    def time(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class Offset:
    """This clock minus the reference clock, at local time ``t``, known to within ``uncertainty`` seconds."""

    t: float
    offset: float
    uncertainty: float


def measure(source: TimeSource, samples: int = SAMPLES, clock: Callable[[], float] = time.time) -> Offset:
    """The offset of the local clock to *source*'s ``TIME`` (a Redis client), from the fastest of *samples* asks."""
    best: tuple[float, float, float] | None = None
    for _ in range(samples):
        before = clock()
        seconds, micros = source.time()
        after = clock()
        round_trip = after - before
        if best is None or round_trip < best[0]:
            best = (round_trip, (before + after) / 2, seconds + micros / 1e6)
    if best is None:
        raise ValueError("clock: at least one sample is needed")
    round_trip, middle, reference = best
    return Offset(t=middle, offset=middle - reference, uncertainty=round_trip / 2)


@dataclass(frozen=True, slots=True)
class Correction:
    """How far one node's clock ran ahead of the controller's, at two instants; linear in between."""

    t0: float
    offset0: float
    t1: float
    offset1: float
    uncertainty: float = 0.0

    def at(self, t: float) -> float:
        if self.t1 <= self.t0:
            return self.offset0
        share = min(max((t - self.t0) / (self.t1 - self.t0), 0.0), 1.0)
        return self.offset0 + (self.offset1 - self.offset0) * share

    @property
    def largest(self) -> float:
        return max(abs(self.offset0), abs(self.offset1))

    def significant(self) -> bool:
        """Whether the offset is larger than what the measurement can tell from zero."""
        return self.largest > self.uncertainty

    def to_dict(self) -> dict[str, float]:
        return {"t0": self.t0, "offset0": self.offset0, "t1": self.t1, "offset1": self.offset1,
                "uncertainty": self.uncertainty}


def corrections(node_records: Iterable[Mapping[str, Any]], controller: Iterable[Offset]) -> dict[str, Correction]:
    """Per node, its offset to the controller at its first and last ``clock`` record (both to the broker)."""
    mine = sorted(controller, key=lambda offset: offset.t)
    if not mine:
        return {}
    by_node: dict[str, list[Mapping[str, Any]]] = {}
    for record in node_records:
        if record.get("type") == "clock":
            by_node.setdefault(str(record["node"]), []).append(record)
    found = {}
    for node, records in by_node.items():
        records.sort(key=lambda record: float(record["t"]))
        first, last = records[0], records[-1]
        start = _nearest(mine, float(first["t"]))
        end = _nearest(mine, float(last["t"]))
        uncertainty = max(float(first["uncertainty"]) + start.uncertainty, float(last["uncertainty"]) + end.uncertainty)
        found[node] = Correction(float(first["t"]), float(first["offset"]) - start.offset,
                                 float(last["t"]), float(last["offset"]) - end.offset, uncertainty)
    return found


def _nearest(offsets: list[Offset], t: float) -> Offset:
    return min(offsets, key=lambda offset: abs(offset.t - t))


def from_dict(data: Mapping[str, Mapping[str, float]]) -> dict[str, Correction]:
    return {node: Correction(**values) for node, values in data.items()}


def warnings(found: Mapping[str, Correction], limit: float = WARN_OFFSET_S) -> list[str]:
    """One line per node whose clock was more than *limit* off the controller's."""
    return [f"the clock of {node} was {correction.largest * 1000:.0f} ms off the controller's (records corrected)"
            for node, correction in sorted(found.items()) if correction.largest > limit]


def skew_warnings(faults: Iterable[Any]) -> list[str]:
    """One line per clock-skew window (a checker ``FaultWindow``): the records its node made then are on a clock
    the run's offsets (measured at its start and end) do not see, so their times are off by up to the skew."""
    found = []
    for window in faults:
        if window.fault != "clock-skew":
            continue
        effect = window.effect or {}
        shown = effect.get("measured") or effect.get("asked") or {}
        step, drift = float(shown.get("step_s") or 0.0), float(shown.get("drift_percent") or 0.0)
        worst = abs(step) + abs(drift) / 100 * max(window.end - window.start, 0.0)
        which = "measured" if effect.get("measured") else "asked"
        found.append(f"the clock of {window.target or 'its node'} was stepped {step:+.3g} s and ran {drift:+.3g} % "
                     f"fast during clock-skew ({which}): the times it recorded in that window are on its skewed "
                     f"clock (the run's clock offsets are measured at its start and end), so latencies of tasks it "
                     f"handled then are off by up to {worst:.3g} s")
    return found
