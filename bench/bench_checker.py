"""Benchmark the checker with its broker snapshot: records/s (reading ledger files + checking), peak RSS, and the
time to snapshot a real Redis.

    .venv/bin/python bench/bench_checker.py [--tasks 1000000] [--workers 4] [--seed 1] [--keep DIR]
                                            [--snapshot-ids 1000000]

A synthetic history (mostly completed tasks; some redelivered, failed, failed by the worker, pending, lost and
publish-failed ones; a few executions of unknown ids) is streamed to JSON-lines files as the lab writes them: a
publish ledger, one ledger per worker node (received, start and end records, alive records). The pending tasks'
messages go into a private redis-server (queued in the list, reserved in the unacked hash, with kombu's envelope)
and the result backend gets the records Celery would have stored. The runner's collection then runs against it:
one atomic snapshot of the broker (``snapshot.json``), then a child process that does only the check reads the
ledgers and the snapshot, looks up the result backend for the tasks the ledgers do not show completed (as the
runner does, during the check), checks and writes its output (summary, tasks and executions); it reports its own
peak RSS (getrusage ru_maxrss), so generating the history does not count.

``--snapshot-ids N`` also times the snapshot alone at scale: N task messages in the broker (nine in ten queued,
one in ten reserved) and N ids looked up in the result backend, one in twenty with a record.

Targets: >= 100,000 records/s and <= 1 GiB for 1M tasks including the snapshot; a snapshot of 1,000,000 ids in
<= 10 s. Exit status is 0 whether or not the targets are met; non-zero only on an error.
"""

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import redis

from chaoslab.analysis import run_dir
from chaoslab.analysis.checker import check
from chaoslab.broker_state import BrokerState
from chaoslab.experiment import redis_snapshot
from chaoslab.ledger import ReadStats, encode_record, read_records
from chaoslab.node.publisher import MessageTemplate
from local_redis import LocalRedis, local_redis

TARGET_RECORDS_PER_S = 100_000
TARGET_RSS_BYTES = 1 << 30
TARGET_SNAPSHOT_S = 10.0
TARGET_SNAPSHOT_IDS = 1_000_000
KINDS = ("noop", "sleep", "cpu", "request")
T0 = 1_700_000_000.0
DURATION_S = 1000.0
PHASES = (("baseline", 0.0, 0.3), ("fault", 0.3, 0.5), ("recovery", 0.5, 0.9), ("drain", 0.9, 1.0))
UNKNOWN_EXECUTIONS = 100
LIVE_PS = T0 - 100.0
DEAD_PS = T0 - 200.0
BATCH = 1000


# --- generation ----------------------------------------------------------------------


