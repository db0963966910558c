"""The slow-fsync fault's probe: bursts of real fsyncs read as they happen, a burst an fsync holds up past the
window still counted, and the ratio that says whether the cap held."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from chaoslab.node.fault_redis_fsync import BURST_S, STILL_WAITING_S, Burst, FsyncProbe, InFlight, cap_ratio


@pytest.fixture
def probe(tmp_path: Path):
    devices = sorted(os.listdir("/sys/dev/block"))
    if not devices:
        pytest.skip("no block device to read a write count from")
    procs = tmp_path / "cgroup.procs"  # the probe joins "Redis's cgroup" by writing 0 to it: here a plain file
    procs.write_text("")
    probe = FsyncProbe(procs, tmp_path, devices[0])
    yield probe
    with contextlib.suppress(ProcessLookupError):
        os.kill(probe.process.pid, signal.SIGCONT)
    probe.close()


def test_a_burst_counts_the_fsyncs_it_did_and_how_long_the_first_took(probe):
    burst = probe.burst()
    assert burst is not None and 1 <= burst.fsyncs <= 20
    assert 0 < burst.first <= burst.seconds <= BURST_S + 1
    assert probe.in_flight() is None  # nothing runs between bursts
    assert probe.path.read_text().count("chaoslab fsync probe") == burst.fsyncs


def test_a_burst_held_up_for_longer_than_a_fast_disk_takes_counts_with_what_it_did_so_far(probe):
    os.kill(probe.process.pid, signal.SIGSTOP)  # held up as by an fsync the disk does not do: nothing comes back
    done: list[Burst | None] = []
    runner = threading.Thread(target=lambda: done.append(probe.burst()))
    runner.start()
    time.sleep(0.1)
    assert probe.in_flight() is None  # a burst just begun may simply not be done yet
    time.sleep(STILL_WAITING_S)
    held = probe.in_flight()
    assert held is not None and held.fsyncs == 0 and held.rate == 0
    assert held.seconds >= STILL_WAITING_S and held.first == held.seconds  # its fsync waited at least this long
    os.kill(probe.process.pid, signal.SIGCONT)
    runner.join(10)
    assert done and done[0] is not None and done[0].fsyncs >= 1
    assert probe.in_flight() is None


def test_a_burst_so_far_keeps_the_fsyncs_it_did_and_the_disks_writes_since_it_began():
    current = InFlight(start=100.0, disk_writes=40, fsyncs=3, first=0.25)
    assert current.so_far(100.0 + STILL_WAITING_S - 0.01, 41) is None
    assert current.so_far(102.0, 50) == Burst(3, 2.0, 0.25, 10)


@pytest.mark.parametrize(("rate", "baseline", "ratio"), [
    (2.0, 400.0, 2.5),  # the probe got 2 fsyncs a second under a cap of 5: 2.5 times below it
    (10.0, 400.0, 0.5),  # twice the cap: it did not hold
    (0.0, 400.0, 80.0),  # no fsync done in a whole burst: the cap held; bounded by the disk's rate before
    (2.0, None, 2.5),
    (0.0, None, None),  # nothing bounds it
    (None, 400.0, None),  # nothing measured during the fault
    (5.0, 3.0, 0.6),  # a disk slower than the cap before: the cap cannot be what slowed it
])
def test_the_cap_ratio(rate, baseline, ratio):
    assert cap_ratio(5, rate, baseline) == (None if ratio is None else pytest.approx(ratio))
