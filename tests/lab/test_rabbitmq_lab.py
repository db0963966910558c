"""The local lab with RabbitMQ as its broker (LAB_BROKER=rabbitmq): provisioned idempotently on the broker node, on
the lab address only with the lab's own user, scraped by Prometheus; a run whose worker main process is killed with
late acknowledgement gets the killed tasks back at once (RabbitMQ requeues a dead consumer's messages: no visibility
timeout), and the checker says so; broker-restart SIGKILLs RabbitMQ, measured as the downtime a client saw, and the
confirmed backlog of its durable queue survives. The lab goes back to Redis afterwards."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from test_fault_effects import inject
from test_monitoring import prometheus

from chaoslab.experiment.lab import client_app, lab_info
from chaoslab.ledger import read_records
from chaoslab.report.dashboard import build, panel_queries
from fault_state import is_baseline, node_state, wait_until
from test_experiments import run_scenario
from tests.conftest import ROOT, recap, run_playbook
from verdict_checks import assert_verdicts_hold_up, rabbitmq_queues

RABBIT = {"LAB_BROKER": "rabbitmq"}
BROKER_NODE = "198.18.0.10"


@pytest.fixture(scope="module")
def rabbit_lab(lab):
    """The lab switched to RabbitMQ; switched back to Redis (and the kept broker with it) at the end."""
    try:
        first = run_playbook("playbooks/site.yml", env=RABBIT)
        yield first
    finally:
        run_playbook("playbooks/site.yml", env={"LAB_BROKER": "redis"})


def api(path: str, user: str, password: str) -> int:
    """The status of a GET on the broker's management API with these credentials."""
    manager = urllib.request.HTTPPasswordMgrWithDefaultRealm()
    manager.add_password(None, f"http://{BROKER_NODE}:15672/", user, password)
    opener = urllib.request.build_opener(urllib.request.HTTPBasicAuthHandler(manager))
    try:
        with opener.open(f"http://{BROKER_NODE}:15672/api/{path}", timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_provisioning_rabbitmq_twice_changes_nothing_the_second_time(rabbit_lab):
    assert recap(rabbit_lab.stdout)["redis"]["changed"] >= 1
    again = run_playbook("playbooks/site.yml", env=RABBIT)
    changed = {host: counts["changed"] for host, counts in recap(again.stdout).items() if counts["changed"]}
    assert not changed, again.stdout[-3000:]
    assert (ROOT / ".lab" / "local" / "broker").read_text().strip() == "rabbitmq"
    info = lab_info()  # later commands find the lab's broker without LAB_BROKER
    assert info.broker == "rabbitmq" and info.broker_url().startswith("amqp://chaoslab:")


def test_rabbitmq_listens_on_the_lab_address_and_knows_only_the_labs_user(rabbit_lab):
    sockets = subprocess.run(["ip", "netns", "exec", "chaoslab-redis", "ss", "-H", "-ltnp"], capture_output=True,
                             text=True, check=True).stdout.splitlines()
    listening = {tuple(line.split()[3].rsplit(":", 1)) for line in sockets if '"beam.smp"' in line or '"epmd"' in line}
    public = {(ip, port) for ip, port in listening if ip not in ("127.0.0.1", "[::1]")}  # epmd takes both loopbacks
    # AMQP, the management API and Prometheus on the lab address; Erlang's distribution and epmd on loopback only
    assert public == {(BROKER_NODE, "5672"), (BROKER_NODE, "15672"), (BROKER_NODE, "15692")}, sockets
    assert {("127.0.0.1", "25672"), ("127.0.0.1", "4369")} <= listening, sockets
    secrets = yaml.safe_load((ROOT / ".lab" / "local" / "secrets.yml").read_text())
    assert api("whoami", "chaoslab", secrets["lab_rabbitmq_password"]) == 200
    assert api("whoami", "guest", "guest") == 401
    assert api("whoami", "chaoslab", "guest") == 401
    with socket.create_connection((BROKER_NODE, 5672), timeout=5) as sock:  # AMQP answers on the lab address
        sock.sendall(b"AMQP\x00\x00\x09\x01")
        assert sock.recv(8)[:1] == b"\x01"  # connection.start


def test_prometheus_scrapes_rabbitmq(rabbit_lab):
    query = urllib.parse.urlencode({"query": 'up{job="rabbitmq"}'})
    for _ in range(30):  # a scrape interval or two after Prometheus took the new target
        with urllib.request.urlopen(f"http://198.18.0.20:9090/api/v1/query?{query}", timeout=10) as response:
            result = json.loads(response.read())["data"]["result"]
        if result and result[0]["value"][1] == "1":
            break
        time.sleep(1)
    assert result and result[0]["metric"]["node"] == "redis" and result[0]["value"][1] == "1", result


def kill_scenario(tmp_path: Path) -> Path:
    """worker-1's main process SIGKILLed every 5 s for 12 s under 12 tasks a second, late acknowledgement."""
    path = tmp_path / "rabbit-kill.yml"
    path.write_text(yaml.safe_dump({
        "name": "rabbit-kill",
        "celery": {"task_acks_late": True, "task_reject_on_worker_lost": True, "worker_prefetch_multiplier": 4},
        "load": {"rate": 12, "seed": 7, "mix": [{"kind": "sleep", "weight": 1, "args": {"ms": 400}}]},
        "phases": [{"name": "baseline", "duration": "5s"},
                   {"name": "fault", "duration": "12s", "fault": {"playbook": "worker-kill", "target": "workers[0]",
                                                                   "params": {"mode": "main", "every": "5s"}}},
                   {"name": "recovery", "duration": "4s"}, {"name": "drain", "duration": "40s"}],
        "hypothesis": {"lost": 0, "pending": 0}}))
    return path


def test_a_killed_workers_late_acked_tasks_come_back_at_once_and_none_is_lost(rabbit_lab, tmp_path):
    proc, run_dir = run_scenario(kill_scenario(tmp_path), tmp_path / "results")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    summary = assert_verdicts_hold_up({}, run_dir)
    assert summary["classes"]["lost"] == 0 and summary["classes"]["pending"] == 0
    assert summary["delivery"]["redelivered"] >= 1
    assert summary["snapshot"]["broker"] == "rabbitmq"
    records = list(read_records(sorted((run_dir / "ledgers").glob("*.jsonl"))))
    ran_on = {r["node"] for r in records if r["type"] == "end" and r.get("outcome") == "success"}
    assert ran_on == {"worker-1", "worker-2"}, ran_on
    # each redelivered task ran again within seconds of the execution the kill cut short, on the other worker: no
    # visibility timeout to wait for (on Redis the killed worker's messages wait for it: an hour by default)
    with (run_dir / "executions.csv").open(newline="", encoding="utf-8") as handle:
        executions = sorted(csv.DictReader(handle), key=lambda row: float(row["start"]))
    by_task: dict[str, list[dict[str, str]]] = {}
    for row in executions:
        by_task.setdefault(row["id"], []).append(row)
    again = {task: rows for task, rows in by_task.items() if len(rows) > 1}
    assert again and len(again) == summary["duplicated"], (len(again), summary["classes"])
    for rows in again.values():
        first, second = rows[0], rows[1]
        assert first["node"] == "worker-1" and first["outcome"] == "" and second["redelivered"] == "True", rows
        assert float(second["start"]) - float(first["start"]) < 5.0, rows
    with (run_dir / "tasks.csv").open(newline="", encoding="utf-8") as handle:
        classes = {row["class"] for row in csv.DictReader(handle)}
    assert classes <= {"completed", "duplicated_completed"}, classes


def test_the_dashboards_broker_panels_answer_on_rabbitmq(rabbit_lab):
    """Every broker panel's RabbitMQ query (queue depth and unacked, publish, deliver and ack rates, connections)
    returns data from the lab's Prometheus over the last minutes (the module's runs and the background load); a Redis
    lab answers the same panels' Redis queries (tests/lab/test_monitoring.py)."""
    end = time.time()
    queries = [(title, expr) for title, expr in panel_queries(build(), "worker-1", "rabbitmq") if "rabbitmq_" in expr]
    assert len(queries) == 6, queries
    empty = [f"{title}: {expr}" for title, expr in queries
             if not any(series["values"] for series in prometheus("/api/v1/query_range", query=expr, start=end - 120,
                                                                 end=end, step=5)["result"])]
    assert not empty, "broker panels without data on RabbitMQ:\n" + "\n".join(empty)


RABBITMQ_LOG = Path("/var/log/chaoslab/nodes/redis/rabbitmq.log")


def test_a_broker_restart_is_measured_on_rabbitmq_as_the_downtime_a_client_saw(rabbit_lab):
    logged = RABBITMQ_LOG.stat().st_size
    effect = inject("broker-restart", "redis", "mode=kill", "down_for=3s", "duration=4s")
    with RABBITMQ_LOG.open(encoding="utf-8", errors="replace") as handle:
        handle.seek(logged)
        since = handle.read()
    # killed, Erlang VM and all: it never shut down (its script would pass a SIGTERM on to it), and its one restart
    # found the old node gone
    assert "SIGTERM received" not in since and "BOOT FAILED" not in since, since[-3000:]
    assert since.count("Server startup complete") == 1, since[-3000:]
    assert effect["measured"]["restarted"] is True and effect["measured"]["answering"] is True, effect
    # down for 3 s, then RabbitMQ boots (about 10 s on the lab's 1-CPU broker node) before it accepts a connection
    assert 2.7 <= effect["measured"]["down_seen_s"] <= 40.0 and effect["effective"] is True, effect
    assert "AMQP connections" in effect["how"]
    assert wait_until(lambda: is_baseline(node_state()) == [], 30)


def restart_scenario(tmp_path: Path, celery: dict | None = None, matrix: dict | None = None) -> Path:
    """6 one-second tasks a second on 2 workers x 2 processes (4 a second): a backlog builds, then RabbitMQ is
    SIGKILLed and kept down 3 s; early acknowledgement, one message prefetched per process (and *celery*'s settings,
    *matrix*'s cells). The drain works the backlog off (what a worker holds unacknowledged cannot be read from
    RabbitMQ, so the verdicts are checked against an empty broker)."""
    path = tmp_path / "rabbit-restart.yml"
    path.write_text(yaml.safe_dump({
        "name": "rabbit-restart",
        "celery": {"task_acks_late": False, "worker_prefetch_multiplier": 1, **(celery or {})},
        "load": {"rate": 6, "seed": 11, "mix": [{"kind": "sleep", "weight": 1, "args": {"ms": 1000}}]},
        "phases": [{"name": "baseline", "duration": "8s"},
                   {"name": "fault", "duration": "12s", "fault": {"playbook": "broker-restart", "target": "redis",
                                                                   "params": {"mode": "kill", "down_for": "3s"}}},
                   {"name": "recovery", "duration": "4s"}, {"name": "drain", "duration": "60s"}],
        "hypothesis": {}, **({"matrix": matrix} if matrix else {})}))
    return path


def backlog_at_the_kill(run_dir: Path) -> tuple[dict, int, list[str]]:
    """A broker-kill run's summary (its verdicts checked against its records), how many tasks it had confirmed and
    not finished when RabbitMQ was killed, and which of those are lost."""
    summary = assert_verdicts_hold_up({}, run_dir)
    detail = json.loads((run_dir / "run.json").read_text())["faults"][0]["nodes"][0]["detail"]
    assert detail["service"] == "rabbitmq" and detail["mode"] == "kill", detail
    assert summary["faults"][0]["effect"]["effective"], summary["faults"][0]["effect"]
    assert summary["snapshot"]["broker_started"] is not None  # the checker saw the restart
    records = list(read_records(sorted((run_dir / "ledgers").glob("*.jsonl"))))
    before_kill = {r["id"] for r in records if r["type"] == "publish" and r["outcome"] == "ok"
                   and r["t"] < detail["down_at"]}
    with (run_dir / "tasks.csv").open(newline="", encoding="utf-8") as handle:
        classes = {row["id"]: row["class"] for row in csv.DictReader(handle)}
    backlog = len(before_kill) - sum(r["type"] == "end" and r["id"] in before_kill and r["t"] < detail["down_at"]
                                     for r in records)
    return summary, backlog, sorted(task for task in before_kill if classes[task] == "lost")


def test_a_rabbitmq_kill_keeps_the_confirmed_backlog_of_its_durable_queue(rabbit_lab, tmp_path):
    """What Redis without persistence loses at a kill (tests/lab/test_fault_experiments.py), RabbitMQ keeps: every
    message it confirmed before the kill was on disk (durable queue, persistent messages), so none is lost."""
    proc, run_dir = run_scenario(restart_scenario(tmp_path), tmp_path / "results")
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-2000:]
    summary, backlog, lost = backlog_at_the_kill(run_dir)
    assert backlog >= 10, backlog  # a backlog was there to lose
    assert not lost, (len(lost), summary["causes"])
    assert json.loads((run_dir / "snapshot.json").read_text())["queue_types"]["celery"] == "classic durable"


