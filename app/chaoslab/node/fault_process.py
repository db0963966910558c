"""Process faults on this node: kill or freeze the Celery worker, CPU and memory pressure with stress-ng."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import time
from typing import Any

import psutil

from chaoslab.node.cgroupfs import memory_files, memory_limit
from chaoslab.node.fault_record import IN_FORCE_AT, Detail, Fault, Node, Stop, hold_until
from chaoslab.node.node_procs import same_netns, worker_processes
from chaoslab.units import parse_bytes, parse_percent

Workers = tuple[psutil.Process | None, list[psutil.Process]]


def _still(found: Workers | None) -> Workers:
    """The worker's processes as found earlier when each is still the process found (same pid, same start), else
    found again: listing the node's processes takes tens of milliseconds, too long for a fault fired on a condition."""
    if found is not None and found[0] is not None and all(proc.is_running() for proc in (found[0], *found[1])):
        return found
    return worker_processes()


def kill_worker(mode: str, found: Workers | None = None) -> list[int]:
    """SIGKILL the main process, one pool child, or every worker process (*found*: as listed before, when still
    running); returns the pids killed."""
    main, children = _still(found)
    if main is None:
        return []
    victims = {"main": [main], "child": children[:1], "all": [*children, main]}[mode]
    killed = []
    for proc in victims:
        try:
            proc.send_signal(signal.SIGKILL)
            killed.append(proc.pid)
        except psutil.Error:
            continue
    return killed


def signal_workers(sig: signal.Signals) -> list[int]:
    main, children = worker_processes()
    signalled = []
    for proc in ([main] if main else []) + children:
        try:
            proc.send_signal(sig)
            signalled.append(proc.pid)
        except psutil.Error:
            continue
    return signalled


def thaw_workers(_detail: Detail | None = None) -> list[int]:
    return signal_workers(signal.SIGCONT)


# Every stress-ng a fault starts carries this in its environment (its workers inherit it): clear stops those and
# leaves any other stress-ng on the node alone.
MARKER = "CHAOSLAB_FAULT"


def _marked(proc: psutil.Process) -> bool:
    try:
        return MARKER in proc.environ()
    except psutil.Error:
        return False


def stress_processes() -> list[psutil.Process]:
    """stress-ng processes a fault started on this node (same network namespace, the lab's marker), with their
    workers (stress-ng does not pass its environment on to them)."""
    marked = [proc for proc in psutil.process_iter(["name"]) if (proc.info["name"] or "").startswith("stress-ng")
              and same_netns(proc.pid) and _marked(proc)]
    found = {proc.pid: proc for proc in marked}
    for proc in marked:
        with contextlib.suppress(psutil.Error):
            found.update({child.pid: child for child in proc.children(recursive=True)})
    return list(found.values())


def stop_stress(_detail: Detail | None = None) -> int:
    """Stop this node's stress-ng: SIGTERM to each top process (it stops and reaps its workers), then SIGKILL."""
    found = stress_processes()
    pids = {proc.pid for proc in found}
    tops = []
    for proc in found:
        with contextlib.suppress(psutil.Error):
            if proc.ppid() not in pids:
                proc.terminate()
                tops.append(proc)
    psutil.wait_procs(tops, timeout=3)  # reaps the ones this process started
    left = stress_processes()
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(left, timeout=5)
    return len(found)


def worker_kill(values: dict[str, Any], _node: Node) -> Fault:
    mode, every = str(values["mode"]), float(values["every"])
    killed: list[int] = []
    armed: list[Workers] = []
    at: list[float] = []

    def arm() -> None:
        armed[:] = [worker_processes()]

    def kill() -> None:
        pids = kill_worker(mode, armed.pop() if armed else None)
        at[:] = [time.time()]
        killed.extend(pids)
        # each kill in the node's event ledger: a message the main process had just taken from the queue and not
        # yet recorded anywhere is lost with it
        fault.note("kill", {"pids": pids, "main": mode in ("main", "all") and bool(pids)})

    def apply() -> Detail:
        kill()
        return {"killed": killed, IN_FORCE_AT: at[0]}  # the kill, not its record in the event ledger

    def hold(deadline: float | None, stop: Stop) -> None:
        hold_until(deadline, stop, every, kill)

    fault = Fault("worker-kill", {"mode": mode, "every": every}, apply, hold=hold, arm=arm)
    return fault


