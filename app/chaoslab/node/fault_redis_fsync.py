"""A slow disk under Redis: the block device of its data directory capped at ``iops`` writes a second for
Redis's I/O, as a cloud disk out of IOPS credits is, so that fsyncs of its AOF (and the writes of an RDB save) wait.

The cap is the kernel's block I/O throttle of Redis's cgroup, for that one device: ``blkio.throttle.
write_iops_device`` (cgroup v1), the unit's ``IOWriteIOPSMax`` through ``systemctl set-property --runtime`` where
systemd runs Redis, or ``io.max`` (v2). Buffered writes are not held (they land in the page cache); what waits is
the writeback an fsync starts. Writes queue behind the cap (an fsync on ext4 takes a few: data and journal), and
with ``iops`` below 10 even a single write after a quiet moment waits about 1/iops s (the kernel grants the budget
per 100 ms). The directory
must be on a block device of Redis's own (the redis role mounts an ext4 image of ``redis_data_size_mib`` there): a
tmpfs has no disk to slow.

What Redis does then depends on its persistence: with ``appendfsync always`` every write command waits for an
fsync; with ``everysec`` its background fsync falls behind, and once one is pending for more than 2 s Redis's
writes wait too (``aof_delayed_fsync`` counts them); with no persistence the disk does not reach it.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaoslab.node.cgroupfs import cgroup_root, process_cgroup
from chaoslab.node.fault_record import Detail, Fault, Node
from chaoslab.node.fault_redis import client
from chaoslab.node.fault_redis_disk import own_filesystem, redis_dir

FAULT = "redis-slow-fsync"
V1_FILE = "blkio.throttle.write_iops_device"
PROBE_FILE = "chaoslab-fsync-probe"


def _block_device(directory: Path) -> tuple[int, int]:
    """(major, minor) of the block device the directory's filesystem is on; refused when it has none."""
    device = os.stat(directory).st_dev
    major, minor = os.major(device), os.minor(device)
    if major == 0 or not Path(f"/sys/dev/block/{major}:{minor}").exists():
        raise ValueError(f"{FAULT}: Redis's dir {os.readlink(directory)} is on no block device (a tmpfs has no disk "
                         "to slow); the redis role gives it an ext4 image with redis_data_size_mib")
    return major, minor


def _device_node(major: int, minor: int) -> str:
    """/dev/<name> of a block device (for systemd, which names devices by path)."""
    for line in Path(f"/sys/dev/block/{major}:{minor}/uevent").read_text(encoding="ascii").splitlines():
        if line.startswith("DEVNAME="):
            return "/dev/" + line.split("=", 1)[1]
    raise ValueError(f"{FAULT}: block device {major}:{minor} has no name")


def io_cgroup(pid: int) -> tuple[Path, str | None, int]:
    """(directory, systemd unit or None, cgroup version) of the process's block I/O cgroup."""
    found = process_cgroup(pid, "blkio")
    if found is None:
        raise ValueError(f"{FAULT}: Redis (pid {pid}) is in no block I/O cgroup")
    base, unit, version = found
    if version == 2 and unit is None and "io" not in (base / "cgroup.controllers").read_text(encoding="ascii").split():
        raise ValueError(f"{FAULT}: Redis's cgroup {base} has no io controller to throttle with")
    return found


def _v1_rules(cgroup: Path) -> dict[str, str]:
    rules = (line.split() for line in (cgroup / V1_FILE).read_text(encoding="ascii").splitlines())
    return {rule[0]: rule[1] for rule in rules if len(rule) == 2}


def _throttle(cgroup: Path, unit: str | None, version: int, device: str, iops: int | None) -> None:
    """Set (iops) or lift (None) the write throttle of *device* ("major:minor") for the cgroup."""
    if unit is not None:
        path = _device_node(*(int(part) for part in device.split(":")))
        setting = "IOWriteIOPSMax=" + ("" if iops is None else f"{path} {iops}")
        subprocess.run(["systemctl", "set-property", "--runtime", unit, setting], check=True, capture_output=True)
    elif version == 2:
        (cgroup / "io.max").write_text(f"{device} wiops={'max' if iops is None else iops}", encoding="ascii")
    else:
        (cgroup / V1_FILE).write_text(f"{device} {iops or 0}", encoding="ascii")


def _throttled(cgroup: Path, version: int, device: str) -> bool:
    if version == 1:
        return device in _v1_rules(cgroup)
    lines = (cgroup / "io.max").read_text(encoding="ascii").splitlines() if (cgroup / "io.max").exists() else []
    return any(line.startswith(device + " ") and "wiops=max" not in line for line in lines)


