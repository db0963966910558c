"""How every fault runs on its node: record it, apply it, keep it until its deadline, revert it.

A fault with a duration (or one whose engine is a process, like the NFQUEUE delay engine) detaches
from the caller: the agent forks a child in a session of its own that applies the fault, reports the
outcome to the parent (which prints it and exits, so the Ansible task returns), and stays on the node
until the deadline, then reverts the fault, whatever happens to the controller. A fault without a
duration whose effect is kernel state (a qdisc, iptables rules, a memory cap, frozen processes) is
applied in place and stays until ``clear``, which reverts it from its state file.

Every fault also appends to the node's event ledger (``--events``) when it took effect and when it was reverted::

    {"type": "fault", "event": "applied", "fault": "worker-kill", "node": "worker-1", "t": ..., "params": {...}}
    {"type": "fault", "event": "reverted", "fault": "worker-kill", "node": "worker-1", "t": ..., "by": "deadline"}

``applied`` is written once the fault is in force (after it was applied; a fault may name an earlier instant, e.g.
when Redis went down); ``reverted`` when its effect ended (``by``: its ``deadline``, a ``stop`` from clear, ``clear``
reverting it for an agent that is gone, or ``healed`` when the fault's effect ended by itself before its deadline,
e.g. Redis running again). These instants, not the runner's phase bounds, are the run's fault windows. A fault may
also note instants of its own (worker-kill: ``kill`` with the pids killed and whether the main process was one).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Detail = dict[str, Any]


@dataclass(frozen=True)
class Node:
    """The node a fault acts on, as its agent knows it: every fault's node code takes (values, node)."""

    name: str
    service_manager: str = "supervisor"
    supervisor_conf: str = ""


class Stop:
    """Set by SIGTERM (what ``clear`` sends): the fault ends early and reverts itself."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "requested", True))

    def __call__(self) -> bool:
        return self.requested


def _raw() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC_RAW)


def raw_end(deadline: float | None) -> float:
    """The wall-clock *deadline* (None: none, infinity) on the raw hardware clock, which no step or rate change of
    the wall clock moves (a clock-skew fault must last its duration as well)."""
    return math.inf if deadline is None else _raw() + deadline - time.time()


def before_raw_end(end: float) -> bool:
    """Whether the raw clock has not reached *end* (from :func:`raw_end`)."""
    return _raw() < end


def hold_until(deadline: float | None, stop: Stop, every: float = 0.0,
               action: Callable[[], object] | None = None) -> None:
    """Stay until the deadline (None: until stopped), calling ``action`` every ``every`` seconds (0: never).

    The time left is counted on the raw hardware clock (:func:`raw_end`)."""
    start, end = _raw(), raw_end(deadline)
    due = start + every if every > 0 and action is not None else math.inf
    while not stop() and (now := _raw()) < end:
        if now >= due and action is not None:
            action()
            due += every
        time.sleep(min(max(min(due, end) - now, 0.0), 0.2))


@dataclass
class Fault:
    """One fault on this node: what it does, how it is undone, and what keeps it going."""

    name: str
    params: dict[str, Any]
    apply: Callable[[], Detail]
    # Undo, given what apply returned; None for a fault with nothing to undo (a kill).
    revert: Callable[[Detail], object] | None = None
    # Keeps the fault going until the deadline (None: until stopped); default: wait.
    hold: Callable[[float | None, Stop], None] | None = None
    # A process must stay on the node for the fault to act (a user-space engine), even without a duration.
    needs_process: bool = False
    detail: Detail = field(default_factory=dict)
    # Records an instant of the fault's own (e.g. each kill) in the node's event ledger: note(event, data).
    note: Callable[[str, Detail], None] = field(default=lambda _event, _data: None)
    # What the fault did, measured while it is in force (chaoslab.node.fault_effect): given its window, returns
    # the effect the agent records (event "measured"); None: not measured.
    measure: Callable[[Any], Detail] | None = None
    # Armed by a trigger (chaoslab.node.fault_trigger): waits, given the deadline, until the condition holds and
    # returns what held (None: it never did, and the fault is not applied); None: applied at once.
    armed: Callable[[float | None, Stop], Detail | None] | None = None
    trigger: str = ""
    """The armed fault's condition as written (chaoslab.triggers)."""
    # Made ready while armed (e.g. the worker's processes found), so that the fault acts at once when it fires.
    arm: Callable[[], object] | None = None


# Keys a fault's detail may carry for its event records: when it took effect, and when its effect ended by itself.
IN_FORCE_AT = "in_force_at"
MEASURED_AT = "measured_at"
HEALED_AT = "healed_at"


