"""The lab's monitoring pieces without the lab: the exporter on fake cgroup trees and fake worker
processes, the Prometheus series of a run against a tiny local HTTP server, the report's node
figures, and the "sent" time that goes from the publisher's message to the worker's ledger."""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import psutil
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from chaoslab.analysis import run_dir as run_files
from chaoslab.experiment import series
from chaoslab.node import lab_exporter
from chaoslab.node.lab_exporter import E2E_BUCKETS, LabCollector, LedgerLatency, NodeResources, WorkerWatch
from chaoslab.node.publisher import SENT_HEADER, MessageTemplate
from chaoslab.node.worker_ledger import SENT_KEY, WorkerLedger
from chaoslab.report.report import NODE_FIGURES, colours, load_run, write_report
from tests.unit.test_report import T0, make_run, views

HISTOGRAM = "chaoslab_task_e2e_seconds"
GIB = 2**30


# --- lab_exporter: LedgerLatency ------------------------------------------------------------------


def end_record(task_id: str, t: float, sent: float | None = None, **extra) -> dict:
    record = {"type": "end", "id": task_id, "kind": "noop", "node": "worker-1", "pid": 101, "attempt": 0,
              "t": t, "outcome": "success", "error_type": None, **extra}
    if sent is not None:
        record["sent"] = sent
    return record


def start_record(task_id: str, t: float) -> dict:
    return {"type": "start", "id": task_id, "kind": "noop", "node": "worker-1", "pid": 101, "attempt": 0,
            "redelivered": False, "received": None, "t": t}


def lines(*records: dict) -> bytes:
    return b"".join(json.dumps(record).encode() + b"\n" for record in records)


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as ledger:
        ledger.write(data)


@pytest.fixture
def latency(tmp_path):
    """(LedgerLatency on tmp_path/worker-1.jsonl, its registry, the ledger path)."""
    registry = CollectorRegistry()
    histogram = Histogram(HISTOGRAM, "test", buckets=E2E_BUCKETS, registry=registry)
    path = tmp_path / "worker-1.jsonl"
    return LedgerLatency(str(path), histogram), registry, path


def observed(registry: CollectorRegistry) -> tuple[float, float]:
    """(_count, _sum) of the histogram."""
    return registry.get_sample_value(f"{HISTOGRAM}_count"), registry.get_sample_value(f"{HISTOGRAM}_sum")


def test_latency_counts_end_records_with_sent(latency):
    tracker, registry, path = latency
    path.write_bytes(lines(
        start_record("a", 100.0), end_record("a", 100.5, sent=99.5),  # 1.0 s
        start_record("b", 101.0), end_record("b", 101.25, sent=101.0),  # 0.25 s
        end_record("c", 102.0, sent=101.995),  # 0.005 s
    ))
    tracker.update()
    count, total = observed(registry)
    assert count == 3
    assert total == pytest.approx(1.255)
    assert registry.get_sample_value(f"{HISTOGRAM}_bucket", {"le": "0.005"}) == 1
    assert registry.get_sample_value(f"{HISTOGRAM}_bucket", {"le": "0.25"}) == 2
    assert registry.get_sample_value(f"{HISTOGRAM}_bucket", {"le": "1.0"}) == 3
    tracker.update()  # nothing new: nothing counted twice
    assert observed(registry) == (3, pytest.approx(1.255))


def test_latency_ignores_records_without_sent_and_other_types(latency):
    tracker, registry, path = latency
    path.write_bytes(lines(
        start_record("a", 100.0),
        end_record("a", 100.5),  # no "sent" (a message from elsewhere than the load generator)
        end_record("b", 100.5, sent=None, extra=1),
        {**end_record("c", 100.5), "sent": "99.0"},  # not a number
        {"type": "start", "id": "d", "t": 100.0, "sent": 99.0},  # a start, not an end
        {"type": "alive", "node": "worker-1", "pids": [1, 2], "t": 101.0},
        end_record("e", 100.5, sent=100.0),
    ) + b"not json at all\n\n")
    tracker.update()
    assert observed(registry) == (1, pytest.approx(0.5))


