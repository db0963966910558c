"""A fault's trigger watched on its node (:mod:`chaoslab.triggers`): the worker's task ledger followed as it grows,
or Redis's unacknowledged set polled, until the condition holds.

What the watch returns when the condition holds is recorded in the node's event ledger (``triggered``): the
condition, the instant it held (``at``: the ledger record that made it hold, written by the worker as it happened,
or the poll that saw it), and the tasks in the window then (``ids``: the executions running, the messages held or
the execution that started). The agent adds when the fault was in force and the delay between the two.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from chaoslab import ledger
from chaoslab.brokers import of_url
from chaoslab.node.fault_record import Detail, Stop, before_raw_end, raw_end
from chaoslab.triggers import Trigger

POLL_S = 0.005
"""How often the ledger (or Redis) is read again while the condition does not hold: a small part of the 100 ms the
lab allows between the condition and the fault in force."""
UNACKED_KEY = "unacked"
"""kombu's Redis transport keeps each message a worker took and has not acknowledged in this hash."""

Watch = Callable[[float | None, Stop], Detail | None]


def _alive(record: dict[str, Any]) -> bool:
    """Whether the process that wrote *record* still runs (same pid, same start: pids are reused)."""
    try:
        started = psutil.Process(int(record["pid"])).create_time()
    except (psutil.Error, KeyError, TypeError, ValueError):
        return False
    return abs(round(started, 2) - float(record.get("ps") or started)) < 0.05


class TaskState:
    """A worker's executions running and the messages it holds unstarted, from its ledger records in order."""

    def __init__(self) -> None:
        self.running: dict[tuple[str, int], dict[str, Any]] = {}
        self.reserved: dict[str, dict[str, Any]] = {}

    def add(self, record: dict[str, Any]) -> None:
        kind, task = record.get("type"), record.get("id")
        if not isinstance(task, str):
            return
        if kind == "received":
            self.reserved[task] = record
        elif kind == "start":
            self.reserved.pop(task, None)
            self.running[(task, int(record.get("attempt") or 0))] = record
        elif kind == "end":
            self.running.pop((task, int(record.get("attempt") or 0)), None)
        elif kind == "revoked":
            self.reserved.pop(task, None)
            for key in [key for key in self.running if key[0] == task]:
                del self.running[key]

    def live(self, what: str) -> list[str]:
        """The ids running (``running``) or held unstarted (``reserved``) by processes still alive; the dead are
        forgotten (a killed process's executions and prefetched messages are no longer in that worker)."""
        held: dict[Any, dict[str, Any]] = self.running if what == "running" else self.reserved  # type: ignore[assignment]
        for key in [key for key, record in held.items() if not _alive(record)]:
            del held[key]
        return sorted(str(record["id"]) for record in held.values())


class Follower:
    """Reads the records appended to a ledger file since the last read; starts over when the file is replaced or cut
    (``reset`` is then True until the caller clears it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.rest = b""
        self.inode: int | None = None
        self.reset = False

    def read(self) -> list[dict[str, Any]]:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return []
        if stat.st_ino != self.inode or stat.st_size < self.offset:
            self.reset = self.inode is not None
            self.inode, self.offset, self.rest = stat.st_ino, 0, b""
        if stat.st_size == self.offset:
            return []
        with open(self.path, "rb") as file:
            file.seek(self.offset)
            data = file.read(stat.st_size - self.offset)
        self.offset += len(data)
        lines = (self.rest + data).split(b"\n")
        self.rest = lines.pop()
        return ledger.parse_records([line for line in lines if line.strip()])


def _until(deadline: float | None, stop: Stop) -> Callable[[], bool]:
    """Whether to go on watching: not stopped, the deadline not reached (counted on the raw clock)."""
    end = raw_end(deadline)
    return lambda: not stop() and before_raw_end(end)


def _holds(trigger: Trigger, state: TaskState, at: float, record: dict[str, Any] | None) -> Detail | None:
    """The trigger's record when it holds now (*record*: the one just read, None for the state at arming)."""
    if trigger.what == "started":
        if record is not None and record.get("type") == "start" and record.get("kind") == trigger.kind:
            return {"at": float(record.get("t") or at), "ids": [str(record["id"])]}
        return None
    pending = state.running if trigger.what == "running" else state.reserved
    if len(pending) < trigger.count:
        return None
    ids = state.live(trigger.what)
    return {"at": at, "ids": ids} if len(ids) >= trigger.count else None


def ledger_watch(trigger: Trigger, path: Path) -> Watch:
    """Wait for a condition on the worker's task ledger at *path*."""

    def wait(deadline: float | None, stop: Stop) -> Detail | None:
        going = _until(deadline, stop)
        follower, state = Follower(path), TaskState()
        for record in follower.read():  # the state at arming: what runs and what is held already
            state.add(record)
        fired = _holds(trigger, state, time.time(), None)
        while fired is None and going():
            records = follower.read()
            if follower.reset:  # a new ledger: what was running is in the old one
                follower.reset, state = False, TaskState()
            if not records:
                time.sleep(POLL_S)
            for record in records:
                state.add(record)
                if (fired := _holds(trigger, state, float(record.get("t") or time.time()), record)) is not None:
                    break
        return None if fired is None else {"condition": str(trigger), **fired, "seen": time.time()}

    return wait


def unacked_watch(trigger: Trigger, broker_url: str) -> Watch:
    """Wait until Redis's unacknowledged set holds the condition's count (polled; Redis down counts as not yet)."""
    import redis

    client = redis.Redis.from_url(broker_url, socket_timeout=1.0, socket_connect_timeout=1.0)

    def wait(deadline: float | None, stop: Stop) -> Detail | None:
        going = _until(deadline, stop)
        while going():
            try:
                count = int(client.hlen(UNACKED_KEY))
            except redis.RedisError:
                count = 0
            if count >= trigger.count:
                now = time.time()
                return {"condition": str(trigger), "at": now, "count": count, "ids": [], "seen": now}
            time.sleep(POLL_S)
        return None

    return wait


def watch(trigger: Trigger, ledger_path: str, broker_url: str) -> Watch:
    """The watch for *trigger* on this node; ValueError, before anything is armed, when the node cannot tell it."""
    if trigger.on_worker:
        path = Path(ledger_path)
        if not ledger_path or not (path.exists() or Path(f"{ledger_path}.settings.json").exists()):
            raise ValueError(f"trigger {trigger}: this node runs no worker with a task ledger (a worker condition "
                             "needs a worker as the target)")
        return ledger_watch(trigger, path)
    if of_url(broker_url) != "redis":
        raise ValueError(f"trigger {trigger}: the unacknowledged set is read from Redis; this lab's broker is "
                         f"{of_url(broker_url)}")
    return unacked_watch(trigger, broker_url)
