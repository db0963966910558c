"""What faults change on the local lab's nodes, read from the host; and probes run inside a node."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from functools import cache
from pathlib import Path
from typing import Any

import psutil
from celery.concurrency.asynpool import PROC_ALIVE_TIMEOUT

from chaoslab.node.cgroupfs import read_keyed
from lab_state import CGROUP_ROOT, lab_namespaces, lab_processes
from tests.conftest import inventory

PROBE = Path(__file__).parent / "probe.py"
NODES_RUN = Path("/run/chaoslab/nodes")
NODES_STATE = Path("/var/lib/chaoslab/nodes")


def in_node(node: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", f"chaoslab-{node}", *argv]


def probe(node: str, *args: object, timeout: float = 120) -> dict:
    """Run a probe (tests/lab/probe.py) inside a node; its JSON result."""
    out = subprocess.run(in_node(node, sys.executable, str(PROBE), *map(str, args)), capture_output=True,
                         text=True, check=True, timeout=timeout).stdout
    return json.loads(out)


def probe_in_background(node: str, *args: object) -> subprocess.Popen:
    proc = subprocess.Popen(in_node(node, sys.executable, str(PROBE), *map(str, args)), stdout=subprocess.PIPE,
                            text=True)
    time.sleep(0.3)  # the server is listening
    return proc


def finished(proc: subprocess.Popen, timeout: float = 60) -> dict:
    out, _ = proc.communicate(timeout=timeout)
    return json.loads(out)


def node_network(node: str) -> dict[str, str]:
    """The node's qdiscs and iptables rules (filter and mangle)."""
    def run(*argv: str) -> str:
        return subprocess.run(in_node(node, *argv), capture_output=True, text=True, check=False).stdout

    return {"qdisc": run("tc", "qdisc", "show"), "filter": run("iptables", "-S"),
            "mangle": run("iptables", "-t", "mangle", "-S")}


def memory_limit(node: str) -> str:
    for name in ("memory/chaoslab/{node}/memory.limit_in_bytes", "chaoslab/{node}/memory.max"):
        path = CGROUP_ROOT / name.format(node=node)
        if path.exists():
            return path.read_text().strip()
    return ""


@cache
def node_sizes() -> dict[str, int]:
    """Each node's memory size in bytes as the inventory gives it: its cgroup's memory limit when no fault acts."""
    return {name: host["lab_memory_mib"] * 2**20 for name, host in inventory()["_meta"]["hostvars"].items()}


def node_resident(node: str) -> int:
    """Memory of a node that the kernel cannot reclaim (cgroup v1 total_rss: no page cache)."""
    return read_keyed(CGROUP_ROOT / "memory/chaoslab" / node / "memory.stat")["total_rss"]


def redis_memory_config() -> dict[str, str]:
    """The lab Redis's maxmemory and maxmemory-policy now ({} when it does not answer)."""
    import redis
    import yaml

    from tests.conftest import ROOT

    password = yaml.safe_load((ROOT / ".lab" / "local" / "secrets.yml").read_text())["lab_redis_password"]
    try:
        client = redis.Redis(host="198.18.0.10", password=password, socket_timeout=3, socket_connect_timeout=3)
        return {key: str(value) for key, value in client.config_get("maxmemory*").items()
                if key in ("maxmemory", "maxmemory-policy")}
    except redis.RedisError:
        return {}


def fault_files() -> list[str]:
    return sorted(str(path) for path in [*NODES_RUN.glob("*/faults/*.json"), *NODES_STATE.glob("*/textfile/*.prom")])


def node_state() -> dict:
    """Everything a fault changes on the nodes: qdiscs, iptables, memory caps, processes and their state, records."""
    nodes = [name.removeprefix("chaoslab-") for name in lab_namespaces()]
    processes = {}
    for proc in lab_processes():
        try:
            processes[proc.pid] = (" ".join(proc.cmdline())[:80], proc.status() == psutil.STATUS_STOPPED)
        except psutil.Error:
            continue
    return {"network": {node: node_network(node) for node in nodes},
            "memory": {node: memory_limit(node) for node in nodes},
            "processes": processes, "records": fault_files(), "redis": redis_memory_config(),
            "disk filler": redis_disk_filler(), "disk throttles": disk_throttles()}