def redis_slow_fsync(values: dict[str, Any], node: Node) -> Fault:
    iops = int(values["iops"])
    pid, directory = redis_dir(node.name, fault=FAULT)
    own_filesystem(pid, directory, fault=FAULT)
    major, minor = _block_device(directory)
    device = f"{major}:{minor}"
    cgroup, unit, version = io_cgroup(pid)
    if _throttled(cgroup, version, device):
        raise ValueError(f"{FAULT}: Redis's disk {device} is throttled already; run faults/clear.yml first")

    def apply() -> Detail:
        _throttle(cgroup, unit, version, device, iops)
        return {"pid": pid, "dir": os.readlink(directory), "device": device, "cgroup": str(cgroup), "unit": unit,
                "cgroup_version": version}

    return Fault(FAULT, {"iops": iops}, apply, revert_redis_slow_fsync)


def revert_redis_slow_fsync(detail: Detail) -> None:
    cgroup_root()
    cgroup, unit, version = Path(str(detail["cgroup"])), detail.get("unit"), int(detail.get("cgroup_version") or 1)
    device = str(detail["device"])
    if unit is not None or cgroup.is_dir():  # a cgroup gone (Redis's unit stopped) holds no throttle
        _throttle(cgroup, unit, version, device, None)


def clear_throttle() -> list[str]:
    """Lift a throttle a lost agent left on the disk of this node's Redis; names what was lifted."""
    try:
        pid, directory = redis_dir("this node", timeout=2.0, fault=FAULT)
        device = "{}:{}".format(*_block_device(directory))
        cgroup, unit, version = io_cgroup(pid)
        if not _throttled(cgroup, version, device):
            return []
        _throttle(cgroup, unit, version, device, None)
    except (ValueError, OSError, subprocess.CalledProcessError):  # no Redis here, or none on a disk of its own
        return []
    return [f"write throttle of {device} for Redis {pid}"]


# ---------------------------------------------------------------------------------------------------------------
# Measurement

BURST_S = 0.5
"""How long one burst of the probe's back-to-back fsyncs lasts at most (a slow disk: one or two of them)."""
BURST_MAX = 20
PROBE_EVERY_S = 1.0
"""Rest between bursts: the probe takes Redis's share of the disk only a third of the time."""
WRITE_EVERY_S = 0.1
PROBE_KEY = "chaoslab:slow-fsync-probe"
PROBE_SOURCE = """
import os, sys, time
open(sys.argv[1], "w").write("0")  # join Redis's block I/O cgroup: share its disk's budget
fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
longest, most = float(sys.argv[3]), int(sys.argv[4])
while sys.stdin.readline():
    start, count = time.monotonic(), 0
    while count < most and time.monotonic() - start < longest:
        os.write(fd, b"chaoslab fsync probe\\n")
        began = time.monotonic()
        os.fsync(fd)
        count += 1
        print("fsync", time.monotonic() - began, flush=True)
    print("end", time.monotonic() - start, flush=True)
"""
STILL_WAITING_S = BURST_S + 0.1
"""A burst running this long is held up by an fsync the disk has not done: a fast disk ends one within BURST_S and
the one fsync it started last (milliseconds)."""


@dataclass(frozen=True)
class Burst:
    """One burst of the probe: back-to-back small fsyncs, how long they took, the first one alone, and the writes
    the disk completed meanwhile (its own count, every writer's)."""

    fsyncs: int
    seconds: float
    first: float
    disk_writes: int

    @property
    def rate(self) -> float:
        return self.fsyncs / self.seconds if self.seconds > 0 else math.inf

    @property
    def disk_rate(self) -> float:
        return self.disk_writes / self.seconds if self.seconds > 0 else math.inf


@dataclass
class InFlight:
    """The burst the probe is running: when it began, the disk's write count then, its fsyncs done so far."""

    start: float
    disk_writes: int
    fsyncs: int = 0
    first: float | None = None

    def so_far(self, now: float, disk_writes: int) -> Burst | None:
        """The burst as far as it went by *now*, once it has run so long that an fsync the disk has not done holds
        it up (None before: it may simply not be done yet). An fsync still waiting counts as its first when it
        is: at least as long as it has waited."""
        seconds = now - self.start
        if seconds < STILL_WAITING_S:
            return None
        return Burst(self.fsyncs, seconds, seconds if self.first is None else self.first,
                     disk_writes - self.disk_writes)


