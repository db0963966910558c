"""The lab's task kinds: what a real Celery deployment does, in miniature.

Every task returns the node that ran it, so a caller can see where work went.
"""

from __future__ import annotations

import json
import math
import os
import time
import urllib.parse
import urllib.request
from typing import Any

from chaoslab.node.celery_app import app

PAGE = 4096


def _node() -> str:
    return app.conf.chaoslab.node


@app.task(name="chaoslab.noop")
def noop() -> dict[str, Any]:
    return {"node": _node()}


@app.task(name="chaoslab.sleep")
def sleep(ms: int = 100) -> dict[str, Any]:
    time.sleep(ms / 1000)
    return {"node": _node(), "slept_ms": ms}


@app.task(name="chaoslab.http_request")
def http_request(
    url: str | None = None, timeout: float = 5.0, latency_ms: int = 0, error_rate: float = 0.0
) -> dict[str, Any]:
    """GET the lab's HTTP target (or ``url``); a non-2xx answer or a time-out fails the task."""
    base = url or app.conf.chaoslab.http_target_url
    query = urllib.parse.urlencode({"latency_ms": latency_ms, "error_rate": error_rate})
    with urllib.request.urlopen(f"{base}?{query}", timeout=timeout) as response:
        body = json.loads(response.read() or b"{}")
    return {"node": _node(), "status": response.status, "target": body.get("node")}


def count_primes(limit: int) -> int:
    """Primes below ``limit`` by trial division: deliberately CPU-bound, as in the prototype."""
    count = 0
    for candidate in range(2, limit):
        if all(candidate % divisor for divisor in range(2, math.isqrt(candidate) + 1)):
            count += 1
    return count


@app.task(name="chaoslab.cpu")
def cpu(limit: int = 20000) -> dict[str, Any]:
    return {"node": _node(), "primes": count_primes(limit)}


def node_memory_bytes() -> int:
    """Memory this process may use: its cgroup's limit (v2 memory.max, v1 memory.limit_in_bytes) or MemTotal."""
    limits = []
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        limits.append(int(meminfo.readline().split()[1]) * 1024)
    with open("/proc/self/cgroup", encoding="ascii") as cgroups:
        for line in cgroups:
            _id, controllers, path = line.strip().split(":", 2)
            for candidate in (f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes", f"/sys/fs/cgroup{path}/memory.max"):
                if (controllers == "memory" or not controllers) and os.path.exists(candidate):
                    with open(candidate, encoding="ascii") as limit:
                        value = limit.read().strip()
                    if value.isdigit():
                        limits.append(int(value))
    return min(limits)


def default_memory_mb(concurrency: int = 2) -> int:
    """A memory task's size that fits the node: an eighth of its memory per pool process, 8 to 256 MiB."""
    return max(8, min(256, node_memory_bytes() // (8 * max(concurrency, 1)) // (1024 * 1024)))


@app.task(name="chaoslab.memory")
def memory(mb: int | None = None, hold_ms: int = 500) -> dict[str, Any]:
    """Allocate ``mb`` MiB (default: what fits the node), touch every page so it is resident, hold, free."""
    mb = mb if mb is not None else default_memory_mb(app.conf.worker_concurrency or 2)
    block = bytearray(mb * 1024 * 1024)
    for offset in range(0, len(block), PAGE):
        block[offset] = 1
    time.sleep(hold_ms / 1000)
    del block
    return {"node": _node(), "mb": mb}


KINDS: dict[str, Any] = {
    "noop": noop,
    "sleep": sleep,
    "http_request": http_request,
    "cpu": cpu,
    "memory": memory,
}
