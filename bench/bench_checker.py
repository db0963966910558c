"""Benchmark the checker: records/s (reading ledger files + checking) and peak RSS.

    .venv/bin/python bench/bench_checker.py [--tasks 1000000] [--workers 4] [--seed 1] [--keep DIR]

A synthetic history (mostly completed tasks, some duplicated, lost, failed, stuck and
publish-failed ones, a few executions of unknown ids) is streamed to JSON-lines files:
one publish ledger and one ledger per worker node. A child process that does only the
check then reads the files, checks them and writes the summary; it reports its own
peak RSS (getrusage ru_maxrss), so generating the history does not count.
Exit status is 0 whether or not the targets are met; non-zero only on an error.
"""

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from chaoslab.checker import check, write_summary
from chaoslab.ledger import ReadStats, encode_record, read_records

TARGET_RECORDS_PER_S = 100_000
TARGET_RSS_BYTES = 1 << 30
KINDS = ("noop", "sleep", "cpu", "request")
T0 = 1_700_000_000.0
DURATION_S = 1000.0
PHASES = (("baseline", 0.0, 0.3), ("fault", 0.3, 0.5), ("recovery", 0.5, 0.9), ("drain", 0.9, 1.0))
UNKNOWN_EXECUTIONS = 100


# --- generation ----------------------------------------------------------------------