def test_latency_never_observes_a_negative_latency(latency):
    tracker, registry, path = latency
    path.write_bytes(lines(end_record("a", 100.0, sent=100.5)))  # clocks of two machines disagree
    tracker.update()
    assert observed(registry) == (1, 0.0)


def test_latency_missing_ledger_or_none_is_nothing(tmp_path):
    registry = CollectorRegistry()
    histogram = Histogram(HISTOGRAM, "test", registry=registry)
    LedgerLatency(str(tmp_path / "absent.jsonl"), histogram).update()
    LedgerLatency("", histogram).update()
    assert observed(registry) == (0, 0)


def test_latency_waits_for_a_partial_last_line(latency):
    tracker, registry, path = latency
    whole = json.dumps(end_record("b", 200.0, sent=198.0)).encode()
    path.write_bytes(lines(end_record("a", 100.0, sent=99.0)) + whole[:25])
    tracker.update()
    assert observed(registry) == (1, pytest.approx(1.0))
    tracker.update()
    assert observed(registry) == (1, pytest.approx(1.0))
    append(path, whole[25:])  # complete but not yet terminated
    tracker.update()
    assert observed(registry) == (1, pytest.approx(1.0))
    append(path, b"\n")
    tracker.update()
    assert observed(registry) == (2, pytest.approx(3.0))


def test_latency_reads_only_appended_records(latency):
    tracker, registry, path = latency
    path.write_bytes(lines(end_record("a", 100.0, sent=99.0)))
    tracker.update()
    append(path, lines(end_record("b", 101.0, sent=100.5), end_record("c", 102.0, sent=101.75)))
    tracker.update()
    assert observed(registry) == (3, pytest.approx(1.75))
    append(path, lines(start_record("d", 103.0)))
    tracker.update()
    assert observed(registry) == (3, pytest.approx(1.75))


def test_latency_rereads_a_truncated_ledger(latency):
    tracker, registry, path = latency
    path.write_bytes(lines(*(end_record(f"t{i}", 100.0 + i, sent=99.0 + i) for i in range(5))))
    tracker.update()
    assert observed(registry) == (5, pytest.approx(5.0))
    inode = path.stat().st_ino
    with path.open("r+b") as ledger:  # emptied in place (truncate --size 0), as playbooks/ledgers.yml does
        ledger.truncate(0)
    append(path, lines(end_record("n", 500.0, sent=498.0)))
    assert path.stat().st_ino == inode
    tracker.update()
    assert observed(registry) == (6, pytest.approx(7.0))


def test_latency_rereads_a_replaced_ledger(latency):
    tracker, registry, path = latency
    path.write_bytes(lines(end_record("a", 100.0, sent=99.0)))
    tracker.update()
    replacement = path.with_name("replacement.jsonl")
    # bigger than what was read, so only the new inode tells it is another file
    replacement.write_bytes(lines(end_record("x", 300.0, sent=299.5), end_record("y", 301.0, sent=300.0)))
    old_inode = path.stat().st_ino
    os.replace(replacement, path)
    assert path.stat().st_ino != old_inode
    tracker.update()
    assert observed(registry) == (3, pytest.approx(2.5))


def test_latency_skips_json_lines_that_are_not_objects(latency):
    tracker, registry, path = latency
    path.write_bytes(b"[1, 2]\n" + lines(end_record("a", 100.0, sent=99.0)))
    tracker.update()
    assert observed(registry) == (1, pytest.approx(1.0))


# --- lab_exporter: NodeResources ------------------------------------------------------------------


def test_machine_wide_resources():
    resources = NodeResources("")
    first = resources.cpu_seconds()
    sum(i * i for i in range(200_000))  # a little CPU time
    second = resources.cpu_seconds()
    assert 0 < first <= second
    used, total = resources.memory()
    assert 0 < used <= total
    assert total == psutil.virtual_memory().total
    assert resources.oom_kills() >= 0


def write_tree(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="ascii")


@pytest.fixture
def fake_root(tmp_path, monkeypatch):
    root = tmp_path / "cgroup"
    root.mkdir()
    monkeypatch.setattr(lab_exporter, "cgroup_root", lambda: root)
    return root


CG = "chaoslab/worker-1"


