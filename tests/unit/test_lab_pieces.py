"""Unit tests for the pure pieces of the local lab: filters, callback messages, connection commands, inventory."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest

from chaoslab.node import burst
from chaoslab.node.burst import Outcome, problems, tally
from chaoslab.node.celery_conf import celery_conf
from tests.conftest import ROOT, inventory, load_plugin

filters = load_plugin("plugins/filter/chaoslab.py")
callback = load_plugin("plugins/callback/chaoslab.py")
netns = load_plugin("plugins/connection/netns.py")


@pytest.mark.parametrize(
    ("address", "subnet", "inside"),
    [
        ("198.18.0.10", "198.18.0.0/24", True),
        ("198.18.0.254", "198.18.0.0/24", True),
        ("198.18.0.0", "198.18.0.0/24", False),  # network address
        ("198.18.0.255", "198.18.0.0/24", False),  # broadcast
        ("198.18.1.10", "198.18.0.0/24", False),
        ("192.0.2.10", "198.18.0.0/24", False),
        ("not-an-address", "198.18.0.0/24", False),
        ("198.18.0.10", "garbage", False),
    ],
)
def test_in_subnet(address, subnet, inside):
    assert filters.in_subnet(address, subnet) is inside


def test_lab_node_specs_picks_each_nodes_variables():
    hostvars = {"redis": {"lab_netns": "chaoslab-redis", "lab_nic": "lab0", "lab_address": "198.18.0.10",
                          "lab_host_veth": "clv-redis", "other": 1}}
    assert filters.lab_node_specs(hostvars, ["redis"]) == [
        {"name": "redis", "netns": "chaoslab-redis", "nic": "lab0", "address": "198.18.0.10", "host_veth": "clv-redis"}
    ]


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ({"argument_errors": ["value of worker_pool must be one of: prefork, threads, solo, got: gevent found\n"
                              "    in celery_worker_settings"]},
         "value of worker_pool must be one of: prefork, threads, solo, got: gevent found in celery_worker_settings"),
        ({"argument_errors": ["celery_worker_settings.task_acks_lat. Supported parameters include: a, b."]},
         "celery_worker_settings: unknown parameter task_acks_lat (allowed: a, b)"),
        ({"msg": "worker count must be 1 to 32,\n got 0"}, "worker count must be 1 to 32, got 0"),
        ({"msg": "Task failed: 'x' is undefined"}, "'x' is undefined"),
        ({"stderr": "line one\nthe last line\n"}, "the last line"),
        ({}, "failed (run with -vv for details)"),
    ],
)
def test_failures_are_reported_in_one_line(result, message):
    line = callback.failure_message(result)
    assert line == message
    assert "\n" not in line


def test_cgroup_procs_files_v1_and_v2(tmp_path):
    for controller in ("memory", "cpu", "pids"):
        (tmp_path / controller).mkdir()
    assert netns.cgroup_procs_files("chaoslab/worker-1", str(tmp_path)) == [
        str(tmp_path / c / "chaoslab/worker-1/cgroup.procs") for c in ("memory", "cpu", "pids")
    ]
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    assert netns.cgroup_procs_files("chaoslab/worker-1", str(tmp_path)) == [
        str(tmp_path / "chaoslab/worker-1/cgroup.procs")
    ]


def test_node_command_joins_cgroups_before_entering_the_namespace(tmp_path):
    procs = [tmp_path / "a.procs", tmp_path / "b procs"]
    command = netns.node_command("chaoslab-x", [str(p) for p in procs], "echo 'hi there'")
    # Run the join part for real with a harmless stand-in for `ip netns exec`.
    join, _sep, rest = command.partition(" exec ip netns exec ")
    out = subprocess.run(["/bin/sh", "-c", join + " echo $$"], capture_output=True, text=True, check=True).stdout
    assert procs[0].read_text().strip() == out.strip() == procs[1].read_text().strip()
    assert rest == "chaoslab-x /bin/sh -c 'echo '\"'\"'hi there'\"'\"''"


def test_celery_conf_maps_lab_settings_and_rejects_unknown_names():
    conf = celery_conf({"task_acks_late": True, "visibility_timeout": 30, "socket_timeout": 5,
                        "task_time_limit": None, "worker_max_tasks_per_child": 10})
    assert conf["task_acks_late"] is True and conf["worker_max_tasks_per_child"] == 10
    assert "task_time_limit" not in conf
    assert conf["broker_transport_options"] == {"visibility_timeout": 30, "socket_timeout": 5}
    assert conf["result_backend_transport_options"] == {"socket_timeout": 5}
    with pytest.raises(ValueError, match="unknown Celery setting"):
        celery_conf({"task_acks_lat": True})
    with pytest.raises(ValueError, match="the lab sets it"):
        celery_conf({"broker_url": "redis://198.18.0.9/0"})


def test_transport_options_given_whole_win_over_the_lab_defaults():
    """The role's defaults hold visibility_timeout: a scenario's broker_transport_options overrides it."""
    conf = celery_conf({"visibility_timeout": 3600, "socket_timeout": 10,
                        "broker_transport_options": {"visibility_timeout": 30, "polling_interval": 0.5}})
    assert conf["broker_transport_options"] == {"visibility_timeout": 30, "socket_timeout": 10,
                                                "polling_interval": 0.5}
    assert conf["result_backend_transport_options"] == {"socket_timeout": 10, "polling_interval": 0.5}
    assert "visibility_timeout" not in conf


def test_burst_tally_and_problems():
    outcomes = [Outcome("noop", "worker-1", True), Outcome("noop", "worker-2", True),
                Outcome("cpu", "worker-1", True), Outcome("cpu", "?", False, "TimeoutError")]
    table = tally(outcomes)
    assert table["noop"] == Counter({"worker-1": 1, "worker-2": 1})
    found = problems(table, min_nodes=2)
    assert "cpu: 1 failed" in found
    assert "cpu: ran on 1 worker node(s), expected at least 2" in found
    assert "sleep: ran on 0 worker node(s), expected at least 2" in found
    assert not [line for line in found if line.startswith("noop")]


def test_a_burst_publishes_again_only_the_kinds_that_kept_to_one_node(monkeypatch):
    published: list[list[str]] = []
    draws = iter(["worker-2", "worker-2", "worker-1", "worker-2"])  # round 1: noop all on worker-2

    def publish(per_kind, kinds=None):
        kinds = kinds or list(burst.KINDS)
        published.append(kinds)
        return [(kind, next(draws) if kind == "noop" else f"worker-{n % 2 + 1}") for n in range(per_kind)
                for kind in kinds]

    monkeypatch.setattr(burst, "publish", publish)
    monkeypatch.setattr(burst, "collect", lambda sent, _timeout: [Outcome(kind, node, True) for kind, node in sent])
    table, rounds = burst.run(2, 10, min_nodes=2)
    assert rounds == 2 and published[1] == ["noop"]
    assert table["noop"] == Counter({"worker-2": 3, "worker-1": 1}) and not problems(table, 2)
    published.clear()
    draws = iter(["worker-2"] * 10)
    table, rounds = burst.run(2, 10, min_nodes=2, rounds=3)
    assert rounds == 3 and published[1:] == [["noop"], ["noop"]]
    assert problems(table, 2) == ["noop: ran on 1 worker node(s), expected at least 2"]


@pytest.mark.parametrize("workers", [1, 2, 8, 32])
def test_inventory_builds_groups_from_the_worker_count(workers):
    data = inventory({"LAB_WORKERS": str(workers)})
    assert data["workers"]["hosts"] == [f"worker-{i}" for i in range(1, workers + 1)]
    assert data["redis"]["hosts"] == ["redis"] and data["monitor"]["hosts"] == ["monitor"]
    hostvars = data["_meta"]["hostvars"]
    assert hostvars[f"worker-{workers}"]["lab_address"] == f"198.18.0.{100 + workers}"
    assert hostvars["redis"]["lab_netns"] == "chaoslab-redis"
    assert hostvars["monitor"]["lab_venv"] == str(Path(ROOT) / ".venv")


def test_inventory_rejects_a_worker_count_that_is_not_a_number():
    with pytest.raises(subprocess.CalledProcessError) as err:
        inventory({"LAB_WORKERS": "many"})
    assert "LAB_WORKERS: 'many' is not a whole number of workers" in err.value.stderr


def test_hold_until_lasts_its_time_when_the_wall_clock_jumps_meanwhile(monkeypatch):
    """A clock-skew fault steps the wall clock: the hold counts the time left on the raw clock."""
    import time

    from chaoslab.node import fault_record

    wall, calls = time.time, []

    def jumped() -> float:  # 30 s ahead once the hold has begun
        calls.append(1)
        return wall() + (30.0 if len(calls) > 1 else 0.0)

    start = time.monotonic()
    deadline = wall() + 0.5
    monkeypatch.setattr(fault_record.time, "time", jumped)
    try:
        fault_record.hold_until(deadline, fault_record.Stop())
    finally:
        monkeypatch.undo()
    assert 0.45 <= time.monotonic() - start <= 0.8


def test_hold_until_repeats_the_action_until_the_deadline():
    import time

    from chaoslab.node.fault_record import Stop, hold_until

    calls = []
    start = time.time()
    hold_until(start + 1.0, Stop(), 0.3, lambda: calls.append(time.time() - start))
    assert 0.95 <= time.time() - start <= 1.3
    assert len(calls) == 3 and all(0.25 <= t <= 1.0 for t in calls)
    calls.clear()
    hold_until(time.time() + 0.3, Stop(), 0, lambda: calls.append(1))
    assert calls == []
    stop = Stop()
    stop.requested = True
    hold_until(None, stop)  # stopped: returns at once, even without a deadline