class History:
    """Streams synthetic records to a publish ledger and one ledger per worker node; collects what the broker and
    the result backend hold at the end."""

    def __init__(self, directory: Path, workers: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.publish = (directory / "publish.jsonl").open("wb")
        self.nodes = [f"worker-{n}" for n in range(1, workers + 1)]
        self.ledgers = {node: (directory / f"{node}.jsonl").open("wb") for node in self.nodes}
        self.truth: Counter[str] = Counter()
        self.records = 0
        self.queued: list[str] = []
        self.reserved: list[str] = []
        self.results: dict[str, dict] = {}

    def close(self) -> None:
        for node, handle in self.ledgers.items():
            pid = self._live_pid(node)
            self._write(handle, {"type": "alive", "node": node, "pids": [pid], "procs": [[pid, LIVE_PS]],
                                 "main": pid, "t": T0 + DURATION_S})
        for handle in (self.publish, *self.ledgers.values()):
            handle.close()

    def _live_pid(self, node: str) -> int:
        return 1000 + self.nodes.index(node) * 10

    def _write(self, handle, record) -> None:
        handle.write(encode_record(record))
        self.records += 1

    def published(self, task_id, kind, t, outcome="ok") -> None:
        error = None if outcome == "ok" else "OperationalError"
        record = {"type": "publish", "id": task_id, "kind": kind, "node": "monitor", "scheduled": t - 0.001,
                  "t": t, "outcome": outcome, "error": error}
        self._write(self.publish, record)

    def execution(self, task_id, kind, start, run_s, outcome, attempt=0, redelivered=False, alive=True) -> float:
        """Write a received, a start and (unless *outcome* is None) an end record; return the end."""
        node = self.rng.choice(self.nodes)
        pid = self._live_pid(node) if alive else 2000 + self.rng.randrange(100)
        ps = LIVE_PS if alive else DEAD_PS
        common = {"id": task_id, "node": node, "pid": pid, "ps": ps}
        self._write(self.ledgers[node], {"type": "received", **common, "pid": self._live_pid(node), "ps": LIVE_PS,
                                         "t": start - 0.001})
        task = {**common, "kind": kind, "attempt": attempt}
        start_record = {"type": "start", **task, "redelivered": redelivered, "received": start, "t": start}
        self._write(self.ledgers[node], start_record)
        if outcome is not None:
            end_record = {"type": "end", **task, "t": start + run_s, "outcome": outcome, "error_type": None}
            self._write(self.ledgers[node], end_record)
        return start + run_s


def _completed(h: History, task_id: str, kind: str, start: float, run_s: float) -> None:
    h.execution(task_id, kind, start, run_s, "success")


def _failed(h: History, task_id: str, kind: str, start: float, run_s: float) -> None:
    h.execution(task_id, kind, start, run_s, "failure")


def _failed_by_worker(h: History, task_id: str, kind: str, start: float, run_s: float) -> None:
    h.execution(task_id, kind, start, run_s, None, alive=False)
    h.results[task_id] = {"status": "FAILURE", "result": {"exc_type": "WorkerLostError", "exc_message": ["lost"],
                                                          "exc_module": "billiard.exceptions"},
                          "traceback": None, "children": [], "date_done": "2023-11-14T22:30:00+00:00",
                          "task_id": task_id, "worker": "celery@worker-1"}


def _lost(h: History, task_id: str, kind: str, start: float, run_s: float) -> None:
    """Started, and killed with the process after an early acknowledgement."""
    h.execution(task_id, kind, start, run_s, None, alive=False)


def _queued(h: History, task_id: str, kind: str, start: float, run_s: float) -> None:
    h.queued.append(task_id)


def _reserved(h: History, task_id: str, kind: str, start: float, run_s: float) -> None:
    h.reserved.append(task_id)


def _redelivered(h: History, task_id: str, kind: str, start: float, run_s: float) -> None:
    h.execution(task_id, kind, start, run_s, None, alive=False)
    h.execution(task_id, kind, start + 30.0, run_s, "success", redelivered=True)


def _retried(h: History, task_id: str, kind: str, start: float, run_s: float) -> None:
    end = h.execution(task_id, kind, start, run_s, "retry")
    h.execution(task_id, kind, end + 1.0, run_s, "success", attempt=1)


# (cumulative probability, class the checker must report, how to render it)
MIX: tuple[tuple[float, str, Callable[..., None]], ...] = (
    (0.005, "lost", _lost),
    (0.010, "failed", _failed),
    (0.013, "failed_by_worker", _failed_by_worker),
    (0.019, "duplicated_completed", _redelivered),
    (0.022, "pending", _queued),
    (0.025, "pending", _reserved),
    (0.031, "completed", _retried),
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
            task_id, kind = str(uuid.UUID(int=rng.getrandbits(128), version=4)), KINDS[index % len(KINDS)]
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


# --- the broker and result backend --------------------------------------------------------


def fill_broker(server: LocalRedis, queued: list[str], reserved: list[str], results: dict[str, dict]) -> None:
    """The messages and results as kombu's Redis transport and Celery's Redis backend store them."""
    broker, backend = big_client(server, 0), big_client(server, 1)
    template = MessageTemplate("chaoslab.sleep", {"ms": 100}, "celery", "bench@host", str(uuid.uuid4()))
    for first in range(0, len(queued), BATCH):
        broker.lpush("celery", *[template.render(task_id) for task_id in queued[first:first + BATCH]])
    for first in range(0, len(reserved), BATCH):
        pipe = broker.pipeline(transaction=False)
        for task_id in reserved[first:first + BATCH]:
            tag = str(uuid.uuid4())
            message = json.loads(template.render(task_id))
            pipe.hset("unacked", tag, json.dumps([message, "", "celery"]))
            pipe.zadd("unacked_index", {tag: T0})
        pipe.execute()
    items = list(results.items())
    for first in range(0, len(items), BATCH):
        backend.mset({redis_snapshot.RESULT_PREFIX + task_id: json.dumps(meta) for task_id, meta
                      in items[first:first + BATCH]})


def big_client(server: LocalRedis, db: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=server.port, db=db, password=server.password, socket_timeout=300)


def snapshot_broker(server: LocalRedis, directory: Path) -> dict:
    """What the runner does when the drain ends: one atomic snapshot of the broker into snapshot.json."""
    broker = big_client(server, 0)
    began = time.perf_counter()
    state = redis_snapshot.take(broker, redis_snapshot.queue_names(broker), time.time())
    run_dir.write_snapshot(state, directory)
    return {"messages": len(state.queued) + len(state.reserved), "broker_s": time.perf_counter() - began}


def snapshot_at_scale(ids: int) -> dict:
    """The snapshot alone over *ids* messages (9/10 queued, 1/10 reserved) and *ids* result lookups (1/20 found)."""
    rng = random.Random(7)
    task_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(ids)]
    split = ids * 9 // 10
    results = {task_id: {"status": "SUCCESS", "result": None, "traceback": None, "children": [],
                         "date_done": "2023-11-14T22:30:00+00:00", "task_id": task_id}
               for task_id in task_ids[::20]}
    with local_redis() as server:
        fill_broker(server, task_ids[:split], task_ids[split:], results)
        broker, backend = big_client(server, 0), big_client(server, 1)
        began = time.perf_counter()
        state = redis_snapshot.take(broker, redis_snapshot.queue_names(broker), time.time())
        broker_s = time.perf_counter() - began
        results_found, _ = redis_snapshot.task_results(backend, task_ids)
        state = BrokerState(taken=state.taken, queued=state.queued, reserved=state.reserved, results=results_found)
        total_s = time.perf_counter() - began
    assert len(state.queued) + len(state.reserved) == ids and len(state.results) == len(results)
    return {"ids": ids, "broker_s": broker_s, "results_s": total_s - broker_s, "total_s": total_s}


# --- the check, in a child process ------------------------------------------------------


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def check_only(directory: Path, port: int, password: str) -> dict:
    meta = json.loads((directory / "meta.json").read_text())
    paths = sorted(directory.glob("*.jsonl"))
    stats = ReadStats()
    backend = big_client(LocalRedis(port, password), 1)
    lookup: dict = {"ids": 0, "s": 0.0}

    def results(ids: list[str]) -> dict:
        began = time.perf_counter()
        found, lookup["ids"] = redis_snapshot.task_results(backend, ids)
        lookup["s"] = time.perf_counter() - began
        return found

    started = time.perf_counter()
    snapshot = run_dir.read_snapshot(directory)
    summary = check(read_records(paths, stats), meta["phases"], meta["faults"], meta["run_end"], snapshot=snapshot,
                    results=results)
    check_s = time.perf_counter() - started
    rss_after_check = _peak_rss_bytes()
    started = time.perf_counter()
    run_dir.write_check(summary, directory / "out")
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
        "lookups": lookup["ids"],
        "lookup_s": lookup["s"],
    }