def v1_tree(root: Path, limit: str) -> None:
    write_tree(root, {
        f"cpuacct/{CG}/cpuacct.usage": "12500000000\n",
        f"memory/{CG}/memory.stat": "cache 4096000\nrss 1000\nrss_huge 0\ntotal_cache 8192000\n"
                                    "total_rss 52428800\ntotal_swap 0\n",
        f"memory/{CG}/memory.limit_in_bytes": f"{limit}\n",
        f"memory/{CG}/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
    })


def test_cgroup_v1_resources(fake_root):
    v1_tree(fake_root, str(GIB))
    resources = NodeResources(f"/{CG}/")
    assert resources.cgroup == CG
    assert resources.cpu_seconds() == pytest.approx(12.5)
    assert resources.memory() == (52428800.0, float(GIB))
    assert resources.oom_kills() == 3.0


def test_cgroup_v1_without_a_limit_reports_the_machines_memory(fake_root):
    v1_tree(fake_root, "9223372036854771712")
    used, limit = NodeResources(CG).memory()
    assert used == 52428800.0
    assert limit == float(psutil.virtual_memory().total)


def test_cgroup_v1_rss_without_total_rss(fake_root):
    v1_tree(fake_root, str(GIB))
    write_tree(fake_root, {f"memory/{CG}/memory.stat": "cache 4096\nrss 2048000\n"})
    assert NodeResources(CG).memory()[0] == 2048000.0


def v2_tree(root: Path, limit: str) -> None:
    write_tree(root, {
        "cgroup.controllers": "cpuset cpu io memory pids\n",
        f"{CG}/cpu.stat": "usage_usec 7250000\nuser_usec 5000000\nsystem_usec 2250000\n",
        f"{CG}/memory.stat": "anon 73400320\nfile 1048576\nkernel 4096\n",
        f"{CG}/memory.max": f"{limit}\n",
        f"{CG}/memory.events": "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n",
    })


def test_cgroup_v2_resources(fake_root):
    v2_tree(fake_root, str(512 * 2**20))
    resources = NodeResources(CG)
    assert resources.cpu_seconds() == pytest.approx(7.25)
    assert resources.memory() == (73400320.0, float(512 * 2**20))
    assert resources.oom_kills() == 2.0


def test_cgroup_v2_unlimited_memory(fake_root):
    v2_tree(fake_root, "max")
    assert NodeResources(CG).memory() == (73400320.0, float(psutil.virtual_memory().total))


def test_cgroup_v2_limit_above_the_machine_is_clipped(fake_root):
    v2_tree(fake_root, str(psutil.virtual_memory().total * 4))
    assert NodeResources(CG).memory()[1] == float(psutil.virtual_memory().total)


def test_cgroup_v2_without_oom_kills(fake_root):
    v2_tree(fake_root, "max")
    write_tree(fake_root, {f"{CG}/memory.events": "low 0\nhigh 0\nmax 0\noom 0\n"})
    assert NodeResources(CG).oom_kills() == 0.0


# --- lab_exporter: WorkerWatch --------------------------------------------------------------------


class FakeProcess:
    def __init__(self, pid: int, status: str = psutil.STATUS_SLEEPING, error: Exception | None = None) -> None:
        self.pid = pid
        self._status = status
        self._error = error

    def status(self) -> str:
        if self._error is not None:
            raise self._error
        return self._status


@pytest.fixture
def workers(monkeypatch):
    """Set what worker_processes() answers: workers.now = (main, children)."""
    state = SimpleNamespace(now=(None, []))
    monkeypatch.setattr(lab_exporter, "worker_processes", lambda: state.now)
    return state


def test_no_worker_is_down(workers):
    watch = WorkerWatch()
    assert watch.observe() == (0, 0)
    assert watch.restarts == 0


def test_running_worker_with_children(workers):
    workers.now = (FakeProcess(10), [FakeProcess(11), FakeProcess(12)])
    watch = WorkerWatch()
    assert watch.observe() == (1, 3)
    workers.now = (FakeProcess(10, psutil.STATUS_RUNNING), [FakeProcess(11)])
    assert watch.observe() == (1, 2)
    assert watch.restarts == 0