def settled_node_state(quiet_s: float = PROC_ALIVE_TIMEOUT + 2, within_s: float = 120.0) -> dict:
    """node_state once it has stayed the same for ``quiet_s``: a worker restarted by an earlier test has its pool
    up (a slow host can see Celery replace a child not up within worker_proc_alive_timeout, which the lab leaves at
    Celery's default), so what changes after is ours."""
    state, since = node_state(), time.monotonic()
    deadline = since + within_s
    while time.monotonic() < deadline:
        time.sleep(1)
        now = node_state()
        if now != state:
            state, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return state
    raise AssertionError(f"the lab's nodes did not settle for {quiet_s}s within {within_s}s")


def disk_throttles() -> list[str]:
    """Write throttles of block devices (the slow-fsync fault's) in any blkio cgroup of the host."""
    found = []
    for rules in Path("/sys/fs/cgroup/blkio").glob("**/blkio.throttle.write_iops_device"):
        found += [f"{rules.parent}: {line}" for line in rules.read_text().splitlines() if line.strip()]
    return found


def redis_disk_filler() -> list[str]:
    """The disk-full fault's filler in the lab Redis's directory, where there is one."""
    for proc in psutil.process_iter(["name"]):
        if (proc.info["name"] or "").startswith("redis-server"):
            with contextlib.suppress(OSError):
                if os.path.exists(f"/proc/{proc.pid}/cwd/chaoslab-disk-full"):
                    return [f"{os.readlink(f'/proc/{proc.pid}/cwd')}/chaoslab-disk-full"]
    return []


def stress_ng() -> list[psutil.Process]:
    return [proc for proc in psutil.process_iter(["name"]) if (proc.info["name"] or "").startswith("stress-ng")]


def is_baseline(state: dict) -> list[str]:
    """What in ``state`` is not the lab's baseline (empty when every fault is gone)."""
    wrong = []
    for node, network in state["network"].items():
        if "c1a0:" in network["qdisc"] or "CHAOSLAB" in network["filter"] + network["mangle"]:
            wrong.append(f"{node}: network fault left: {network}")
    wrong += [f"{node}: memory cap {limit}, not its size {node_sizes().get(node)}"
              for node, limit in state["memory"].items() if limit and int(limit) != node_sizes().get(node)]
    wrong += [f"frozen: {cmd}" for cmd, stopped in state["processes"].values() if stopped]
    wrong += [f"stress-ng: {cmd}" for cmd, _ in state["processes"].values() if cmd.startswith("stress-ng")]
    wrong += [f"record: {path}" for path in state["records"]]
    wrong += [f"disk filler: {path}" for path in state.get("disk filler", [])]
    wrong += [f"disk throttle: {rule}" for rule in state.get("disk throttles", [])]
    if state.get("redis") and state["redis"] != {"maxmemory": "0", "maxmemory-policy": "noeviction"}:
        wrong.append(f"redis: {state['redis']}")
    return wrong


def wait_until(check, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return bool(check())


EVENTS = "/var/lib/chaoslab/nodes/{node}/ledger/events.jsonl"


def measured(node: str, fault: str, since: float, timeout: float = 30.0) -> dict[str, Any]:
    """The effect the node's agent recorded for *fault* after *since* (waits for the fault to end)."""
    path = Path(EVENTS.format(node=node))

    def found() -> list[dict[str, Any]]:
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
        return [r for r in records if r.get("type") == "fault" and r.get("event") == "measured"
                and r.get("fault") == fault and r["t"] >= since]

    assert wait_until(lambda: bool(found()), timeout), f"no measurement of {fault} on {node}"
    return found()[-1]["effect"]