def process_start(pid: int | None) -> float | None:
    """When a process started, in clock ticks since boot (``/proc/<pid>/stat``: no step of the wall clock moves
    it, unlike a create time); None when it is gone or not given."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return float(fields[19]) if len(fields) > 19 else None


class FaultRecord:
    """The fault's state file and its textfile-collector series on this node."""

    def __init__(self, fault: str, node: str, state_dir: str, textfile_dir: str, events: str = "") -> None:
        self.fault = fault
        self.node = node
        self.events = Path(events) if events else None
        self.reverted_written = False
        self.state = Path(state_dir) / f"{fault}.json"
        self.log = Path(state_dir) / f"{fault}.log"
        self.textfile = Path(textfile_dir) / f"chaoslab_fault_{fault.replace('-', '_')}.prom" if textfile_dir else None

    @staticmethod
    def _write(path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(path.suffix + ".tmp")
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)

    def read(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.state.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def claim(self) -> None:
        """Create the fault's state file, exclusively: of two requests for the same fault on this node one wins,
        the other is refused and leaves the winner's record alone."""
        self.state.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.state, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            data = self.read() or {}
            until = data.get("deadline")
            when = f"until {time.strftime('%H:%M:%S', time.localtime(until))}" if until else "until cleared"
            raise ValueError(f"{self.fault} is already active on {self.node} ({when}); "
                             "run faults/clear.yml first") from None
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps({"fault": self.fault, "node": self.node, "pid": None, "claimed": time.time()}))

    def start(self, deadline: float | None, params: dict[str, Any], pid: int | None, detail: Detail) -> float:
        started = time.time()
        data = {"fault": self.fault, "node": self.node, "pid": pid, "pid_start": process_start(pid),
                "start": started, "deadline": deadline, "params": params, "detail": detail}
        self._write(self.state, json.dumps(data))
        if self.textfile:
            self._write(self.textfile, "# HELP chaoslab_fault_active A lab fault is active on this node.\n"
                        "# TYPE chaoslab_fault_active gauge\n"
                        f'chaoslab_fault_active{{fault="{self.fault}",target="{self.node}"}} 1\n')
        return started

    def update(self, detail: Detail) -> None:
        data = self.read() or {}
        data["detail"] = detail
        self._write(self.state, json.dumps(data))

    def end(self) -> None:
        for path in (self.state, self.textfile):
            if path is not None:
                path.unlink(missing_ok=True)

    def _event(self, event: str, t: float, **extra: Any) -> None:
        if self.events is None:
            return
        from chaoslab.ledger import LedgerWriter

        self.events.parent.mkdir(parents=True, exist_ok=True)
        with LedgerWriter(self.events, "always") as ledger:
            ledger.write({"type": "fault", "event": event, "fault": self.fault, "node": self.node, "t": t, **extra})

    def applied(self, t: float, params: dict[str, Any]) -> None:
        """The fault is in force since *t*."""
        self._event("applied", t, params=params)

    def noted(self, event: str, data: Detail) -> None:
        """An instant of the fault's own, e.g. each kill of worker-kill (event ``kill``)."""
        self._event(event, time.time(), **data)

    def measured(self, effect: Detail) -> None:
        """What the fault did while in force (chaoslab.node.fault_effect), or why it could not be measured; at the
        time the effect says it was measured (MEASURED_AT: a fault on the clock knows the true time), else now."""
        effect = dict(effect)
        self._event("measured", float(effect.pop(MEASURED_AT, None) or time.time()), effect=effect)

    def reverted(self, t: float, by: str) -> None:
        """The fault's effect ended at *t* (written once)."""
        if not self.reverted_written:
            self.reverted_written = True
            self._event("reverted", t, by=by)


def run_fault(record: FaultRecord, fault: Fault, duration: float) -> Detail:
    """Apply the fault; with a duration (or a process engine) detach and keep it on the node until it ends."""
    record.claim()
    fault.note = record.noted
    if duration <= 0 and not fault.needs_process:
        try:
            detail = fault.apply()
        except BaseException:
            record.end()
            raise
        started = float(detail.pop(IN_FORCE_AT, None) or time.time())
        record.applied(started, fault.params)
        ended = None
        if fault.revert is not None:  # stays until clear, which reverts it from the state file
            record.start(None, fault.params, None, detail)
        else:  # done at once (a single kill): nothing stays, no record either
            ended = float(detail.pop(HEALED_AT, None) or time.time())
            record.reverted(ended, "done")
            record.end()
        return {"fault": fault.name, "start": started, "end": ended, "deadline": None, "detail": detail}
    return detach(lambda report: _keep(record, fault, duration, report), record.log)