def test_frozen_worker_is_down(workers):
    workers.now = (FakeProcess(10, psutil.STATUS_STOPPED), [FakeProcess(11), FakeProcess(12)])
    up, processes = WorkerWatch().observe()
    assert up == 0
    assert processes == 3


def test_vanished_main_process_is_down(workers):
    workers.now = (FakeProcess(10, error=psutil.NoSuchProcess(10)), [])
    assert WorkerWatch().observe() == (0, 0)


def test_replaced_main_process_counts_a_restart(workers):
    watch = WorkerWatch()
    workers.now = (FakeProcess(10), [FakeProcess(11)])
    watch.observe()
    workers.now = (None, [])  # killed: no worker for a while
    assert watch.observe() == (0, 0)
    assert watch.restarts == 0
    workers.now = (FakeProcess(20), [FakeProcess(21)])  # supervisor started a new one
    assert watch.observe() == (1, 2)
    assert watch.restarts == 1
    assert watch.observe() == (1, 2)
    assert watch.restarts == 1
    workers.now = (FakeProcess(30), [])
    watch.observe()
    assert watch.restarts == 2


# --- lab_exporter: LabCollector -------------------------------------------------------------------


class FakeResources:
    def cpu_seconds(self) -> float:
        return 42.5

    def memory(self) -> tuple[float, float]:
        return 100.0 * 2**20, float(GIB)

    def oom_kills(self) -> float:
        return 3.0


NODE_FAMILIES = ["chaoslab_node_cpu_seconds", "chaoslab_node_memory_bytes", "chaoslab_node_memory_limit_bytes",
                 "chaoslab_node_oom_kills"]
WORKER_FAMILIES = ["chaoslab_worker_up", "chaoslab_worker_processes", "chaoslab_worker_restarts"]


def test_collector_families_without_a_worker(latency):
    tracker, _, _ = latency
    families = list(LabCollector(FakeResources(), None, tracker).collect())
    assert [family.name for family in families] == NODE_FAMILIES
    values = {family.name: family.samples[0].value for family in families}
    assert values == {"chaoslab_node_cpu_seconds": 42.5, "chaoslab_node_memory_bytes": 100.0 * 2**20,
                      "chaoslab_node_memory_limit_bytes": float(GIB), "chaoslab_node_oom_kills": 3.0}


def test_collector_families_with_a_worker(latency, workers):
    tracker, _, _ = latency
    workers.now = (FakeProcess(10), [FakeProcess(11), FakeProcess(12)])
    families = list(LabCollector(FakeResources(), WorkerWatch(), tracker).collect())
    assert [family.name for family in families] == NODE_FAMILIES + WORKER_FAMILIES
    values = {family.name: family.samples[0].value for family in families}
    assert values["chaoslab_worker_up"] == 1
    assert values["chaoslab_worker_processes"] == 3
    assert values["chaoslab_worker_restarts"] == 0


def test_collector_in_a_registry_exposes_everything(latency, workers, fake_root):
    tracker, registry, path = latency
    v2_tree(fake_root, "max")
    workers.now = (FakeProcess(10), [FakeProcess(11)])
    path.write_bytes(lines(end_record("a", 100.0, sent=99.75)))
    registry.register(LabCollector(NodeResources(CG), WorkerWatch(), tracker))
    text = generate_latest(registry).decode()
    assert "chaoslab_node_cpu_seconds_total 7.25" in text
    assert "chaoslab_node_memory_bytes 7.340032e+07" in text
    assert "chaoslab_node_oom_kills_total 2.0" in text
    assert "chaoslab_worker_up 1.0" in text
    assert "chaoslab_worker_processes 2.0" in text
    assert "chaoslab_worker_restarts_total 0.0" in text
    workers.now = (FakeProcess(20), [])
    text = generate_latest(registry).decode()
    assert "chaoslab_worker_restarts_total 1.0" in text
    assert "chaoslab_worker_processes 1.0" in text
    assert f"{HISTOGRAM}_count 1.0" in text  # by the second scrape at the latest (see the next test)
    assert f"{HISTOGRAM}_sum 0.25" in text


