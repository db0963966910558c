"""Notes on clocks a run's offsets cannot correct: a clock-skew fault's window."""

from __future__ import annotations

from chaoslab import clock
from chaoslab.analysis.checker import FaultWindow


def test_a_clock_skew_window_is_named_with_its_measured_step_and_drift() -> None:
    effect = {"asked": {"step_s": 30.0, "drift_percent": 5.0}, "measured": {"step_s": 29.98, "drift_percent": 4.9}}
    found = clock.skew_warnings([FaultWindow("clock-skew", 100.0, 190.0, "worker-1", effect=effect),
                                 FaultWindow("network-delay", 100.0, 190.0, "redis")])
    assert found == ["the clock of worker-1 was stepped +30 s and ran +4.9 % fast during clock-skew (measured): the "
                     "times it recorded in that window are on its skewed clock (the run's clock offsets are measured "
                     "at its start and end), so latencies of tasks it handled then are off by up to 34.4 s"]


def test_an_unmeasured_clock_skew_is_named_with_what_was_asked() -> None:
    window = FaultWindow("clock-skew", 0.0, 10.0, "worker-2", effect={"asked": {"step_s": -2.0, "drift_percent": 0}})
    assert clock.skew_warnings([window])[0].startswith("the clock of worker-2 was stepped -2 s and ran +0 % fast "
                                                       "during clock-skew (asked)")


def test_a_run_without_clock_skew_has_no_such_note() -> None:
    assert clock.skew_warnings([FaultWindow("worker-kill", 0.0, 1.0, "worker-1")]) == []