class History:
    """Streams synthetic records to a publish ledger and one ledger per worker node."""

    def __init__(self, directory: Path, workers: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.publish = (directory / "publish.jsonl").open("wb")
        self.nodes = [f"worker-{n}" for n in range(1, workers + 1)]
        self.ledgers = {node: (directory / f"{node}.jsonl").open("wb") for node in self.nodes}
        self.truth: Counter[str] = Counter()
        self.records = 0

    def close(self) -> None:
        for handle in (self.publish, *self.ledgers.values()):
            handle.close()

    def _write(self, handle, record) -> None:
        handle.write(encode_record(record))
        self.records += 1

    def published(self, task_id, kind, t, outcome="ok") -> None:
        error = None if outcome == "ok" else "OperationalError"
        record = {"type": "publish", "id": task_id, "kind": kind, "t": t, "outcome": outcome, "error": error}
        self._write(self.publish, record)

    def execution(self, task_id, kind, start, run_s, outcome, attempt=0, redelivered=False) -> float:
        """Write a start record and, unless *outcome* is None, an end record; return the end."""
        node = self.rng.choice(self.nodes)
        pid = 1000 + self.nodes.index(node) * 10 + self.rng.randrange(4)
        common = {"id": task_id, "kind": kind, "node": node, "pid": pid, "attempt": attempt}
        start_record = {"type": "start", **common, "redelivered": redelivered, "received": start, "t": start}
        self._write(self.ledgers[node], start_record)
        if outcome is not None:
            end_record = {"type": "end", **common, "t": start + run_s, "outcome": outcome, "error_type": None}
            self._write(self.ledgers[node], end_record)
        return start + run_s


def _completed(h: History, task_id: str, kind: str, start: float, run_s: float) -> None:
    h.execution(task_id, kind, start, run_s, "success")


def _failed(h: History, task_id: str, kind: str, start: float, run_s: float) -> None:
    h.execution(task_id, kind, start, run_s, "failure")


def _stuck(h: History, task_id: str, kind: str, start: float, run_s: float) -> None:
    h.execution(task_id, kind, start, run_s, None)


def _lost(h: History, task_id: str, kind: str, start: float, run_s: float) -> None:
    """Published, never started."""


def _redelivered(h: History, task_id: str, kind: str, start: float, run_s: float) -> None:
    h.execution(task_id, kind, start, run_s, None)
    h.execution(task_id, kind, start + 30.0, run_s, "success", redelivered=True)


def _retried(h: History, task_id: str, kind: str, start: float, run_s: float) -> None:
    end = h.execution(task_id, kind, start, run_s, "retry")
    h.execution(task_id, kind, end + 1.0, run_s, "success", attempt=1)


# (cumulative probability, class the checker must report, how to render it)
MIX: tuple[tuple[float, str, Callable[..., None]], ...] = (
    (0.005, "lost", _lost),
    (0.010, "failed", _failed),
    (0.013, "stuck", _stuck),
    (0.019, "duplicated", _redelivered),
    (0.025, "duplicated", _retried),
    (1.000, "completed", _completed),
)


def _pick(u: float) -> tuple[str, Callable[..., None]]:
    return next((cls, render) for bound, cls, render in MIX if u < bound)


def generate(directory: Path, tasks: int, workers: int, seed: int) -> History:
    history = History(directory, workers, seed)
    rng = history.rng
    fault_start, fault_end = T0 + 0.3 * DURATION_S, T0 + 0.5 * DURATION_S
    try:
        for index in range(tasks):
            task_id, kind = f"task-{index:09d}", KINDS[index % len(KINDS)]
            publish_t = T0 + 0.9 * DURATION_S * index / tasks
            wait = rng.expovariate(100.0) + (2.0 if fault_start <= publish_t < fault_end else 0.0)
            if rng.random() < 0.002:
                history.published(task_id, kind, publish_t, "error")
                history.truth["publish_failed"] += 1
                continue
            cls, render = _pick(rng.random())
            history.published(task_id, kind, publish_t)
            render(history, task_id, kind, publish_t + wait, rng.uniform(0.002, 0.05))
            history.truth[cls] += 1
        for index in range(UNKNOWN_EXECUTIONS):
            _completed(history, f"unknown-{index}", "noop", T0 + index, 0.01)
    finally:
        history.close()
    meta = {
        "phases": [{"name": n, "start": T0 + a * DURATION_S, "end": T0 + b * DURATION_S} for n, a, b in PHASES],
        "faults": [{"fault": "worker-kill", "start": fault_start, "end": fault_end}],
        "run_end": T0 + DURATION_S + 60.0,
    }
    (directory / "meta.json").write_text(json.dumps(meta))
    return history


# --- the check, in a child process ------------------------------------------------------


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def check_only(directory: Path) -> dict:
    meta = json.loads((directory / "meta.json").read_text())
    paths = sorted(directory.glob("*.jsonl"))
    stats = ReadStats()
    started = time.perf_counter()
    summary = check(read_records(paths, stats), meta["phases"], meta["faults"], meta["run_end"])
    check_s = time.perf_counter() - started
    rss_after_check = _peak_rss_bytes()
    started = time.perf_counter()
    write_summary(summary, directory / "out")
    return {
        "records": stats.records,
        "check_s": check_s,
        "write_s": time.perf_counter() - started,
        "peak_rss_check": rss_after_check,
        "peak_rss": _peak_rss_bytes(),
        "classes": summary.classes,
        "unknown_executions": summary.unknown_executions,
        "delivery": summary.delivery.guarantee,
        "recovery_s": summary.recovery.time_s,
    }


def _run_child(directory: Path) -> dict:
    command = [sys.executable, __file__, "--check-only", str(directory)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


# --- report ---------------------------------------------------------------------------


def _verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"


def _show(label: str, text: str) -> None:
    print(f"{label:<24}{text}")


def report(history: History, result: dict, generate_s: float) -> None:
    rate = result["records"] / result["check_s"]
    rss_ok = result["peak_rss"] <= TARGET_RSS_BYTES
    expected = {cls: history.truth.get(cls, 0) for cls in result["classes"]}
    _show("records generated", f"{history.records:,} in {generate_s:.1f} s")
    _show("records read", f"{result['records']:,}")
    _show("read + check", f"{result['check_s']:.2f} s")
    _show("throughput", f"{rate:,.0f} records/s")
    _show("  target", f">= {TARGET_RECORDS_PER_S:,} records/s: {_verdict(rate >= TARGET_RECORDS_PER_S)}")
    _show("peak RSS (check child)", f"{result['peak_rss'] / 2**20:,.0f} MiB")
    _show("  target", f"<= {TARGET_RSS_BYTES / 2**20:,.0f} MiB: {_verdict(rss_ok)}")
    _show("  before writing", f"{result['peak_rss_check'] / 2**20:,.0f} MiB (after the check itself)")
    _show("write summary", f"{result['write_s']:.2f} s (summary.json + tasks.csv, not in the throughput)")
    _show("classes", str(result["classes"]))
    _show("as generated", "match" if expected == result["classes"] else f"MISMATCH {expected}")
    _show("unknown executions", f"{result['unknown_executions']} (generated {UNKNOWN_EXECUTIONS})")
    _show("delivery, recovery", f"{result['delivery']}, {result['recovery_s']} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="generate into this directory and keep it")
    parser.add_argument("--check-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.check_only:
        print(json.dumps(check_only(args.check_only)))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-checker-") as scratch:
        directory = args.keep or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        history = generate(directory, args.tasks, args.workers, args.seed)
        generate_s = time.perf_counter() - started
        report(history, _run_child(directory), generate_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