def test_a_scrape_serves_the_latency_it_just_read(tmp_path):
    """register() puts the collector before the histogram: one scrape reads the ledger and serves what it read."""
    from prometheus_client import CollectorRegistry

    from chaoslab.node.lab_exporter import register

    registry = CollectorRegistry()
    path = tmp_path / "worker-1.jsonl"
    register(registry, FakeResources(), None, str(path))
    path.write_bytes(lines(end_record("a", 100.0, sent=99.75)))
    text = generate_latest(registry).decode()
    assert f"{HISTOGRAM}_count 1.0" in text


# --- series ---------------------------------------------------------------------------------------


STORED = {
    "node_cpu": [
        {"metric": {"node": "worker-1"}, "values": [[1000.0, "0.5"], [1005.0, "0.75"]]},
        {"metric": {"node": "worker-2"}, "values": [[1000.0, "1"], [1005.0, "NaN"], [1010, "2.5"]]},
    ],
    "queue_depth": [{"metric": {}, "values": [[1002.5, "17"]]}],
    "node_memory": {"error": "HTTP Error 400: Bad Request"},
}


def test_per_node_gives_seconds_since_t0_and_floats():
    lines_ = series.per_node(STORED, "node_cpu", 995.0)
    assert set(lines_) == {"worker-1", "worker-2"}
    assert lines_["worker-1"] == ([5.0, 10.0], [0.5, 0.75])
    times, values = lines_["worker-2"]
    assert times == [5.0, 10.0, 15.0]
    assert values[0] == 1.0 and math.isnan(values[1]) and values[2] == 2.5
    assert all(isinstance(value, float) for value in [*times, *values])


def test_per_node_without_a_node_label_is_all():
    assert series.per_node(STORED, "queue_depth", 1000.0) == {"all": ([2.5], [17.0])}


def test_per_node_of_a_failed_or_missing_query_is_empty():
    assert series.per_node(STORED, "node_memory", 0.0) == {}
    assert series.per_node(STORED, "workers_up", 0.0) == {}
    assert series.per_node({}, "node_cpu", 0.0) == {}


@pytest.mark.parametrize("content", [None, "", "{not json", "[1, 2, 3]", '"text"', '{"prometheus": "x"}'])
def test_load_of_a_missing_or_corrupt_file_is_empty(tmp_path, content):
    if content is not None:
        (tmp_path / run_files.METRICS_FILE).write_text(content)
    assert run_files.read_metrics(tmp_path) == {}


def test_load_of_a_missing_directory_is_empty(tmp_path):
    assert run_files.read_metrics(tmp_path / "nowhere") == {}


FAILING = {"queue_depth": 400, "unacked": 200}
"""Queries the fake Prometheus fails: with an HTTP error status, or with status "error" in a 200 answer."""


QUERY_NAMES = {query: name for name, query in series.RUN_QUERIES.items()}


class FakePrometheus(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        params = dict(urllib.parse.parse_qsl(url.query))
        self.server.requests.append((url.path, params))
        name = QUERY_NAMES.get(params.get("query", ""))
        if url.path != "/api/v1/query_range" or name is None:
            self.answer(404, {"status": "error", "error": "not found"})
        elif name in FAILING:
            self.answer(FAILING[name], {"status": "error", "errorType": "bad_data", "error": f"{name} is bad"})
        else:
            start, step = float(params["start"]), float(params["step"])
            result = [{"metric": {"node": node}, "values": [[start + i * step, str(i + index)] for i in range(3)]}
                      for index, node in enumerate(("worker-1", "worker-2"))]
            self.answer(200, {"status": "success", "data": {"resultType": "matrix", "result": result}})

    def answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args):
        pass