def worker_pause(_values: dict[str, Any], _node: Node) -> Fault:
    return Fault("worker-pause", {}, lambda: {"frozen": signal_workers(signal.SIGSTOP)}, thaw_workers)


def _stress(name: str, params: dict[str, object], options: list[str], duration: float) -> Fault:
    """stress-ng with ``options`` in this node (its cgroup); it stops by itself at the deadline too."""
    command = ["stress-ng", *options, "--quiet"]
    if duration > 0:
        command += ["--timeout", f"{math.ceil(duration)}s"]

    def apply() -> Detail:
        # none of the caller's streams: a stressor left running (a fault held until clear) must not keep the
        # command that applied it waiting for their end
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True, env={**os.environ, MARKER: name})
        return {"pid": proc.pid, "command": command}

    return Fault(name, params, apply, stop_stress)


def cpu_exhaustion(values: dict[str, Any], _node: Node) -> Fault:
    workers, load = int(values["workers"]) or os.cpu_count() or 1, int(values["load"])
    return _stress("cpu-exhaustion", {"workers": workers, "load": load},
                   ["--cpu", str(workers), "--cpu-load", str(load)], float(values["duration"]))


def node_memory() -> int:
    """This node's memory: its cgroup's limit where one is set, else the machine's."""
    limit_file, _, _ = memory_files("self")
    return memory_limit(limit_file, psutil.virtual_memory().total)


def memory_bytes(size: str, available: int) -> int:
    """Bytes for ``size``: an amount with unit ("512MiB") or a share of the node's memory ("80%")."""
    if size.strip().endswith("%"):
        share = parse_percent(size)
        if share <= 0:
            raise ValueError(f"memory-exhaustion: bytes={size} must be above 0%")
        return int(available * share / 100)
    try:
        wanted = parse_bytes(size)
    except ValueError as error:
        raise ValueError(f"memory-exhaustion: bytes: {error}, or a share of the node's memory like 80%") from None
    if wanted <= 0 or wanted > available:
        raise ValueError(f"memory-exhaustion: bytes={size} must be above 0 and at most the node's memory "
                         f"({available // 2**20}MiB)")
    return wanted


# How often the stressors' OOM score is set back where they must not be the OOM killer's first choice (stress-ng sets
# it in each worker it starts, and again in one it restarts).
OOM_RESET_EVERY_S = 0.2


def oom_score_reset() -> int:
    """The fault's stress-ng processes at oom_score_adj 0 (stress-ng puts its workers at 1000, the OOM killer's first
    choice); returns how many were changed."""
    changed = 0
    for proc in stress_processes():
        path = f"/proc/{proc.pid}/oom_score_adj"
        with contextlib.suppress(OSError):
            with open(path, encoding="ascii") as current:
                if current.read().strip() == "0":
                    continue
            with open(path, "w", encoding="ascii") as adj:
                adj.write("0")
            changed += 1
    return changed


def memory_exhaustion(values: dict[str, Any], _node: Node) -> Fault:
    workers, duration, oom = int(values["workers"]), float(values["duration"]), str(values["oom"])
    total = memory_bytes(str(values["bytes"]), node_memory())
    # stress-ng shares --vm-bytes among its VM workers; --vm-populate touches every page at once.
    fault = _stress("memory-exhaustion", {"bytes": total, "workers": workers, "oom": oom},
                    ["--vm", str(workers), "--vm-bytes", f"{total}b", "--vm-keep", "--vm-populate", "--vm-hang", "0"],
                    duration)
    if oom == "largest":
        fault.hold = lambda deadline, stop: hold_until(deadline, stop, OOM_RESET_EVERY_S, oom_score_reset)
    return fault
