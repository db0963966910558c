"""This node's Celery worker processes, and the ``alive`` ledger record that lists them.

A node is whatever shares this process's network namespace: a VM or host, or one namespace of the
local lab (where every node's processes share the host's process table). The runner appends an
``alive`` record to each worker node's ledger when it collects the ledgers, so the checker can tell
an execution killed with its process from one still running.

    python -m chaoslab.node.node_procs alive --node worker-1 --ledger /var/lib/chaoslab/ledger/worker-1.jsonl
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import psutil

from chaoslab.ledger import LedgerWriter

WORKER_MARKERS = ("chaoslab.node.worker_app", "worker")


def same_netns(pid: int) -> bool:
    """Whether a process shares this process's network namespace (is on this node)."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return False


def worker_processes() -> tuple[psutil.Process | None, list[psutil.Process]]:
    """This node's Celery worker: its main process and its pool children."""
    workers = []
    # ppid read with the command line: a pool child may end between the listing and a later ppid() call
    for proc in psutil.process_iter(["cmdline", "ppid"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if all(marker in cmdline for marker in WORKER_MARKERS) and "chaoslab.node.fault_agent" not in cmdline \
                and proc.info["ppid"] is not None and same_netns(proc.pid):
            workers.append(proc)
    pids = {proc.pid for proc in workers}
    mains = [proc for proc in workers if proc.info["ppid"] not in pids]
    main = mains[0] if mains else None
    children = [proc for proc in workers if main is not None and proc.info["ppid"] == main.pid]
    return main, children


def alive_record(node: str) -> dict[str, object]:
    """This node's live worker processes: ``procs`` lists [pid, start time] (the start time tells a pid reused by a
    new process from the one that wrote a record), ``main`` the main process's pid."""
    main, children = worker_processes()
    procs = []
    for proc in ([main] if main else []) + children:
        try:
            procs.append([proc.pid, round(proc.create_time(), 2)])
        except psutil.Error:
            continue
    procs.sort()
    return {"type": "alive", "node": node, "pids": [pid for pid, _ in procs], "procs": procs,
            "main": main.pid if main else None, "t": time.time()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaoslab.node.node_procs", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    alive = sub.add_parser("alive", help="append an alive record (this node's worker pids) to a ledger")
    alive.add_argument("--node", required=True)
    alive.add_argument("--ledger", required=True)
    args = parser.parse_args(argv)
    with LedgerWriter(args.ledger, "always") as ledger:
        record = alive_record(args.node)
        ledger.write(record)
    print(record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