def _keep(record: FaultRecord, fault: Fault, duration: float, report: Callable[[Detail], None]) -> None:
    """In the detached agent: record, apply, report, measure while holding until the deadline or a stop, revert."""
    stop = Stop()
    stop.install()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    deadline = time.time() + duration if duration > 0 else None
    ends = _raw() + duration if duration > 0 else None  # the duration, whatever the fault does to the wall clock
    record.start(deadline, fault.params, os.getpid(), {})
    detail: Detail | None = None
    measuring: tuple[threading.Thread, threading.Event] | None = None
    try:
        fired: Detail | None = None
        if fault.armed is not None:
            report({"fault": fault.name, "start": None, "armed": time.time(), "deadline": deadline, "detail": {}})
            if fault.arm is not None:
                fault.arm()
            fired = fault.armed(deadline, stop)
            if fired is None:  # the condition never held: the node stays as it was
                record.noted("untriggered", {"condition": fault.trigger, "by": "stop" if stop() else "deadline"})
                return
        detail = fault.apply()
        in_force = float(detail.pop(IN_FORCE_AT, None) or time.time())
        record.update(detail)
        record.applied(in_force, fault.params)
        if fired is not None:
            record.noted("triggered", {**fired, "in_force": in_force, "delay": round(in_force - fired["at"], 6)})
        else:
            report({"fault": fault.name, "start": in_force, "deadline": deadline, "detail": detail})
        if ends is not None:  # the deadline as the wall clock reads now
            deadline = time.time() + ends - _raw()
        if fault.measure is not None:
            measuring = _measure(record, fault.measure, detail, deadline, stop)
        if fault.hold is not None:
            fault.hold(deadline, stop)
        else:
            hold_until(deadline, stop)
    finally:
        if measuring is not None:  # the measurement reads the fault in force: it ends before the revert
            thread, ended = measuring
            ended.set()
            thread.join(MEASURE_JOIN_S)
        if detail is not None and fault.revert is not None:
            fault.revert(detail)
        if detail is not None:
            healed = detail.get(HEALED_AT)
            by = "healed" if healed else ("stop" if stop() else "deadline")
            record.reverted(float(healed or time.time()), by)
        record.end()
        print(json.dumps({"fault": fault.name, "end": time.time()}), flush=True)


MEASURE_JOIN_S = 10.0
"""How long the revert waits for a measurement still running at the fault's end."""


def _measure(record: FaultRecord, measure: Callable[[Any], Detail], detail: Detail, deadline: float | None,
             stop: Stop) -> tuple[threading.Thread, threading.Event]:
    """Measure the fault in force in a thread; its outcome (or why there is none) goes to the event ledger."""
    from chaoslab.node.fault_effect import Window

    window = Window(detail, deadline, stop)

    def run() -> None:
        try:
            effect = measure(window)
        except Exception as error:  # the fault stands; its effect is unknown, and the record says why
            traceback.print_exc()
            effect = {"error": f"{type(error).__name__}: {error}", "effective": None}
        record.measured(effect)

    thread = threading.Thread(target=run, name="measure", daemon=True)
    thread.start()
    return thread, window.ended


def detach(body: Callable[[Callable[[Detail], None]], None], log: Path) -> Detail:
    """Run ``body`` in a child that outlives this process; return what it reports once the fault is applied.

    The child is in a session of its own (a killed controller, its SSH session or ``ip netns exec``
    do not take it along), is never the OOM killer's choice, and logs to ``log``.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        _become_daemon(log)
        reported = {"done": False}

        def report(result: Detail) -> None:
            os.write(write_end, json.dumps(result).encode())
            os.close(write_end)
            reported["done"] = True

        code = 0
        try:
            body(report)
        except BaseException as error:
            code = 1
            message = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
            traceback.print_exc()
            if not reported["done"]:
                report({"error": message})
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    if not chunks:
        raise RuntimeError(f"the fault agent died before the fault was applied (see {log})")
    result: Detail = json.loads(b"".join(chunks))
    if "error" in result:
        raise ValueError(result["error"])
    return result


def _become_daemon(log: Path) -> None:
    os.setsid()
    log.parent.mkdir(parents=True, exist_ok=True)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)
    with contextlib.suppress(OSError):
        Path("/proc/self/oom_score_adj").write_text("-1000", encoding="ascii")
