"""Faults fired by the task state: the condition's grammar (chaoslab.triggers), its checks in a fault's parameters
and a scenario, the node's watch of a real ledger file (chaoslab.node.fault_trigger) and the checker's rows."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from chaoslab.analysis import checker
from chaoslab.experiment.scenario import ScenarioError, check_triggers, load_scenario, to_yaml
from chaoslab.fault_params import check, request
from chaoslab.node import fault_trigger
from chaoslab.node.fault_record import Fault, FaultRecord, Stop, run_fault
from chaoslab.node.worker_ledger import process_start
from chaoslab.triggers import Trigger, parse
from tests.conftest import ROOT


@pytest.mark.parametrize(("text", "parsed", "canonical"), [
    ("running>=2", Trigger("running", count=2), "running>=2"),
    (" running >= 2 ", Trigger("running", count=2), "running>=2"),
    ("reserved>=1", Trigger("reserved", count=1), "reserved>=1"),
    ("started=io", Trigger("started", kind="io"), "started=io"),
    ("started = myapp.tasks.charge", Trigger("started", kind="myapp.tasks.charge"), "started=myapp.tasks.charge"),
    ("unacked>=50", Trigger("unacked", count=50), "unacked>=50"),
])
def test_a_condition_parses_to_its_canonical_form(text, parsed, canonical):
    assert parse(text) == parsed
    assert str(parsed) == canonical
    assert parse(canonical) == parsed


@pytest.mark.parametrize(("text", "message"), [
    ("running>2", "is not a condition"),
    ("running=2", "running takes a count"),
    ("running>=two", "running takes a count"),
    ("running>=0", "within 1-10000"),
    ("started>=2", "started takes a task kind"),
    ("started=", "is not a condition"),
    ("started=$(reboot)", "is not a condition"),
    ("idle>=1", "unknown condition idle (known: reserved, running, started, unacked)"),
    ("running>=2; rm -rf /", "is not a condition"),
    (5, "is not a condition"),
])
def test_a_bad_condition_is_refused_in_one_line(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("$", r"\$")) as err:
        parse(text)
    assert "\n" not in str(err.value)


def test_every_fault_takes_a_trigger_with_a_duration_and_passes_it_on_canonical():
    assert check("worker-kill", {"trigger": "running >= 2", "duration": "30s"})["trigger"] == Trigger("running", 2)
    assert check("worker-kill", {})["trigger"] is None
    with pytest.raises(ValueError, match="worker-kill: trigger needs a duration, which counts from arming"):
        check("worker-kill", {"trigger": "running>=2"})
    with pytest.raises(ValueError, match="network-delay: trigger: 'nosuch>=1': unknown condition nosuch"):
        check("network-delay", {"delay": "10ms", "trigger": "nosuch>=1", "duration": "5s"})
    extra = request("worker-kill", "worker-1", {"trigger": " running >= 2", "duration": "30s"},
                    {"workers": ["worker-1"], "all": ["worker-1"]})
    assert extra["trigger"] == "running>=2"  # the user's text never reaches the playbook


BASE: dict[str, Any] = {
    "name": "kill-when-busy",
    "load": {"rate": 5, "mix": [{"kind": "sleep", "weight": 1}, {"kind": "cpu", "weight": 1}]},
    "phases": [{"name": "baseline", "duration": "5s"},
               {"name": "fault", "duration": "20s",
                "fault": {"playbook": "worker-kill", "target": "worker-1", "params": {"mode": "main"},
                          "trigger": "running>=2"}},
               {"name": "drain", "duration": "10s"}],
    "hypothesis": {"lost": 0},
}
GROUPS = {"workers": ["worker-1", "worker-2"], "redis": ["redis"], "monitor": ["monitor"],
          "all": ["redis", "worker-1", "worker-2", "monitor"]}


def scenario(tmp_path: Path, fault: dict[str, Any] | None = None):
    data = json.loads(json.dumps(BASE))
    if fault is not None:
        data["phases"][1]["fault"] = fault
    path = tmp_path / "trigger.yml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_scenario(path, ROOT)


def test_a_scenario_arms_a_fault_with_a_trigger_that_loads_back(tmp_path):
    loaded = scenario(tmp_path)
    assert loaded.phases[1].faults[0].params == {"mode": "main", "trigger": "running>=2"}
    check_triggers(loaded, GROUPS, "redis")
    again = tmp_path / "again.yml"
    again.write_text(to_yaml(loaded), encoding="utf-8")
    assert load_scenario(again, ROOT).phases == loaded.phases


@pytest.mark.parametrize(("fault", "message"), [
    ({"playbook": "worker-kill", "target": "worker-1", "trigger": "started=nosuch"},
     "phases[1].faults[0].trigger: started=nosuch: the load publishes no task of that kind (its kinds: "),
    ({"playbook": "worker-kill", "target": "worker-1", "trigger": "running>2"},
     "phases[1].fault.params.trigger: 'running>2' is not a condition"),
    ({"playbook": "worker-kill", "target": "worker-1", "trigger": "running>=2", "params": {"trigger": "running>=3"}},
     "phases[1].fault.trigger: give trigger once"),
])
def test_a_bad_trigger_in_a_scenario_is_refused_when_it_is_read(tmp_path, fault, message):
    with pytest.raises(ScenarioError) as err:
        scenario(tmp_path, fault)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("fault", "broker", "message"), [
    ({"playbook": "worker-kill", "target": "worker-9", "trigger": "running>=2"}, "redis",
     "target: 'worker-9' matches no node of the inventory"),
    ({"playbook": "redis-restart", "target": "redis", "trigger": "running>=2"}, "redis",
     "running>=2 reads a worker's task ledger: redis runs no worker"),
    ({"playbook": "worker-kill", "target": "worker-1", "trigger": "unacked>=5"}, "rabbitmq",
     "unacked>=5 reads Redis's unacknowledged set: the run's broker is rabbitmq"),
])
def test_a_trigger_the_lab_cannot_read_is_refused_before_the_run(tmp_path, fault, broker, message):
    with pytest.raises(ScenarioError) as err:
        check_triggers(scenario(tmp_path, fault), GROUPS, broker)
    assert message in str(err.value) and "\n" not in str(err.value)


def record(event: str, task: str, pid: int, **extra: Any) -> dict[str, Any]:
    return {"type": event, "id": task, "node": "worker-1", "pid": pid, "ps": process_start(pid), "t": time.time(),
            **extra}


def append(path: Path, *records: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as file:
        for found in records:
            file.write(json.dumps(found) + "\n")


@pytest.fixture
def sleeper():
    """A real process that stands for a pool child, killed to stand for a child that died."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_the_task_state_counts_only_what_live_processes_hold(tmp_path, sleeper):
    state = fault_trigger.TaskState()
    me = __import__("os").getpid()
    for found in (record("received", "a", me), record("received", "b", me), record("start", "a", sleeper.pid,
                  kind="io"), record("start", "c", me, kind="cpu"), record("received", "d", me),
                  record("revoked", "d", me)):
        state.add(found)
    assert state.live("running") == ["a", "c"]
    assert state.live("reserved") == ["b"]
    sleeper.kill()
    sleeper.wait()
    assert state.live("running") == ["c"]  # a killed process runs nothing any more
    state.add(record("end", "c", me, kind="cpu"))
    assert state.live("running") == []


