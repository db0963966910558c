"""Benchmark: how long after its condition holds a fault fired by the task state is in force.

    .venv/bin/python bench/bench_trigger.py [--trials 40] [--condition started|running]

Each trial arms a fault the way a node's agent does (chaoslab.node.fault_record.run_fault: detached, waiting on
chaoslab.node.fault_trigger's watch of a task ledger file), then a writer process appends ledger records as a
worker's pool children do (chaoslab.ledger.LedgerWriter, one write per record) at a random moment; the fault, a
SIGKILL of a live process as worker-kill's, is applied when the condition holds. From the node's ``triggered``
record: ``detect`` = the watch seeing the record minus the record's own time, ``delay`` = the fault in force minus
the record's time (what runs report). Baseline, measured in the same run: the same kill applied at once, without a
trigger (the agent's apply alone). Target: delay p95 <= 100 ms. Exit status is 0 whether or not the target is met.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from chaoslab.ledger import LedgerWriter
from chaoslab.node import fault_trigger
from chaoslab.node.fault_record import IN_FORCE_AT, Detail, Fault, FaultRecord, run_fault
from chaoslab.triggers import parse

TARGET_DELAY_S = 0.1
WRITER = """
import json, os, sys, time
from chaoslab.ledger import LedgerWriter
path, wait, kind, pids = sys.argv[1], float(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
time.sleep(wait)
with LedgerWriter(path, "batch") as ledger:
    for number, pid in enumerate(pids):
        ledger.write({"type": "start", "id": f"task-{number}", "kind": kind, "node": "bench", "pid": pid,
                      "ps": None, "attempt": 0, "t": time.time()})
"""


def victim() -> subprocess.Popen[bytes]:
    """A live process for the fault to kill (worker-kill's main process stands here)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def kill_fault(name: str, proc: subprocess.Popen[bytes]) -> Fault:
    def apply() -> Detail:
        os.kill(proc.pid, signal.SIGKILL)  # the agent is a forked child: the Popen object is not its own
        return {"killed": [proc.pid], IN_FORCE_AT: time.time()}

    return Fault(name, {}, apply)


def events(path: Path, wanted: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                if record.get("event") == wanted:
                    return record
        time.sleep(0.01)
    raise RuntimeError(f"no {wanted} record in {path}")


def trial(work: Path, number: int, condition: str) -> dict[str, float]:
    ledger, log = work / f"ledger-{number}.jsonl", work / f"events-{number}.jsonl"
    runners = [victim() for _ in range(2)]  # the executions' processes (alive: running>=2 counts them)
    target = victim()
    LedgerWriter(ledger, "batch").close()  # the worker's ledger exists before the fault is armed
    fault = kill_fault(f"bench-{number}", target)
    fault.armed, fault.trigger = fault_trigger.watch(parse(condition), str(ledger), ""), condition
    record = FaultRecord(fault.name, "bench", str(work / "state"), "", str(log))
    run_fault(record, fault, 3.0)
    pids = [proc.pid for proc in runners] if condition.startswith("running") else [runners[0].pid]
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(ledger), f"{random.uniform(0.05, 0.3):.3f}",
                               "bench", json.dumps(pids)])
    writer.wait(30)
    fired = events(log, "triggered")
    target.wait(10)
    for proc in runners:
        proc.kill()
        proc.wait()
    return {"delay": float(fired["delay"]), "detect": float(fired["seen"]) - float(fired["at"])}


def baseline(work: Path, number: int) -> float:
    """The same kill applied at once: the agent's apply alone, from the decision to the fault in force."""
    target = victim()
    time.sleep(0.05)
    fault = kill_fault(f"now-{number}", target)
    decided = time.time()
    reported = run_fault(FaultRecord(fault.name, "bench", str(work / "state"), "", str(work / "now.jsonl")),
                         fault, 0.0)
    target.wait(10)
    return float(reported["start"]) - decided


def quantile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--condition", choices=("started", "running"), default="running")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    random.seed(args.seed)
    condition = "started=bench" if args.condition == "started" else "running>=2"
    with tempfile.TemporaryDirectory(prefix="bench-trigger-") as directory:
        work = Path(directory)
        found = [trial(work, number, condition) for number in range(args.trials)]
        at_once = [baseline(work, number) for number in range(args.trials)]
    delays = [item["delay"] for item in found]
    detects = [item["detect"] for item in found]
    apply_p50 = statistics.median(at_once)
    print(f"trigger {condition}, {args.trials} trials")
    print(f"  detect (record written -> watch saw it): p50 {statistics.median(detects) * 1000:.2f} ms, "
          f"p95 {quantile(detects, 0.95) * 1000:.2f} ms")
    print(f"  delay  (record written -> fault in force): p50 {statistics.median(delays) * 1000:.2f} ms, "
          f"p95 {quantile(delays, 0.95) * 1000:.2f} ms, max {max(delays) * 1000:.2f} ms")
    print(f"  baseline (the same kill applied at once): p50 {apply_p50 * 1000:.2f} ms; trigger delay p50 / "
          f"baseline p50 = {statistics.median(delays) / apply_p50:.2f}")
    verdict = "met" if quantile(delays, 0.95) <= TARGET_DELAY_S else "NOT met"
    print(f"  target delay p95 <= {TARGET_DELAY_S * 1000:.0f} ms: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