@pytest.fixture
def prometheus(monkeypatch):
    """URL of a fake Prometheus on 127.0.0.1 (a random port), and the requests it received."""
    monkeypatch.setenv("no_proxy", "*")
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakePrometheus)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server.requests
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_fetch_runs_every_query_and_records_failures(prometheus):
    url, requests = prometheus
    fetched = series.fetch(url, 1000.0, 1060.0)
    assert fetched["prometheus"] == url
    assert (fetched["start"], fetched["end"], fetched["step"]) == (1000.0, 1060.0, series.STEP_S)
    assert fetched["queries"] == series.RUN_QUERIES
    assert set(fetched["series"]) == set(series.RUN_QUERIES)
    for name, result in fetched["series"].items():
        if name in FAILING:
            assert set(result) == {"error"} and result["error"], name
        else:
            assert [item["metric"]["node"] for item in result] == ["worker-1", "worker-2"], name
            assert result[0]["values"] == [[1000.0, "0"], [1005.0, "1"], [1010.0, "2"]]
    assert "is bad" in fetched["series"]["unacked"]["error"]  # Prometheus' own words from a 200 answer
    assert "400" in fetched["series"]["queue_depth"]["error"]
    assert sorted(params["query"] for _, params in requests) == sorted(series.RUN_QUERIES.values())
    assert all(path == "/api/v1/query_range" for path, _ in requests)
    assert all(float(params["end"]) == 1060.0 and float(params["step"]) == series.STEP_S for _, params in requests)


def test_fetch_against_a_closed_port_records_errors(monkeypatch):
    monkeypatch.setenv("no_proxy", "*")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    fetched = series.fetch(f"http://127.0.0.1:{port}", 1000.0, 1060.0)
    assert time.monotonic() - started < 10
    assert set(fetched["series"]) == set(series.RUN_QUERIES)
    for name, result in fetched["series"].items():
        assert set(result) == {"error"} and result["error"], name


def test_store_writes_what_load_reads(prometheus, tmp_path):
    url, _ = prometheus
    path = series.store(url, 1000.0, 1060.0, tmp_path)
    assert path == tmp_path / run_files.METRICS_FILE
    stored = json.loads(path.read_text())
    assert stored["start"] == 1000.0 and stored["end"] == 1060.0
    loaded = run_files.read_metrics(tmp_path)
    assert loaded == stored["series"]
    assert set(loaded) == set(series.RUN_QUERIES)
    assert series.per_node(loaded, "node_cpu", 1000.0)["worker-2"] == ([0.0, 5.0, 10.0], [1.0, 2.0, 3.0])
    assert series.per_node(loaded, "queue_depth", 1000.0) == {}


# --- report: node figures -------------------------------------------------------------------------


NODES = ("worker-1", "worker-2")
STEPS = range(0, 76, 5)
NODE_SERIES = {
    "node_cpu": ("CPUs", [("node_cpu", "", "-", 0.4)]),
    "node_memory": ("MiB", [("node_memory", "", "-", 300.0)]),
    "node_network": ("kB/s", [("node_network_transmit", " transmit", "-", 20.0),
                              ("node_network_receive", " receive", ":", 15.0)]),
    "node_retransmits": ("segments/s", [("node_tcp_retransmits", "", "-", 3.0)]),
}
"""Each node figure: its unit, and per stored query its legend suffix, line style and the value at t=0 of the first
node, in the unit (metrics.json holds it in bytes, so memory is 300 MiB and transmit 20 kB/s)."""
UNIT_SCALE = {"node_cpu": 1.0, "node_memory": 2.0**20, "node_network": 1e3, "node_retransmits": 1.0}
NO_SERIES = "no Prometheus series recorded"


def node_series(scale: float) -> list[dict]:
    """Per node a line rising by a third over the run: the first node's from *scale*, the second's from twice it."""
    return [{"metric": {"node": node}, "values": [[T0 + t, str(scale * (index + 1) * (1 + t / 75))] for t in STEPS]}
            for index, node in enumerate(NODES)]


def write_metrics(run_dir: Path) -> None:
    stored = {query: node_series(start * UNIT_SCALE[name])
              for name, (_, queries) in NODE_SERIES.items() for query, _, _, start in queries}
    metrics = {"prometheus": "http://127.0.0.1:9090", "start": T0, "end": T0 + 75, "step": 5.0,
               "queries": series.RUN_QUERIES,
               "series": {**stored, "queue_depth": {"error": "HTTP Error 400: Bad Request"}}}
    (run_dir / run_files.METRICS_FILE).write_text(json.dumps(metrics))