def watch_in_thread(trigger: str, path: Path, seconds: float) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}
    wait = fault_trigger.watch(parse(trigger), str(path), "")

    def run() -> None:
        out["fired"] = wait(time.time() + seconds, Stop())
        out["returned"] = time.time()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_the_watch_fires_on_the_record_that_makes_the_condition_hold(tmp_path):
    ledger = tmp_path / "worker-1.jsonl"
    me = __import__("os").getpid()
    append(ledger, record("start", "old", me, kind="io"), record("end", "old", me, kind="io"))
    thread, out = watch_in_thread("running>=2", ledger, 10)
    time.sleep(0.2)
    append(ledger, record("start", "one", me, kind="io"))
    time.sleep(0.2)
    assert thread.is_alive()  # one running: not yet
    second = record("start", "two", me, kind="cpu")
    append(ledger, second)
    thread.join(5)
    fired = out["fired"]
    assert fired["condition"] == "running>=2" and fired["ids"] == ["one", "two"]
    assert fired["at"] == second["t"]
    assert out["returned"] - second["t"] < 0.1  # the lab's target from condition to action


def test_started_fires_only_for_its_kind_and_a_missed_condition_returns_none(tmp_path):
    ledger = tmp_path / "worker-1.jsonl"
    me = __import__("os").getpid()
    append(ledger, record("start", "before", me, kind="io"))  # started before arming: not the instant asked for
    thread, out = watch_in_thread("started=io", ledger, 10)
    time.sleep(0.2)
    append(ledger, record("start", "x", me, kind="cpu"), record("start", "y", me, kind="io"))
    thread.join(5)
    assert out["fired"]["ids"] == ["y"]
    thread, out = watch_in_thread("reserved>=1", ledger, 0.5)
    thread.join(5)
    assert out["fired"] is None


