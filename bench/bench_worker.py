"""Benchmark (b): worker throughput on no-op tasks with the task ledger and task events, against the same worker
without them, in the same run.

Run: .venv/bin/python bench/bench_worker.py [--tasks 4000] [--rounds 3]
Each round preloads the tasks into a private redis-server on loopback, starts a real prefork worker
(concurrency 2), and times it from its first task to the last result. Target: with / without >= 0.95.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chaoslab.node.publisher import Publisher
from local_redis import LocalRedis, lab_env, local_redis


def preload(server: LocalRedis, count: int) -> None:
    publisher = Publisher(server.url(0), 5.0)
    template = publisher.template("chaoslab.noop", {})
    messages = [template.render(str(uuid.uuid4())) for _ in range(count)]
    for start in range(0, count, 1000):
        assert publisher.publish(messages[start:start + 1000]).outcome == "ok"


def one_round(server: LocalRedis, count: int, instrumented: bool, workdir: Path) -> float:
    server.client(0).delete("celery", "unacked", "unacked_index")
    server.client(1).flushdb()
    preload(server, count)
    extra = {}
    cmd = [sys.executable, "-m", "celery", "-A", "chaoslab.node.worker_app", "worker", "--pool", "prefork",
           "--concurrency", "2", "--loglevel", "WARNING", "--hostname", f"bench-{uuid.uuid4().hex[:6]}@bench",
           "--without-mingle", "--without-gossip"]
    if instrumented:
        config = workdir / "worker.yml"
        config.write_text(f"ledger_path: {workdir / 'ledger.jsonl'}\nledger_fsync: batch\n")
        extra["CHAOSLAB_WORKER_CONFIG"] = str(config)
        cmd.append("--events")
    worker = subprocess.Popen(cmd, env=lab_env(server, **extra), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = server.client(1)
    try:
        while results.dbsize() == 0:
            time.sleep(0.005)
        start = time.perf_counter()
        deadline = start + 300
        while results.dbsize() < count and time.perf_counter() < deadline:
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        done = results.dbsize()
    finally:
        worker.terminate()
        worker.wait(30)
    return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rates: dict[bool, list[float]] = {True: [], False: []}
    with local_redis() as server, tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for instrumented in (False, True):
                rates[instrumented].append(one_round(server, args.tasks, instrumented, Path(tmp)))
        ledger_lines = len((Path(tmp) / "ledger.jsonl").read_text(encoding="utf-8").splitlines())
    plain, full = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"{'measure':48} {'tasks/s':>10}  target")
    print(f"{'worker without ledger and events (median)':48} {plain:10.0f}   rounds: "
          + ", ".join(f"{r:.0f}" for r in rates[False]))
    print(f"{'worker with ledger and events (median)':48} {full:10.0f}   rounds: "
          + ", ".join(f"{r:.0f}" for r in rates[True]))
    ratio = full / plain
    print(f"{'ratio':48} {ratio:10.3f}  >= 0.95  {'met' if ratio >= 0.95 else 'MISSED'}")
    print(f"ledger records written: {ledger_lines} (2 per task expected: {2 * args.tasks * args.rounds})")


if __name__ == "__main__":
    main()