def test_a_kill_drops_transient_messages_from_a_classic_queue_and_a_quorum_queue_keeps_them(rabbit_lab, tmp_path):
    """The same kill with transient messages (task_default_delivery_mode), once in the classic queue and once in a
    quorum queue (the workers' task_default_queue_type: the lab replaces the queue of the other type before the
    cell): the classic queue's backlog dies with the broker (lost, the broker's data loss), the quorum queue
    stores every message on disk whatever its delivery mode and loses none."""
    path = restart_scenario(tmp_path, {"task_default_delivery_mode": "transient"},
                            {"task_default_queue_type": ["classic", "quorum"]})
    proc, run = run_scenario(path, tmp_path / "results")
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-2000:]
    found = {}
    for kind in ("classic", "quorum"):
        cell = run / "cells" / f"task_default_queue_type={kind}"
        summary, backlog, lost = backlog_at_the_kill(cell)
        assert backlog >= 10, (kind, backlog)
        types = json.loads((cell / "snapshot.json").read_text())["queue_types"]
        assert types["celery"] == f"{kind} durable", types
        # with quorum queues Celery delays ETA tasks in quorum queues of its own (native delayed delivery)
        assert kind == "classic" or {types[f"celery_delayed_{level}"] for level in range(28)} == {"quorum durable"}
        found[kind] = (summary, lost)
    summary, lost = found["classic"]
    assert len(lost) >= 5, summary["causes"]
    assert set(summary["causes"]["lost"]) <= {"broker_data_loss", "prefetched_broker_data_loss", "killed_running"}
    assert summary["causes"]["lost"].get("broker_data_loss", 0) >= 5, summary["causes"]
    summary, lost = found["quorum"]
    assert not lost, (len(lost), summary["causes"])