def test_node_figures_from_metrics(tmp_path):
    run_dir, _ = make_run(tmp_path / "run-1")
    write_metrics(run_dir)
    assert set(load_run(run_dir).metrics["node_cpu"][0]["metric"].values()) == {"worker-1"}
    shown = views(run_dir)
    palette = colours(list(NODES))
    assert palette["worker-1"] != palette["worker-2"]
    for name, (unit, queries) in NODE_SERIES.items():
        view = shown[name]
        assert view.ylabel == unit and NO_SERIES not in view.texts, name
        labels = [f"{node}{suffix}" for _, suffix, _, _ in queries for node in NODES]
        assert [text for text, _ in view.legend] == ["fault window", *labels], name
        assert list(view.curves) == labels, name
        for _, suffix, style, start in queries:
            for index, node in enumerate(NODES):  # one line per node, in the node's colour, in the figure's unit
                curve = view.curves[f"{node}{suffix}"]
                assert (curve.colour, curve.style) == (palette[node], style), (name, node)
                assert np.allclose(curve.x, list(STEPS)), (name, node)
                assert np.allclose(curve.y, [start * (index + 1) * (1 + t / 75) for t in STEPS]), (name, node)
    page = write_report(run_dir).read_text()
    for spec in NODE_FIGURES:
        assert f'<figure id="figure-{spec.name}">\n<img alt="{spec.title}"' in page


def test_node_figures_without_metrics_say_so(tmp_path):
    run_dir, _ = make_run(tmp_path / "run-1")
    assert load_run(run_dir).metrics == {}
    shown = views(run_dir)
    for spec in NODE_FIGURES:
        assert shown[spec.name].curves == {} and NO_SERIES in shown[spec.name].texts, spec.name
        assert shown[spec.name].ylabel == NODE_SERIES[spec.name][0]


def test_node_figures_with_only_failed_queries_say_so(tmp_path):
    run_dir, _ = make_run(tmp_path / "run-1")
    failed = {name: {"error": "connection refused"} for name in series.RUN_QUERIES}
    (run_dir / run_files.METRICS_FILE).write_text(json.dumps({"series": failed}))
    shown = views(run_dir)
    for spec in NODE_FIGURES:
        assert shown[spec.name].curves == {} and NO_SERIES in shown[spec.name].texts, spec.name


# --- publisher and worker ledger: the "sent" time -------------------------------------------------


def test_rendered_message_carries_the_send_time():
    template = MessageTemplate("chaoslab.noop", {"ms": 5}, "celery", "loadgen1@host", "reply-queue")
    before = time.time()
    first = json.loads(template.render("id-1"))
    second = json.loads(template.render("id-2"))
    after = time.time()
    sent = first["headers"][SENT_HEADER]
    assert SENT_HEADER == "chaoslab_sent" == SENT_KEY
    assert isinstance(sent, float)
    assert before <= sent <= second["headers"][SENT_HEADER] <= after
    assert sent == pytest.approx(time.time(), abs=5)
    assert first["headers"]["id"] == "id-1" and second["headers"]["id"] == "id-2"


def fake_task(**request) -> SimpleNamespace:
    base = {"id": "task-1", "retries": 0, "delivery_info": {"redelivered": False}}
    return SimpleNamespace(name="chaoslab.noop", request=SimpleNamespace(**{**base, **request}))


def ledger_records(ledger: WorkerLedger, path: Path) -> list[dict]:
    for writer in ledger._writers.values():
        writer.close()
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_end_record_keeps_sent(tmp_path):
    path = tmp_path / "worker-1.jsonl"
    ledger = WorkerLedger(str(path), "worker-1", "never")
    task = fake_task(chaoslab_sent=1_700_000_000.25, retries=2)
    ledger.on_prerun(task=task)
    ledger.on_postrun(task=task, state="SUCCESS", retval={"node": "worker-1"})
    start, end = ledger_records(ledger, path)
    assert start["type"] == "start" and "sent" not in start
    assert end["type"] == "end"
    assert end["sent"] == 1_700_000_000.25
    assert (end["id"], end["kind"], end["node"], end["attempt"], end["outcome"]) == \
        ("task-1", "noop", "worker-1", 2, "success")


