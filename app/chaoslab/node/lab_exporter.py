"""The lab's own exporter, one per node: the node's CPU, memory and OOM kills, its Celery worker, task latency.

Series (every scrape target carries the label ``node`` from Prometheus' configuration):

- ``chaoslab_node_cpu_seconds_total``, ``chaoslab_node_memory_bytes`` (resident, page cache left out),
  ``chaoslab_node_memory_limit_bytes``, ``chaoslab_node_oom_kills_total``: from the node's cgroup on the
  local lab (``--cgroup chaoslab/<node>``, where /proc shows the whole host), from /proc on a VM or host;
- ``chaoslab_worker_up`` (1: the worker's main process runs and is not frozen), ``chaoslab_worker_processes``
  and ``chaoslab_worker_restarts_total`` (main processes seen replaced): true at once after a SIGKILL,
  where Flower's ``flower_worker_online`` stays 1 until its heartbeat expires;
- ``chaoslab_task_e2e_seconds``: histogram of end-to-end latency (publish to end of the task) of the tasks
  this node's worker ends, read from the node's ledger as it grows.

    python -m chaoslab.node.lab_exporter --listen 198.18.0.101:9809 [--cgroup chaoslab/worker-1] [--ledger FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
from prometheus_client import Histogram, start_http_server
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from chaoslab.node.cgroupfs import cgroup_root, memory_limit, read_keyed
from chaoslab.node.node_procs import worker_processes

E2E_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class NodeResources:
    """CPU, memory and OOM kills of a cgroup (v1 or v2), or of the whole machine."""

    def __init__(self, cgroup: str = "") -> None:
        self.cgroup = cgroup.strip("/")

    def _v1(self, controller: str, name: str) -> Path:
        return cgroup_root() / controller / self.cgroup / name

    def _v2(self, name: str) -> Path:
        return cgroup_root() / self.cgroup / name

    def _v2_mode(self) -> bool:
        return (cgroup_root() / "cgroup.controllers").exists()

    def cpu_seconds(self) -> float:
        if not self.cgroup:
            # Only the busy counters: idle and iowait can step backwards on
            # tickless kernels, and guest time is already inside user time.
            times = psutil.cpu_times()
            busy = ("user", "nice", "system", "irq", "softirq", "steal")
            return float(sum(getattr(times, name, 0.0) for name in busy))
        if self._v2_mode():
            return read_keyed(self._v2("cpu.stat"))["usage_usec"] / 1e6
        return int(self._v1("cpuacct", "cpuacct.usage").read_text(encoding="ascii")) / 1e9

    def memory(self) -> tuple[float, float]:
        """(resident bytes without page cache, limit in bytes)."""
        if not self.cgroup:
            memory = psutil.virtual_memory()
            return float(memory.total - memory.available), float(memory.total)
        total = psutil.virtual_memory().total
        if self._v2_mode():
            stat = read_keyed(self._v2("memory.stat"))
            return float(stat.get("anon", 0)), float(memory_limit(self._v2("memory.max"), total))
        stat = read_keyed(self._v1("memory", "memory.stat"))
        limit = memory_limit(self._v1("memory", "memory.limit_in_bytes"), total)
        return float(stat.get("total_rss", stat.get("rss", 0))), float(limit)

    def oom_kills(self) -> float:
        if not self.cgroup:
            return float(read_keyed(Path("/proc/vmstat")).get("oom_kill", 0))
        if self._v2_mode():
            return float(read_keyed(self._v2("memory.events")).get("oom_kill", 0))
        return float(read_keyed(self._v1("memory", "memory.oom_control")).get("oom_kill", 0))


class WorkerWatch:
    """Whether this node's Celery worker is up, and how often its main process was replaced."""

    def __init__(self) -> None:
        self.main_pid: int | None = None
        self.restarts = 0

    def observe(self) -> tuple[int, int]:
        """(up, processes)."""
        main, children = worker_processes()
        if main is None:
            return 0, 0
        if self.main_pid is not None and main.pid != self.main_pid:
            self.restarts += 1
        self.main_pid = main.pid
        try:
            frozen = main.status() == psutil.STATUS_STOPPED
        except psutil.Error:
            return 0, 0
        return (0 if frozen else 1), 1 + len(children)


class LedgerLatency:
    """End-to-end latency of the tasks ended in a ledger, read from where the last read stopped."""

    def __init__(self, path: str, histogram: Histogram) -> None:
        self.path = Path(path) if path else None
        self.histogram = histogram
        self.offset = 0
        self.inode = 0

    def update(self) -> None:
        if self.path is None or not self.path.exists():
            return
        stat = self.path.stat()
        if stat.st_ino != self.inode or stat.st_size < self.offset:  # reset by the runner: start over
            self.inode, self.offset = stat.st_ino, 0
        with self.path.open("rb") as ledger:
            ledger.seek(self.offset)
            data = ledger.read()
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("type") == "end" and isinstance(record.get("sent"), int | float):
                self.histogram.observe(max(float(record["t"]) - float(record["sent"]), 0.0))


class LabCollector(Collector):
    def __init__(self, resources: NodeResources, worker: WorkerWatch | None, latency: LedgerLatency) -> None:
        self.resources = resources
        self.worker = worker
        self.latency = latency

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        self.latency.update()
        yield CounterMetricFamily("chaoslab_node_cpu_seconds", "CPU time used by the node's processes",
                                  value=self.resources.cpu_seconds())
        used, limit = self.resources.memory()
        yield GaugeMetricFamily("chaoslab_node_memory_bytes", "Resident memory of the node (page cache left out)",
                                value=used)
        yield GaugeMetricFamily("chaoslab_node_memory_limit_bytes", "The node's memory limit (or all its memory)",
                                value=limit)
        yield CounterMetricFamily("chaoslab_node_oom_kills", "Processes of the node the OOM killer killed",
                                  value=self.resources.oom_kills())
        if self.worker is not None:
            up, processes = self.worker.observe()
            yield GaugeMetricFamily("chaoslab_worker_up", "The Celery worker's main process runs, not frozen",
                                    value=up)
            yield GaugeMetricFamily("chaoslab_worker_processes", "The Celery worker's processes", value=processes)
            yield CounterMetricFamily("chaoslab_worker_restarts", "Times the worker's main process was replaced",
                                      value=self.worker.restarts)


def register(registry: CollectorRegistry, resources: NodeResources, worker: WorkerWatch | None,
             ledger: str) -> LabCollector:
    """The node's series in ``registry``: the collector first, since a scrape collects in registration order and
    the collector reads the ledger into the latency histogram served after it."""
    histogram = Histogram("chaoslab_task_e2e_seconds", "Publish to end of a task, for the tasks this node ended",
                          buckets=E2E_BUCKETS, registry=None)
    collector = LabCollector(resources, worker, LedgerLatency(ledger, histogram))
    registry.register(collector)
    registry.register(histogram)
    return collector


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaoslab.node.lab_exporter", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", required=True, help="address:port to serve /metrics on")
    parser.add_argument("--cgroup", default="", help="the node's cgroup (local lab); empty: the whole machine")
    parser.add_argument("--worker", action="store_true", help="this node runs a Celery worker")
    parser.add_argument("--ledger", default="", help="the node's ledger, for task latency")
    args = parser.parse_args(argv)
    address, _, port = args.listen.rpartition(":")
    register(REGISTRY, NodeResources(args.cgroup), WorkerWatch() if args.worker else None, args.ledger)
    start_http_server(int(port), addr=address)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    raise SystemExit(main())