def test_a_memory_alarm_blocks_publishers_then_heals_and_loses_nothing(rabbit_lab, tmp_path):
    """RabbitMQ's memory alarm for 6 s under load: the load generator's publishes time out while it lasts (RabbitMQ
    blocks publishing connections) and succeed again after it; no task is lost."""
    path = tmp_path / "rabbit-alarm.yml"
    path.write_text(yaml.safe_dump({
        "name": "rabbit-alarm", "celery": {"task_acks_late": False},
        "load": {"rate": 10, "seed": 3, "publish_timeout": "1s",
                 "mix": [{"kind": "sleep", "weight": 1, "args": {"ms": 50}}]},
        "phases": [{"name": "baseline", "duration": "4s"},
                   {"name": "fault", "duration": "6s", "fault": {"playbook": "rabbitmq-alarm", "target": "redis",
                                                                  "params": {"alarm": "memory"}}},
                   {"name": "recovery", "duration": "6s"}, {"name": "drain", "duration": "20s"}],
        "hypothesis": {"lost": 0}}))
    proc, run_dir = run_scenario(path, tmp_path / "results")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    summary = assert_verdicts_hold_up({}, run_dir)
    effect = summary["faults"][0]["effect"]
    assert effect["effective"] and effect["measured"]["raised"] >= 1, effect
    window = json.loads((run_dir / "run.json").read_text())["faults"][0]
    publishes = [r for r in read_records(sorted((run_dir / "ledgers").glob("*.jsonl"))) if r["type"] == "publish"]
    # well inside the window: the alarm is raised and lifted by rabbitmqctl, and a batch waits up to 1 s for confirms
    during = [r for r in publishes if window["start"] + 2 <= r["scheduled"] <= window["end"] - 2.5]
    after = [r for r in publishes if r["scheduled"] >= window["end"] + 3]
    assert during and all(r["outcome"] == "timeout" for r in during), {r["outcome"] for r in during}
    assert after and all(r["outcome"] == "ok" for r in after), {r["outcome"] for r in after}
    assert summary["classes"]["lost"] == 0 and summary["classes"]["publish_failed"] >= len(during) // 2