def test_a_worker_condition_on_a_node_without_a_worker_is_refused(tmp_path):
    with pytest.raises(ValueError, match="this node runs no worker with a task ledger"):
        fault_trigger.watch(parse("running>=1"), str(tmp_path / "none.jsonl"), "")
    with pytest.raises(ValueError, match="read from Redis; this lab's broker is rabbitmq"):
        fault_trigger.watch(parse("unacked>=1"), "", "amqp://guest@127.0.0.1//")


def test_the_follower_starts_over_on_a_new_ledger(tmp_path):
    ledger = tmp_path / "l.jsonl"
    append(ledger, {"type": "start", "id": "a"})
    follower = fault_trigger.Follower(ledger)
    assert [found["id"] for found in follower.read()] == ["a"]
    with ledger.open("a", encoding="utf-8") as file:
        file.write('{"type": "start", "id": "b"}\n{"type": "st')  # a record half written
    assert [found["id"] for found in follower.read()] == ["b"]
    with ledger.open("a", encoding="utf-8") as file:
        file.write('art", "id": "c"}\n')
    assert [found["id"] for found in follower.read()] == ["c"]
    ledger.unlink()
    append(ledger, {"type": "start", "id": "d"})
    assert [found["id"] for found in follower.read()] == ["d"] and follower.reset


def events_until(events: Path, last: str) -> list[dict[str, Any]]:
    """The event ledger once the detached agent wrote *last* (or after 10 s)."""
    deadline = time.time() + 10
    found: list[dict[str, Any]] = []
    while time.time() < deadline and not any(item["event"] == last for item in found):
        time.sleep(0.1)
        found = [json.loads(line) for line in events.read_text().splitlines()] if events.exists() else []
    return found


def test_an_armed_fault_applies_on_its_condition_and_records_the_delay(tmp_path):
    """The agent's detached child arms, waits on the real ledger, applies, records triggered and reverts."""
    ledger, events = tmp_path / "worker-1.jsonl", tmp_path / "events.jsonl"
    me = __import__("os").getpid()
    applied: list[float] = []
    fault = Fault("worker-pause", {}, lambda: applied.append(time.time()) or {"n": 1}, lambda _detail: None)
    append(ledger, record("received", "z", me))
    fault.armed, fault.trigger = fault_trigger.watch(parse("started=io"), str(ledger), ""), "started=io"
    record_file = FaultRecord("worker-pause", "worker-1", str(tmp_path / "state"), "", str(events))
    reported = run_fault(record_file, fault, 3.0)
    assert reported["start"] is None and reported["armed"] <= time.time()
    time.sleep(0.3)
    started = record("start", "z", me, kind="io")
    append(ledger, started)
    found = events_until(events, "reverted")
    assert [item["event"] for item in found] == ["applied", "triggered", "reverted"]
    triggered = found[1]
    assert triggered["ids"] == ["z"] and triggered["at"] == started["t"]
    assert 0 <= triggered["delay"] < 0.1 and triggered["in_force"] == found[0]["t"]
    rows = checker.trigger_rows([{**triggered}], [])
    assert rows[0]["fired"] and rows[0]["window"] == {"z": {"cls": "unknown", "cause": None}}


def test_an_armed_fault_whose_condition_never_holds_leaves_the_node_alone(tmp_path):
    ledger, events = tmp_path / "worker-1.jsonl", tmp_path / "events.jsonl"
    ledger.write_text("")
    fault = Fault("worker-pause", {}, lambda: pytest.fail("applied without its condition"), lambda _detail: None)
    fault.armed, fault.trigger = fault_trigger.watch(parse("running>=1"), str(ledger), ""), "running>=1"
    run_fault(FaultRecord("worker-pause", "worker-1", str(tmp_path / "state"), "", str(events)), fault, 0.5)
    found = events_until(events, "untriggered")
    assert [(item["event"], item["condition"], item["by"]) for item in found] == [
        ("untriggered", "running>=1", "deadline")]
    assert checker.untriggered(checker.trigger_rows(found, [])) == [
        "worker-pause on worker-1: its trigger running>=1 never held (armed until its deadline)"]
