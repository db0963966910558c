"""The drain phase gives the workers its whole duration after the load has stopped, however long stopping took."""

from __future__ import annotations

import time
from types import SimpleNamespace

from chaoslab.experiment.runner import Runner


class SlowStopControl:
    """A lab whose load takes a while to stop (a playbook on emulated VMs takes minutes)."""

    info = SimpleNamespace()

    def __init__(self, stop_s: float) -> None:
        self.stop_s = stop_s
        self.calls: list[bool] = []

    def set_load(self, enabled: bool, profile: dict | None = None) -> None:
        self.calls.append(enabled)
        time.sleep(self.stop_s)


def test_the_drain_waits_its_duration_from_when_the_load_stopped():
    control = SlowStopControl(stop_s=0.3)
    runner = Runner(control)  # type: ignore[arg-type]
    waits: list[float] = []
    runner._wait = lambda seconds, live, display, until=None: waits.append(seconds)  # type: ignore[method-assign]
    state = SimpleNamespace(phases=[], write=lambda: None)
    display = SimpleNamespace(start_phase=lambda name, duration: None)
    drain = SimpleNamespace(name="drain", duration=0.5, fault=None)
    runner._phase(state, drain, None, display, SimpleNamespace(counts={}))  # type: ignore[arg-type]
    assert control.calls == [False]
    assert waits == [0.5]
    assert state.phases[0]["end"] >= state.phases[0]["start"] + 0.3