@pytest.mark.parametrize("request_fields", [{}, {"chaoslab_sent": None}, {"chaoslab_sent": "1700000000.25"}])
def test_end_record_without_sent(tmp_path, request_fields):
    path = tmp_path / "worker-1.jsonl"
    ledger = WorkerLedger(str(path), "worker-1", "never")
    ledger.on_postrun(task=fake_task(**request_fields), state="FAILURE", retval=RuntimeError("boom"))
    (end,) = ledger_records(ledger, path)
    assert "sent" not in end
    assert (end["outcome"], end["error_type"]) == ("failure", "RuntimeError")


def test_an_execution_cut_short_without_a_state_has_no_end_record(tmp_path):
    """A hard time limit: the pool SIGTERMs the child, SystemExit unwinds the trace and Celery still sends
    task_postrun (from a finally block) with no state. The task did not end by itself: no end record, as for a
    SIGKILL (the result backend's TimeLimitExceeded then says failed_by_worker), never a made-up failure."""
    from celery import Celery, signals
    from celery.app.trace import build_tracer

    path = tmp_path / "worker-1.jsonl"
    ledger = WorkerLedger(str(path), "worker-1", "never")
    app = Celery("cut", broker="memory://", backend="cache+memory://", set_as_current=False)

    @app.task(name="cut.slow")
    def slow() -> None:
        raise SystemExit(1)  # what billiard's SIGTERM handler raises in the child

    signals.task_postrun.connect(ledger.on_postrun, weak=False)
    try:
        with pytest.raises(SystemExit):
            build_tracer(slow.name, slow, eager=False, propagate=False, app=app)("id-1", (), {}, {"id": "id-1"})
    finally:
        signals.task_postrun.disconnect(ledger.on_postrun)
    assert not path.exists() or ledger_records(ledger, path) == []


def test_sent_header_reaches_the_task_request_and_the_ledger(tmp_path):
    """The publisher's message as Celery's worker reads it: the header is on task.request."""
    from celery import Celery
    from celery.app.trace import build_tracer
    from celery.worker.request import Request
    from kombu import Connection

    app = Celery("monitoring-test", broker="memory://", set_as_current=False)
    path = tmp_path / "worker-1.jsonl"
    ledger = WorkerLedger(str(path), "worker-1", "never")

    @app.task(name="chaoslab.noop", bind=True)
    def noop(self):
        ledger.on_postrun(task=self, state="SUCCESS", retval=None)
        return getattr(self.request, SENT_KEY, None)

    message = json.loads(MessageTemplate("chaoslab.noop", {}, "celery", "o@h", "r").render("id-9"))
    with Connection("memory://") as connection:
        channel = connection.channel()
        request = Request(channel.Message(message, channel=channel), app=app, task=noop)
        traced = build_tracer(noop.name, noop, app=app, eager=True)(
            request.id, request.args, request.kwargs, request.request_dict)
    assert traced.retval == message["headers"][SENT_HEADER]
    (end,) = ledger_records(ledger, path)
    assert end["id"] == "id-9"
    assert end["sent"] == message["headers"][SENT_HEADER]


def test_a_task_the_worker_discards_gets_a_revoked_record(tmp_path):
    """Celery's task_revoked, as a worker sends it for a task past its expires: one revoked record."""
    from celery import signals
    from celery.app.task import Context

    path = tmp_path / "worker-1.jsonl"
    ledger = WorkerLedger(str(path), "worker-1", "never")
    ledger.connect()
    try:
        signals.task_revoked.send(sender=None, request=Context(id="task-9"), terminated=False, signum=None,
                                  expired=True)
    finally:
        for signal, handler in ((signals.task_received, ledger.on_received), (signals.task_prerun, ledger.on_prerun),
                                (signals.task_postrun, ledger.on_postrun), (signals.task_revoked, ledger.on_revoked),
                                (signals.worker_ready, ledger.on_ready)):
            signal.disconnect(handler)
    (record,) = ledger_records(ledger, path)
    assert (record["type"], record["id"], record["expired"], record["terminated"]) == ("revoked", "task-9", True, False)