def test_a_broker_axis_runs_each_cell_on_its_broker_and_gives_the_lab_its_own_back(rabbit_lab, tmp_path):
    """matrix: {broker: [rabbitmq, redis]} on the RabbitMQ lab: the first cell runs on it, the runner provisions the
    lab with Redis for the second (the workers consume from Redis: every task completes), then gives the lab RabbitMQ
    back (its kept broker, its workers consuming from it again)."""
    path = tmp_path / "axis.yml"
    path.write_text(yaml.safe_dump({
        "name": "axis", "celery": {"task_acks_late": True},
        "load": {"rate": 10, "seed": 5, "mix": [{"kind": "noop", "weight": 1}]},
        "phases": [{"name": "baseline", "duration": "4s"}, {"name": "drain", "duration": "30s"}],
        "matrix": {"broker": ["rabbitmq", "redis"]}, "hypothesis": {"lost": 0, "pending": 0}}))
    proc, run = run_scenario(path, tmp_path / "results")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    for broker in ("rabbitmq", "redis"):
        cell = run / "cells" / f"broker={broker}"
        assert json.loads((cell / "snapshot.json").read_text())["broker"] == broker
        summary = json.loads((cell / "summary.json").read_text())
        assert summary["tasks"] >= 30 and summary["classes"]["completed"] == summary["tasks"], summary["classes"]
    assert (ROOT / ".lab" / "local" / "broker").read_text().strip() == "rabbitmq"
    info = lab_info()
    assert info.broker == "rabbitmq"
    control = client_app(info, "chaoslab-test").control  # the workers answer over RabbitMQ again
    assert wait_until(lambda: len(control.ping(timeout=2.0)) == len(info.workers), 30)


