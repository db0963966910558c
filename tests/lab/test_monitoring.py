"""Monitoring on the local lab: Prometheus scrapes every exporter, every dashboard panel shows data during an
experiment with a fault, credentials are required, and a SIGKILLed worker shows as down."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from base64 import b64encode
from pathlib import Path

import psutil
import pytest
import yaml

from chaoslab.node.fault_service import ServiceControl
from chaoslab.report.dashboard import annotation_query, build, panel_queries
from chaoslab.report.report import draw_figures, load_run
from fault_state import wait_until
from lab_state import netns_inode, process_netns_inode, service_pid
from test_experiments import run_scenario
from tests.conftest import ROOT
from tests.figure_view import FigureView

PROMETHEUS = "http://198.18.0.20:9090"
FLOWER = "http://198.18.0.20:5555"
SCENARIO = Path(__file__).parent / "scenarios" / "monitoring.yml"


def prometheus(path: str, **params: object) -> dict:
    url = f"{PROMETHEUS}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as answer:
        data = json.loads(answer.read())
    assert data["status"] == "success", data
    return data["data"]


def instant(query: str) -> list[dict]:
    return prometheus("/api/v1/query", query=query)["result"]


def secrets() -> dict:
    return yaml.safe_load((ROOT / ".lab" / "local" / "secrets.yml").read_text())


def http_status(url: str, auth: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def test_every_prometheus_target_is_up(lab):
    def targets() -> list[dict]:
        return prometheus("/api/v1/targets")["activeTargets"]

    assert wait_until(lambda: targets() and all(t["health"] == "up" for t in targets()), timeout=40), \
        [(t["labels"], t["health"], t.get("lastError")) for t in targets() if t["health"] != "up"]
    jobs = {(t["labels"]["job"], t["labels"]["node"]) for t in targets()}
    nodes = {"redis", "monitor", "worker-1", "worker-2"}
    assert {("node", n) for n in nodes} | {("lab", n) for n in nodes} <= jobs
    assert {("redis", "redis"), ("flower", "monitor"), ("loadgen", "monitor"), ("prometheus", "monitor")} <= jobs


def test_node_exporter_runs_only_the_roles_collectors(lab):
    defaults = yaml.safe_load((ROOT / "roles/node_exporter/defaults/main.yml").read_text())
    wanted = set(defaults["node_exporter_collectors"])

    def collectors() -> set[str]:
        return {item["metric"]["collector"] for item in instant('node_scrape_collector_success{node="worker-1"}')}

    assert wait_until(lambda: collectors() == wanted, timeout=20), (collectors() - wanted, wanted - collectors())


@pytest.mark.parametrize(("node", "program"), [
    ("monitor", "prometheus"), ("monitor", "flower"), ("redis", "redis-exporter"), ("worker-1", "node-exporter"),
    ("worker-1", "lab-exporter"), ("redis", "redis")])
def test_services_listen_on_the_nodes_lab_address_only(lab, node, program):
    main = psutil.Process(service_pid(node, program))
    assert process_netns_inode(main.pid) == netns_inode(f"chaoslab-{node}")
    pids = {main.pid} | {child.pid for child in main.children(recursive=True)}
    sockets = subprocess.run(["ip", "netns", "exec", f"chaoslab-{node}", "ss", "-H", "-ltnp"], capture_output=True,
                             text=True, check=True).stdout.splitlines()
    listening = [line.split()[3].rsplit(":", 1)[0] for line in sockets
                 if any(f"pid={pid}," in line for pid in pids)]
    assert listening and set(listening) == {lab[node]["lab_address"]}, sockets


def test_flower_requires_credentials(lab):
    password = secrets()["lab_flower_password"]
    assert http_status(f"{FLOWER}/") == 401
    assert http_status(f"{FLOWER}/metrics") == 401
    assert http_status(f"{FLOWER}/", ("chaoslab", "wrong")) == 401
    assert http_status(f"{FLOWER}/metrics", ("chaoslab", password)) == 200


def test_every_panel_shows_data_during_an_experiment_with_a_fault(lab, tmp_path):
    proc, run_dir = run_scenario(SCENARIO, tmp_path / "results")
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-2000:]
    run = json.loads((run_dir / "run.json").read_text())
    time.sleep(6)  # the last scrape of the run's window
    start, end = run["started"], time.time()
    dashboard = build()
    empty = []
    for title, expr in panel_queries(dashboard, "worker-1", "redis"):
        result = prometheus("/api/v1/query_range", query=expr, start=start, end=end, step=5)["result"]
        if not any(series["values"] for series in result):
            empty.append(f"{title}: {expr}")
    assert not empty, "panels without data:\n" + "\n".join(empty)
    fault = run["faults"][0]
    windows = prometheus("/api/v1/query_range", query=annotation_query(dashboard), start=start, end=end,
                         step=5)["result"]
    assert windows, "no fault annotation"
    stamps = [float(t) for series in windows for t, _ in series["values"]]
    assert min(stamps) <= fault["start"] + 10 and max(stamps) >= fault["start"] + 5
    assert {series["metric"]["fault"] for series in windows} == {fault["fault"]}
    kept = json.loads((run_dir / "metrics.json").read_text())["series"]  # the run keeps its series
    assert {item["metric"]["node"] for item in kept["node_cpu"]} >= {"redis", "monitor", "worker-1", "worker-2"}
    assert all(isinstance(kept[name], list) and kept[name] for name in ("node_memory", "queue_depth", "fault_active"))
    # the report draws each node's CPU from those series: a line per node, busy at some point of the run
    cpu = FigureView.of(draw_figures(load_run(run_dir))["node_cpu"])
    assert set(cpu.curves) >= {"redis", "monitor", "worker-1", "worker-2"}
    assert all(max(cpu.curves[node].y) > 0 for node in ("redis", "worker-1", "worker-2")), cpu.curves


def test_a_sigkilled_worker_shows_as_down_within_30_seconds(lab):
    workers = len([n for n in lab if n.startswith("worker-")])
    assert wait_until(lambda: instant("sum(chaoslab_worker_up)")[0]["value"][1] == str(workers), timeout=30)
    service = ServiceControl("supervisor", "celery-worker", "/etc/chaoslab/nodes/worker-2/supervisord.conf")
    service.kill_and_keep_down()
    killed = time.monotonic()
    try:
        assert wait_until(lambda: instant("sum(chaoslab_worker_up)")[0]["value"][1] == str(workers - 1),
                          timeout=30), "the dashboard's worker panel still counts the killed worker"
        assert time.monotonic() - killed <= 30
        down = instant('chaoslab_worker_up{node="worker-2"}')
        assert down and down[0]["value"][1] == "0"
    finally:
        service.start()
    assert wait_until(lambda: instant("sum(chaoslab_worker_up)")[0]["value"][1] == str(workers), timeout=30)


@pytest.mark.parametrize(("extra", "line"), [
    ([], "grafana: not installed on the local lab (its nodes have no route to https://apt.grafana.com)"),
    (["-e", "grafana_install=true", "-e", "grafana_repo_url=http://198.18.0.254:9"],
     "grafana: http://198.18.0.254:9 cannot be reached from monitor"),
])
def test_grafana_is_skipped_in_one_line_where_its_repository_is_out_of_reach(lab, extra, line):
    from tests.conftest import recap, run_playbook

    proc = run_playbook("playbooks/site.yml", "--tags", "grafana", *extra)
    said = [text for text in proc.stdout.splitlines() if "grafana: " in text and "TASK" not in text]
    assert len(said) == 1 and line in said[0], proc.stdout[-3000:]
    assert recap(proc.stdout)["monitor"]["changed"] == 0 and recap(proc.stdout)["monitor"]["failed"] == 0
    assert not Path("/etc/apt/sources.list.d/grafana.list").exists()
    assert not Path("/etc/grafana").exists() or not list(Path("/etc/grafana").rglob("celery-chaos-lab*"))


def test_chaoslab_where_says_where_monitoring_is(lab):
    import subprocess as sp

    from tests.conftest import BIN, ansible_env

    out = sp.run([str(BIN / "chaoslab"), "where"], cwd=ROOT, env=ansible_env(), capture_output=True, text=True,
                 check=True).stdout
    assert PROMETHEUS in out and FLOWER in out and "Grafana     not installed" in out
    assert str(ROOT / ".lab" / "local" / "secrets.yml") in out
