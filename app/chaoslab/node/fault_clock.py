"""Clock skew on a node: its wall clock stepped (``step``) and made to run fast or slow (``drift``).

A step is ``clock_settime(CLOCK_REALTIME)``; a drift is the kernel's tick length (``adjtimex`` ``ADJ_TICK``:
10000 us per 1/100 s normally, 9000-11000 allowed, so up to 10 % either way). Celery reads this clock for ETA
and countdown tasks and kombu for the visibility timeout, so a skewed worker runs tasks early or late and hands
out again messages other workers still hold. At the end the tick is put back and the clock set to what it would
read had nothing happened: the wall clock before the fault plus the time that passed on the node's raw hardware
counter (``CLOCK_MONOTONIC_RAW``, which neither a step nor the tick changes).

A node of the local lab is a network namespace: it shares the one kernel clock with the host and every other
node (Linux time namespaces offset only the monotonic and boot clocks), so the fault is refused there.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from pathlib import Path
from typing import Any

from chaoslab.node.fault_record import IN_FORCE_AT, MEASURED_AT, Detail, Fault, Node

NORMAL_TICK = 10000
"""Microseconds per kernel tick (USER_HZ = 100) when the clock runs at its own rate."""
ADJ_TICK = 0x4000


class Timex(ctypes.Structure):
    """The kernel's struct timex (x86-64 and other 64-bit Linux)."""

    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
                ("time_sec", ctypes.c_long), ("time_usec", ctypes.c_long), ("tick", ctypes.c_long),
                ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long), ("shift", ctypes.c_int),
                ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
                ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
                ("_reserved", ctypes.c_int * 11)]


def tick(new: int | None = None) -> int:
    """The kernel's tick length in microseconds, after setting it to *new* where given."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    timex = Timex(modes=ADJ_TICK if new is not None else 0, tick=new or 0)
    if libc.adjtimex(ctypes.byref(timex)) < 0:
        error = ctypes.get_errno()
        raise OSError(error, f"adjtimex: {os.strerror(error)}")
    return int(timex.tick)


def shares_the_host_clock(netns_dir: str = "/run/netns") -> bool:
    """Whether this node is a named network namespace of a host (a local lab node: ``ip netns`` names each), not
    a machine of its own."""
    try:
        own = os.stat("/proc/self/ns/net")
        names = os.listdir(netns_dir)
    except OSError:
        return False
    for name in names:
        try:
            found = os.stat(os.path.join(netns_dir, name))
        except OSError:
            continue
        if (found.st_dev, found.st_ino) == (own.st_dev, own.st_ino):
            return True
    return False


def clock_skew(values: dict[str, Any], node: Node) -> Fault:
    step, drift = float(values["step"]), float(values["drift"])
    if shares_the_host_clock():
        raise ValueError(f"clock-skew: {node.name} is a network namespace of the local lab and shares the host's "
                         "one kernel clock with every node; run it on the Vagrant lab or real hosts")
    try:
        previous_tick = tick()
    except OSError as error:
        raise ValueError(f"clock-skew: {node.name} does not let its clock be read with adjtimex ({error})") from None

    def apply() -> Detail:
        wall, raw = time.clock_gettime(time.CLOCK_REALTIME), time.clock_gettime(time.CLOCK_MONOTONIC_RAW)
        try:
            if drift:
                tick(round(NORMAL_TICK * (1 + drift / 100)))
            if step:
                time.clock_settime(time.CLOCK_REALTIME, wall + step)
        except OSError as error:  # half applied: the tick goes back
            tick(previous_tick)
            raise ValueError(f"clock-skew: {node.name} refused to change its clock ({error})") from None
        # in force from the true time it began, not the time the stepped clock reads
        return {"wall": wall, "raw": raw, "boot": boot_id(), "tick": previous_tick, "step_s": step,
                "drift_percent": drift, IN_FORCE_AT: wall}

    return Fault("clock-skew", {"step": step, "drift": drift}, apply, revert_clock_skew)


def boot_id() -> str:
    """This boot's id: the raw counter starts again at a reboot."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return ""


def revert_clock_skew(detail: Detail) -> None:
    """Put the tick back and the clock where it would be had nothing happened (within the same boot: after a
    reboot the raw counter says nothing of the time before, and the node's own time sync has set the clock)."""
    tick(int(detail.get("tick") or NORMAL_TICK))
    wall, raw = detail.get("wall"), detail.get("raw")
    if isinstance(wall, float) and isinstance(raw, float) and detail.get("boot") == boot_id():
        time.clock_settime(time.CLOCK_REALTIME, wall + time.clock_gettime(time.CLOCK_MONOTONIC_RAW) - raw)


SAMPLE_EVERY_S = 0.25


def _offset() -> tuple[float, float]:
    """(the raw hardware counter now, the wall clock's lead over it)."""
    raw = time.clock_gettime(time.CLOCK_MONOTONIC_RAW)
    return raw, time.clock_gettime(time.CLOCK_REALTIME) - raw


def _line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares intercept (at the first point) and slope of *points*."""
    start = points[0][0]
    xs, ys = [x - start for x, _ in points], [y for _, y in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread if spread else 0.0
    return mean_y - slope * mean_x, slope


def clock_skew_effect(values: dict[str, Any], _node: Node) -> Any:
    """The wall clock against the node's raw hardware counter, which neither a step nor the tick moves: its lead
    before the fault, then sampled while in force. The step is the lead gained, the drift its slope."""
    from chaoslab.node.fault_effect import Window, effect

    step, drift = float(values["step"]), float(values["drift"])
    _, before = _offset()

    def during(window: Window) -> Detail:
        points = [(raw, lead - before) for raw, lead in [_offset()]]
        while not window.ended.wait(SAMPLE_EVERY_S):
            raw, lead = _offset()
            points.append((raw, lead - before))
        seen_step, slope = _line(points) if len(points) > 1 else (points[0][1], 0.0)
        seen_drift = slope * 100
        near_step = abs(seen_step - step) <= max(0.1 * abs(step), 0.05)
        near_drift = abs(seen_drift - drift) <= max(0.1 * abs(drift), 0.2)
        ratios = [seen_step / step] if step else []
        ratios += [seen_drift / drift] if drift else []
        found = effect({"step_s": step, "drift_percent": drift},
                       {"step_s": round(seen_step, 4), "drift_percent": round(seen_drift, 3),
                        "samples": len(points), "seconds": round(points[-1][0] - points[0][0], 1)},
                       min(ratios) if ratios else None,
                       "the node's wall clock against its raw hardware counter (CLOCK_MONOTONIC_RAW), sampled every "
                       "0.25 s: the lead it gained (step) and how fast the lead grew (drift)",
                       effective=near_step and near_drift)
        # recorded at the true time (the wall clock is still skewed), as its window's events are
        return {**found, MEASURED_AT: time.clock_gettime(time.CLOCK_MONOTONIC_RAW) + before}

    return during
