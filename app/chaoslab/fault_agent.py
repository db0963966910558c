"""The node side of the lab's faults: act, record, and heal by a deadline that lives on the node.

Run on the target node by the fault playbooks (``python -m chaoslab.fault_agent <fault> ...``). A
fault with a duration keeps this process alive on the node until its deadline, then reverts
itself, whatever happens to the controller. While a fault is active it has a state file
``<state-dir>/<fault>.json`` (pid, start, deadline, parameters) and the series
``chaoslab_fault_active{fault="...",target="<node>"} 1`` in node_exporter's textfile directory.
``clear`` stops every agent on the node and removes their records.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from chaoslab.node_procs import same_netns, worker_processes
from chaoslab.units import parse_duration


class FaultRecord:
    """The fault's state file and its textfile-collector series on this node."""

    def __init__(self, fault: str, node: str, state_dir: str, textfile_dir: str) -> None:
        self.fault = fault
        self.node = node
        self.state = Path(state_dir) / f"{fault}.json"
        self.textfile = Path(textfile_dir) / f"chaoslab_fault_{fault.replace('-', '_')}.prom" if textfile_dir else None

    def _write(self, path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(path.suffix + ".tmp")
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)

    def start(self, deadline: float | None, params: dict[str, object]) -> float:
        started = time.time()
        data = {"fault": self.fault, "node": self.node, "pid": os.getpid(), "start": started,
                "deadline": deadline, "params": params}
        self._write(self.state, json.dumps(data))
        if self.textfile:
            self._write(self.textfile, "# HELP chaoslab_fault_active A lab fault is active on this node.\n"
                        "# TYPE chaoslab_fault_active gauge\n"
                        f'chaoslab_fault_active{{fault="{self.fault}",target="{self.node}"}} 1\n')
        return started

    def end(self) -> None:
        for path in (self.state, self.textfile):
            if path is not None:
                path.unlink(missing_ok=True)


def kill_worker(mode: str) -> list[int]:
    """SIGKILL the main process, one pool child, or every worker process; returns the pids killed."""
    main, children = worker_processes()
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


def run_fault(args: argparse.Namespace, params: dict[str, object], apply: Callable[[], object],
              revert: Callable[[], object] | None = None, every: float = 0.0,
              again: Callable[[], object] | None = None) -> dict[str, object]:
    """Record the fault, apply it, and with a duration stay until the deadline and then revert it.

    Without a duration a fault with a revert stays until ``clear`` (which knows how to revert every kind).
    """
    duration = parse_duration(args.duration) if args.duration else 0.0
    record = FaultRecord(args.fault, args.node, args.state_dir, args.textfile_dir)
    deadline = time.time() + duration if duration else None
    started = record.start(deadline, params)
    detail: object = None
    try:
        detail = apply()
        if deadline is not None:
            hold_until(deadline, every, again or (lambda: None))
    finally:
        if deadline is not None or revert is None:
            if revert is not None:
                revert()
            record.end()
    return {"fault": args.fault, "start": started, "end": time.time() if deadline else None, "detail": detail}


def cmd_worker_kill(args: argparse.Namespace) -> dict[str, object]:
    every = parse_duration(args.every) if args.every else 0.0
    killed: list[int] = []
    return run_fault(args, {"mode": args.mode, "every": args.every, "duration": args.duration},
                     lambda: killed.extend(kill_worker(args.mode)) or killed, every=every,
                     again=lambda: killed.extend(kill_worker(args.mode)))


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


def thaw_workers() -> list[int]:
    return signal_workers(signal.SIGCONT)


def cmd_worker_pause(args: argparse.Namespace) -> dict[str, object]:
    return run_fault(args, {"duration": args.duration}, lambda: signal_workers(signal.SIGSTOP), thaw_workers)


def stress_processes() -> list[psutil.Process]:
    """stress-ng processes of this node (same network namespace)."""
    return [proc for proc in psutil.process_iter(["name"]) if (proc.info["name"] or "").startswith("stress-ng")
            and same_netns(proc.pid)]


def stop_stress() -> int:
    found = stress_processes()
    for proc in found:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(found, timeout=5)
    return len(found)


def cmd_cpu_exhaustion(args: argparse.Namespace) -> dict[str, object]:
    workers = args.workers or os.cpu_count() or 1
    command = ["stress-ng", "--cpu", str(workers), "--cpu-load", str(args.load), "--quiet"]
    if args.duration:
        # stress-ng stops by itself at the deadline too, even if this agent is killed.
        command += ["--timeout", f"{math.ceil(parse_duration(args.duration))}s"]
    return run_fault(args, {"workers": workers, "load": args.load, "duration": args.duration},
                     lambda: subprocess.Popen(command, stdout=subprocess.DEVNULL, start_new_session=True).pid,
                     stop_stress)


def hold_until(deadline: float, every: float, action: Callable[[], object]) -> None:
    """Stay until the deadline, calling ``action`` every ``every`` seconds (0: never); SIGTERM ends it early."""
    stopped = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stopped.update(flag=True))
    due = time.time() + every if every > 0 else deadline
    while not stopped["flag"] and (now := time.time()) < deadline:
        if now >= due:
            action()
            due += every
        time.sleep(min(max(min(due, deadline) - now, 0.0), 0.2))


def cmd_clear(args: argparse.Namespace) -> dict[str, object]:
    """Stop every fault agent on this node and remove their records."""
    cleared = []
    for state in sorted(Path(args.state_dir).glob("*.json")):
        try:
            data = json.loads(state.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        pid = data.get("pid")
        if isinstance(pid, int) and pid != os.getpid() and psutil.pid_exists(pid):
            try:
                psutil.Process(pid).terminate()
                psutil.Process(pid).wait(5)
            except psutil.Error:
                pass
        FaultRecord(state.stem, args.node, args.state_dir, args.textfile_dir).end()
        cleared.append(state.stem)
    # What a fault without a duration (or a killed agent) left behind: frozen workers, stress processes.
    thaw_workers()
    if stop_stress():
        cleared.append("stress-ng")
    return {"cleared": cleared}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chaoslab.fault_agent", description=__doc__)
    parser.add_argument("--node", required=True, help="the node's name, for the records")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--textfile-dir", default="", help="node_exporter textfile collector directory")
    sub = parser.add_subparsers(dest="fault", required=True)
    kill = sub.add_parser("worker-kill", help="SIGKILL the Celery worker's processes")
    kill.add_argument("--mode", choices=["main", "child", "all"], default="main")
    kill.add_argument("--every", default="", help="repeat at this interval until --duration ends")
    kill.add_argument("--duration", default="")
    kill.set_defaults(func=cmd_worker_kill)
    pause = sub.add_parser("worker-pause", help="SIGSTOP the Celery worker's processes, SIGCONT at the end")
    pause.add_argument("--duration", default="")
    pause.set_defaults(func=cmd_worker_pause)
    cpu = sub.add_parser("cpu-exhaustion", help="stress-ng CPU workers in this node")
    cpu.add_argument("--workers", type=int, default=0, help="stress-ng CPU workers (default: one per CPU)")
    cpu.add_argument("--load", type=int, default=100, help="load per worker, percent")
    cpu.add_argument("--duration", default="")
    cpu.set_defaults(func=cmd_cpu_exhaustion)
    clear = sub.add_parser("clear", help="stop every fault on this node")
    clear.set_defaults(func=cmd_clear)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        print(json.dumps(args.func(args)))
    except ValueError as err:
        print(f"fault_agent: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