class FsyncProbe:
    """A process in Redis's block I/O cgroup (it shares Redis's budget of the disk) that, once per ``burst()``,
    writes a line to a file in Redis's dir and fsyncs it, back to back for up to BURST_S: how many small
    fsyncs a second the disk takes, and how long a single one waits."""

    def __init__(self, procs_file: Path, directory: Path, device: str) -> None:
        self.path = directory / PROBE_FILE
        self.stat = Path(f"/sys/dev/block/{device}/stat")
        self.current: InFlight | None = None
        self.process = subprocess.Popen([sys.executable, "-c", PROBE_SOURCE, str(procs_file), str(self.path),
                                         str(BURST_S), str(BURST_MAX)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def burst(self) -> Burst | None:
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            current = self.current = InFlight(time.monotonic(), self._disk_writes())
            self.process.stdin.write("1\n")
            self.process.stdin.flush()
            while (fields := self.process.stdout.readline().split())[:1] == ["fsync"] and len(fields) == 2:
                current.first = float(fields[1]) if current.first is None else current.first
                current.fsyncs += 1
            writes = self._disk_writes() - current.disk_writes
        except (OSError, ValueError):
            return None
        finally:
            self.current = None
        if len(fields) != 2 or fields[0] != "end" or current.first is None:  # the probe died (Redis's dir went)
            return None
        return Burst(current.fsyncs, float(fields[1]), current.first, writes)

    def in_flight(self) -> Burst | None:
        """The burst still running, as far as it went, when an fsync the disk has not done holds it up: a disk
        slow enough to hold the probe's first fsync for a whole window still shows in it (see InFlight.so_far)."""
        current = self.current
        if current is None:
            return None
        try:
            return current.so_far(time.monotonic(), self._disk_writes())
        except OSError:
            return None

    def _disk_writes(self) -> int:
        """Writes the disk completed so far (the block layer's count, /sys/dev/block/<dev>/stat)."""
        return int(self.stat.read_text(encoding="ascii").split()[4])

    def close(self, wait: float = 5.0) -> None:
        """End the probe and remove its file; with ``wait=0`` at once, not after the fsync it may be waiting for
        (the process ends when that returns: a fault's revert must not wait for its slow disk)."""
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
        try:
            self.process.wait(wait)
        except subprocess.TimeoutExpired:
            self.process.kill()
            if wait > 0:
                self.process.wait(wait)
            else:
                threading.Thread(target=self.process.wait, daemon=True).start()


def _bursts(procs_file: Path, directory: Path, device: str, count: int) -> list[Burst]:
    probe = FsyncProbe(procs_file, directory, device)
    try:
        return [burst for burst in (probe.burst() for _ in range(count)) if burst is not None]
    finally:
        probe.close()


def _persistence(conn: Any) -> dict[str, Any]:
    """What Redis writes to its disk: the AOF and its fsync policy, and RDB save points."""
    info = conn.info("persistence")
    config = conn.config_get("appendfsync") | conn.config_get("save")
    return {"aof_enabled": int(info.get("aof_enabled", 0)), "appendfsync": config.get("appendfsync"),
            "save": config.get("save") or ""}


def _delayed_fsyncs(conn: Any) -> int | None:
    try:
        return int(conn.info("persistence").get("aof_delayed_fsync", 0))
    except Exception:  # a Redis that does not answer for a moment
        return None


def _rate(bursts: list[Burst], disk: bool = False) -> float | None:
    rates = [burst.disk_rate if disk else burst.rate for burst in bursts]
    return round(statistics.median(rates), 1) if rates else None


def slow_fsync_effect(values: dict[str, Any], node: Node) -> Any:
    """Before the fault, and while in force: how many small fsyncs a second Redis's disk takes (a probe sharing
    Redis's block I/O cgroup, in bursts), how long a single one waits, how long Redis takes to answer a write
    (a client's SET), and the fsyncs Redis itself had to wait for."""
    import redis

    from chaoslab.node.fault_effect import EFFECTIVE, Window, effect

    iops = int(values["iops"])
    pid, directory = redis_dir(node.name, fault=FAULT)
    procs_file, device = io_cgroup(pid)[0] / "cgroup.procs", "{}:{}".format(*_block_device(directory))
    baseline = _rate(_bursts(procs_file, directory, device, 3))
    conn = client(timeout=2.0)
    before = _delayed_fsyncs(conn) or 0
    seen: dict[str, Any] = {}  # before the fault: a Redis behind a slow disk may not answer for seconds
    with contextlib.suppress(redis.RedisError):
        seen |= _persistence(conn)

    def during(window: Window) -> Detail:
        probe = FsyncProbe(procs_file, Path(f"/proc/{window.detail.get('pid')}/cwd"), device)
        bursts: list[Burst] = []
        writes: list[float] = []
        in_flight: list[float] = []  # when the SET still waiting for Redis was sent

        def write_often() -> None:  # beside the probe: a write Redis holds up must not hold up the probe
            conn = client(timeout=30.0)
            while not window.ended.wait(WRITE_EVERY_S):
                in_flight[:] = [time.monotonic()]
                with contextlib.suppress(redis.RedisError):
                    conn.set(PROBE_KEY, str(len(writes)), ex=60)
                    writes.append(time.monotonic() - in_flight[0])
                    if len(writes) % 10 == 1:
                        seen["delayed"] = _delayed_fsyncs(conn)
                in_flight.clear()

        def probe_often() -> None:
            while not window.ended.is_set():
                burst = probe.burst()
                if burst is not None and not window.ended.is_set():
                    bursts.append(burst)
                window.ended.wait(PROBE_EVERY_S)

        for work in (write_often, probe_often):
            threading.Thread(target=work, daemon=True).start()
        window.ended.wait()  # the fault ends now: take what was seen, and leave the probe and a SET in flight
        held = probe.in_flight()
        probe.close(wait=0)
        waited = [time.monotonic() - sent for sent in in_flight]  # a write still waiting: at least this long
        # a burst still held up counts only when none ended: the disk held the probe's fsyncs the whole window
        writes, bursts = writes + waited, list(bursts) or ([held] if held else [])
        after = seen.get("delayed")
        persistence = {key: seen[key] for key in ("aof_enabled", "appendfsync", "save") if key in seen}
        persists = bool(persistence.get("aof_enabled") or persistence.get("save"))
        rate = _rate(bursts)
        measured = {"fsyncs_per_s": rate, "fsyncs_per_s_before": baseline, "bursts": len(bursts),
                    "disk_writes_per_s": _rate(bursts, disk=True),
                    "single_fsync_median_ms": _ms(statistics.median(b.first for b in bursts) if bursts else None),
                    "redis_write_median_ms": _ms(statistics.median(writes) if writes else None),
                    "redis_write_max_ms": _ms(max(writes, default=None)), "redis_writes": len(writes),
                    "aof_delayed_fsync": None if after is None else after - before,
                    "redis_write_waiting_at_end": bool(waited), **persistence}
        how = (f"bursts of back-to-back small writes and fsyncs in Redis's dir (up to {BURST_S:g} s, one every "
               f"{PROBE_EVERY_S:g} s) by a probe in Redis's block I/O cgroup, so sharing Redis's budget of the "
               "disk, before the fault and while it lasts, and the writes the disk completed meanwhile (the block "
               "layer's count: an fsync on ext4 writes the data and the journal); when no burst ended while the "
               "fault lasted, the one an fsync still held up counts with what it did so far, that fsync as long "
               "as it had waited; a client's SET every "
               f"{WRITE_EVERY_S:g} s and the time Redis took to answer it; Redis's own count of fsyncs it waited "
               "for (INFO persistence aof_delayed_fsync); and whether Redis writes to the disk at all (an AOF or "
               "RDB save points: without either the slow disk does not reach Redis, and the fault is not "
               "effective)")
        # an fsync needs at least one write the cap holds back: the fsyncs' rate is below the cap when it holds
        # (the disk's own count may include writes another cgroup made, e.g. the journal's under cgroup v2)
        ratio = cap_ratio(iops, rate, baseline)
        return effect({"disk_writes_per_s_at_most": iops}, measured, ratio, how,
                      effective=persists and ratio is not None and ratio >= EFFECTIVE)

    return during


def cap_ratio(iops: int, rate: float | None, baseline: float | None) -> float | None:
    """How far the probe's fsyncs a second during the fault (*rate*) are below the cap, and the cap below the disk's
    rate before (*baseline*): the smaller of the two. None without a rate during the fault, or when neither bounds
    it (no fsync done in a whole burst, and no rate before)."""
    if rate is None:
        return None
    below = iops / rate if rate > 0 else math.inf
    ratio = min(below, math.inf if baseline is None else baseline / iops)
    return None if math.isinf(ratio) else ratio


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)