def rabbit_env(key: str) -> str:
    """What the broker node's RabbitMQ has for one of its application settings (rabbitmqctl eval)."""
    return subprocess.run(["ip", "netns", "exec", "chaoslab-redis", "/etc/chaoslab/nodes/redis/rabbitmqctl", "-q",
                           "eval", f"application:get_env(rabbit, {key})."], capture_output=True, text=True,
                          timeout=60, check=True).stdout.strip()


def queue_empty() -> bool:
    """Whether RabbitMQ's task queues hold no message, ready or unacknowledged (as its management API counts)."""
    return not any(queue.get("messages_ready") or queue.get("messages_unacknowledged")
                   for queue in rabbitmq_queues(lab_info()))


def test_a_consumer_timeout_below_a_late_acked_tasks_length_runs_it_over_and_over(rabbit_lab, tmp_path):
    """A run's rabbitmq: settings (consumer timeout 4 s, checked every 500 ms) against 6 s late-acknowledged tasks:
    RabbitMQ closes the worker's channel before the task ends, Celery stops the worker for it (celery#6760), the
    supervisor starts it again and RabbitMQ hands the message out again; every execution succeeds and none is
    acknowledged, so the checker leaves them pending (completed_unacked). The lab's settings come back after."""
    before = {key: rabbit_env(key) for key in ("consumer_timeout", "channel_tick_interval")}
    assert before == {"consumer_timeout": "{ok,1800000}", "channel_tick_interval": "{ok,60000}"}  # RabbitMQ's own
    path = tmp_path / "consumer-timeout.yml"
    path.write_text(yaml.safe_dump({
        "name": "consumer-timeout", "broker": "rabbitmq",
        "rabbitmq": {"consumer_timeout": 4000, "channel_tick_interval": 500},
        "celery": {"task_acks_late": True, "worker_prefetch_multiplier": 1},
        "load": {"rate": 0.5, "seed": 5, "mix": [{"kind": "sleep", "weight": 1, "args": {"ms": 6000}}]},
        "phases": [{"name": "baseline", "duration": "6s"}, {"name": "drain", "duration": "25s"}],
        "hypothesis": {"lost": 0, "failed": 0, "pending": ">= 1"}}))
    proc, run_dir = run_scenario(path, tmp_path / "results")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    # The run put the lab's 30 min timeout back (a restart of RabbitMQ) and the workers took the messages again:
    # the check below can name only ready messages, so it waits until those executions have ended and been
    # acknowledged: the queue empty, and still empty a statistics interval (5 s) of the management API later.
    assert wait_until(lambda: queue_empty() and (time.sleep(6) or queue_empty()), 240, 1), rabbitmq_queues(lab_info())
    summary = assert_verdicts_hold_up({}, run_dir)
    assert summary["causes"]["pending"].get("completed_unacked", 0) >= 1, summary["causes"]
    with (run_dir / "executions.csv").open(newline="", encoding="utf-8") as handle:
        executions = list(csv.DictReader(handle))
    by_task: dict[str, list[dict[str, str]]] = {}
    for row in sorted(executions, key=lambda row: float(row["start"])):
        by_task.setdefault(row["id"], []).append(row)
    again = [rows for rows in by_task.values() if sum(row["outcome"] == "success" for row in rows) >= 2]
    assert again, executions
    for rows in again:  # each execution that ended ran its whole 6 s to success (the last may still have been
        # running when the run ended); every one after the first was a redelivery
        assert {row["outcome"] for row in rows[:-1]} == {"success"} and rows[-1]["outcome"] in ("success", ""), rows
        assert all(row["redelivered"] == "True" for row in rows[1:]), rows
    assert summary["delivery"]["guarantee"] == "at-least-once", summary["delivery"]
    assert {key: rabbit_env(key) for key in before} == before  # the inventory's RabbitMQ again
