"""The Prometheus series of a run: range queries over the run's window, kept in the run directory.

``metrics.json`` (:data:`chaoslab.analysis.run_dir.METRICS_FILE`) holds, per name of :data:`RUN_QUERIES`,
Prometheus' range-query result (a list of ``{"metric": {labels}, "values": [[t, "value"], ...]}``), or
``{"error": "..."}`` for a query that failed, with the window and step. The report plots the nodes' CPU, memory
and network from it (:func:`chaoslab.analysis.run_dir.read_metrics`, :func:`per_node`).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from chaoslab.analysis import run_dir

STEP_S = 5.0
RUN_QUERIES: dict[str, str] = {
    "node_cpu": "sum by (node) (rate(chaoslab_node_cpu_seconds_total[15s]))",
    "node_memory": "sum by (node) (chaoslab_node_memory_bytes)",
    "node_network_transmit": 'sum by (node) (rate(node_network_transmit_bytes_total{device!="lo"}[15s]))',
    "node_network_receive": 'sum by (node) (rate(node_network_receive_bytes_total{device!="lo"}[15s]))',
    "node_tcp_retransmits": "sum by (node) (rate(node_netstat_Tcp_RetransSegs[15s]))",
    "node_oom_kills": "sum by (node) (chaoslab_node_oom_kills_total)",
    "workers_up": "sum by (node) (chaoslab_worker_up)",
    "queue_depth": 'sum(redis_key_size{key="celery"})',
    "unacked": 'sum(redis_key_size{key="unacked"})',
    "fault_active": "chaoslab_fault_active == 1",
}


def range_query(url: str, query: str, start: float, end: float, step: float = STEP_S,
                timeout: float = 10.0) -> list[dict[str, Any]]:
    params = urllib.parse.urlencode({"query": query, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{url}/api/v1/query_range?{params}", timeout=timeout) as answer:
        data = json.loads(answer.read())
    if data.get("status") != "success":
        raise RuntimeError(data.get("error") or "query failed")
    return list(data["data"]["result"])


def fetch(url: str, start: float, end: float, step: float = STEP_S) -> dict[str, Any]:
    """Every query of :data:`RUN_QUERIES` over [start, end]; a failed query is recorded, not raised."""
    series: dict[str, Any] = {}
    for name, query in RUN_QUERIES.items():
        try:
            series[name] = range_query(url, query, start, end, step)
        except (OSError, urllib.error.URLError, RuntimeError, ValueError) as error:
            series[name] = {"error": str(error)}
    return {"prometheus": url, "start": start, "end": end, "step": step, "queries": RUN_QUERIES, "series": series}


def store(url: str, start: float, end: float, directory: Path) -> Path:
    """Every query's series over [start, end] into the run directory's ``metrics.json``."""
    return run_dir.write_metrics(fetch(url, start, end), directory)


def per_node(series: dict[str, Any], name: str, t0: float) -> dict[str, tuple[list[float], list[float]]]:
    """node -> (seconds since t0, values) of one stored query; empty where it failed or had no data."""
    result = series.get(name)
    if not isinstance(result, list):
        return {}
    lines: dict[str, tuple[list[float], list[float]]] = {}
    for item in result:
        node = str(item.get("metric", {}).get("node", "all"))
        times = [float(t) - t0 for t, _ in item.get("values", [])]
        values = [float(v) for _, v in item.get("values", [])]
        lines[node] = (times, values)
    return lines