def _run_child(directory: Path, server: LocalRedis) -> dict:
    command = [sys.executable, __file__, "--check-only", str(directory), "--redis", f"{server.port}:{server.password}"]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


# --- report ---------------------------------------------------------------------------


def _verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"


def _show(label: str, text: str) -> None:
    print(f"{label:<28}{text}")


def report(history: History, collected: dict, result: dict, generate_s: float) -> None:
    rate = result["records"] / result["check_s"]
    rss_ok = result["peak_rss"] <= TARGET_RSS_BYTES
    expected = {cls: history.truth.get(cls, 0) for cls in result["classes"]}
    _show("records generated", f"{history.records:,} in {generate_s:.1f} s")
    _show("snapshot of the broker", f"{collected['messages']:,} messages: {collected['broker_s']:.2f} s")
    _show("result lookups", f"{result['lookups']:,} ids: {result['lookup_s']:.2f} s (during the check)")
    _show("records read", f"{result['records']:,}")
    _show("read + check", f"{result['check_s']:.2f} s (with the snapshot and the lookups)")
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


def report_scale(found: dict) -> None:
    _show("snapshot at scale", f"{found['ids']:,} messages and {found['ids']:,} result lookups: "
                               f"{found['total_s']:.2f} s (broker {found['broker_s']:.2f} s, "
                               f"results {found['results_s']:.2f} s)")
    met = found["ids"] < TARGET_SNAPSHOT_IDS or found["total_s"] <= TARGET_SNAPSHOT_S
    _show("  target", f"{TARGET_SNAPSHOT_IDS:,} ids in <= {TARGET_SNAPSHOT_S:g} s: "
                      f"{_verdict(met) if found['ids'] >= TARGET_SNAPSHOT_IDS else 'fewer ids than the target'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--snapshot-ids", type=int, default=TARGET_SNAPSHOT_IDS,
                        help="time the snapshot alone at this many ids (0: skip)")
    parser.add_argument("--keep", type=Path, help="generate into this directory and keep it")
    parser.add_argument("--check-only", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.check_only:
        port, password = args.redis.split(":", 1)
        print(json.dumps(check_only(args.check_only, int(port), password)))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-checker-") as scratch:
        directory = args.keep or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        history = generate(directory, args.tasks, args.workers, args.seed)
        generate_s = time.perf_counter() - started
        with local_redis() as server:
            fill_broker(server, history.queued, history.reserved, history.results)
            collected = snapshot_broker(server, directory)
            result = _run_child(directory, server)
        report(history, collected, result, generate_s)
    if args.snapshot_ids:
        report_scale(snapshot_at_scale(args.snapshot_ids))
    return 0


if __name__ == "__main__":
    sys.exit(main())
