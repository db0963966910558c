"""Fault parameters: units, limits and one-line errors; the role, its specs and the playbooks kept in sync;
the NFQUEUE delay engine's samples and release order; the agent's refusals; the fault records."""

from __future__ import annotations

import ast
import json
import os
import random
import re
import statistics
import time

import pytest
import yaml
from tools import fault_files

from chaoslab.fault_kinds import CLEAR, KINDS
from chaoslab.fault_params import check, request, user_params
from chaoslab.node import fault_agent
from chaoslab.node.fault_agent import parse_params
from chaoslab.node.fault_record import FaultRecord, process_start
from chaoslab.node.nfqueue_delay import DelayEngine, DelaySampler, Mangling, flip_bit
from chaoslab.units import parse_percent, parse_rate
from tests.conftest import ROOT, load_plugin

filters = load_plugin("plugins/filter/chaoslab.py")

PEERS = ["198.18.0.101", "198.18.0.102"]
RATE_USE = "use bit, kbit, mbit, gbit, kibit, mibit, gibit, bps, kbps, mbps or gbps"
SIZE_USE = "use B, kB, MB, GB, TB, KiB, MiB, GiB or TiB"
DURATION_USE = "use ms, s, m or h"


ALL = {**KINDS, CLEAR.name: CLEAR}
KNOWN = ", ".join(KINDS)


def resolved_names(fault: str) -> list[str]:
    """Every parameter the node's agent takes: the user's, then what the role fills in (NIC, peer addresses)."""
    return [param.name for param in ALL[fault].params] + list(ALL[fault].node_values())


def exact(message: str) -> str:
    """A pattern for pytest.raises(match=...) that matches the whole message and nothing else."""
    return f"^{re.escape(message)}$"


# --- fault_params.check: good values -------------------------------------------------------------------------------

@pytest.mark.parametrize(("fault", "params", "expected"), [
    ("network-delay",
     {"delay": "20ms", "jitter": "5ms", "distribution": "normal", "correlation": "25%", "engine": "nfqueue",
      "duration": "1.5m", "peers": "198.18.0.101, 198.18.0.102,", "nic": "lab0"},
     {"delay": 0.02, "jitter": 0.005, "distribution": "normal", "correlation": 25.0, "engine": "nfqueue",
      "peers": PEERS, "nic": "lab0", "duration": 90.0}),
    ("network-delay", {"delay": "60s", "peers": PEERS, "nic": "lab0"},  # the limit itself is allowed
     {"delay": 60.0, "jitter": 0.0, "distribution": "uniform", "correlation": 0.0, "engine": "auto",
      "peers": PEERS, "nic": "lab0", "duration": 0.0}),
    ("network-loss", {"loss": "20%", "correlation": "0.5", "side": "egress", "peers": PEERS, "nic": "lab0"},
     {"loss": 20.0, "side": "egress", "correlation": 0.5, "duplicate": 0.0, "corrupt": 0.0, "reorder": 0.0,
      "delay": 0.0, "engine": "auto", "peers": PEERS, "nic": "lab0", "duration": 0.0}),
    ("network-loss", {"reorder": "25%", "delay": "10ms", "duplicate": "1", "corrupt": "100%", "peers": PEERS,
                      "nic": "lab0", "duration": "1h"},
     {"loss": 0.0, "side": "ingress", "correlation": 0.0, "duplicate": 1.0, "corrupt": 100.0, "reorder": 25.0,
      "delay": 0.01, "engine": "auto", "peers": PEERS, "nic": "lab0", "duration": 3600.0}),
    ("network-bandwidth", {"rate": "8mbit", "peers": PEERS, "nic": "lab0"},
     {"rate": 8_000_000, "burst": 0, "latency": 0.1, "peers": PEERS, "nic": "lab0", "duration": 0.0}),
    ("network-bandwidth", {"rate": "1mbps", "burst": "32KiB", "latency": "50ms", "peers": PEERS, "nic": "lab0"},
     {"rate": 8_000_000, "burst": 32768, "latency": 0.05, "peers": PEERS, "nic": "lab0", "duration": 0.0}),
    ("network-partition", {"peers": ["198.18.0.10"], "duration": "30s"},
     {"peers": ["198.18.0.10"], "duration": 30.0}),
    ("memory-limit", {"limit": "256MiB"}, {"limit": 268_435_456, "duration": 0.0}),
    ("memory-limit", {"limit": "16MiB", "duration": "250ms"}, {"limit": 16 * 2**20, "duration": 0.25}),
    ("memory-limit", {"limit": "1GB"}, {"limit": 10**9, "duration": 0.0}),
    ("memory-exhaustion", {}, {"bytes": "80%", "workers": 1, "oom": "stressor", "duration": 0.0}),
    ("memory-exhaustion", {"bytes": "512MiB", "workers": "64", "oom": "largest"},
     {"bytes": "512MiB", "workers": 64, "oom": "largest", "duration": 0.0}),
    ("cpu-exhaustion", {}, {"workers": 0, "load": 100, "duration": 0.0}),
    ("cpu-exhaustion", {"workers": "256", "load": 1, "duration": "2m"}, {"workers": 256, "load": 1, "duration": 120.0}),
    ("worker-kill", {}, {"mode": "main", "every": 0.0, "duration": 0.0}),
    ("worker-kill", {"mode": "all", "every": "5s", "duration": "60s"}, {"mode": "all", "every": 5.0, "duration": 60.0}),
    ("worker-kill", {"every": "", "duration": "10s"}, {"mode": "main", "every": 0.0, "duration": 10.0}),
    ("worker-pause", {"duration": "1h"}, {"duration": 3600.0}),  # the limit itself is allowed
    ("redis-restart", {}, {"mode": "graceful", "down_for": 0.0, "duration": 0.0}),
    ("redis-restart", {"mode": "kill", "down_for": "5s"}, {"mode": "kill", "down_for": 5.0, "duration": 0.0}),
    ("broker-restart", {"mode": "kill", "down_for": "3s"}, {"mode": "kill", "down_for": 3.0, "duration": 0.0}),
    ("redis-maxmemory", {"maxmemory": "4MiB"}, {"maxmemory": 4 * 2**20, "policy": "allkeys-lru", "duration": 0.0}),
    ("redis-maxmemory", {"maxmemory": "64MiB", "policy": "noeviction", "duration": "30s"},
     {"maxmemory": 64 * 2**20, "policy": "noeviction", "duration": 30.0}),
    ("clock-skew", {"step": "-2m", "drift": "+5%", "duration": "1m"}, {"step": -120.0, "drift": 5.0,
                                                                        "duration": 60.0}),
    ("clock-skew", {"drift": "-0.5%"}, {"step": 0.0, "drift": -0.5, "duration": 0.0}),
    ("clear", {}, {"only": ""}),
    ("clear", {"only": "network-delay"}, {"only": "network-delay"}),
])
def test_check_normalises_to_base_units_and_fills_defaults(fault, params, expected):
    values = check(fault, params)
    assert values == (expected if fault == "clear" else {**expected, "trigger": None})  # every fault may be armed
    assert list(values) == resolved_names(fault)  # every parameter, nothing else


@pytest.mark.parametrize("fault", sorted(ALL))
def test_check_unresolved_skips_peers_and_nic(fault):
    """Before the role resolves them, peers is an inventory pattern and nic is unknown: neither is checked."""
    needed = {"network-delay": {"delay": "20ms"}, "network-loss": {"loss": "5%"},
              "network-bandwidth": {"rate": "8mbit"}, "memory-limit": {"limit": "256MiB"},
              "redis-maxmemory": {"maxmemory": "4MiB"}, "clock-skew": {"step": "30s"}}.get(fault, {})
    params = {**needed, "peers": "redis:workers"} if ALL[fault].peers is not None else needed
    values = check(fault, params, resolved=False)
    assert set(values) == {param.name for param in ALL[fault].params}
    if ALL[fault].peers is not None:
        with pytest.raises(ValueError, match=exact(f"{fault}: peers: 'redis:workers' is not an IPv4 address")):
            check(fault, params)


def test_user_params_puts_peers_last_and_leaves_nic_out():
    assert user_params("network-delay") == ["delay", "jitter", "distribution", "correlation", "engine", "duration",
                                            "trigger", "peers"]
    assert user_params("network-partition") == ["duration", "trigger", "peers"]
    assert user_params("worker-kill") == ["mode", "every", "duration", "trigger"]
    assert user_params("clear") == ["only"]
    assert all("nic" not in user_params(fault) for fault in ALL)


GROUPS = {"all": ["redis", "worker-1", "worker-2"], "workers": ["worker-1", "worker-2"]}


def test_request_resolves_the_target_and_leaves_a_missing_one_to_the_playbook():
    given = {"delay": "5ms", "duration": "10s"}
    assert "target" not in request("network-delay", None, given, GROUPS)
    assert request("network-delay", "workers:!worker-2", given, GROUPS)["target"] == "worker-1"


@pytest.mark.parametrize("target", ["", " ", "nosuchnode"])
def test_request_refuses_a_target_that_names_no_node(target):
    with pytest.raises(ValueError, match="network-delay: target"):
        request("network-delay", target, {"delay": "5ms", "duration": "10s"}, GROUPS)


# --- fault_params.check: bad values, one line each -----------------------------------------------------------------

NETWORK_DELAY_ALLOWED = "delay, jitter, distribution, correlation, engine, duration, trigger, peers"
BAD = [
    # unknown parameters and faults
    ("worker-kill", {"modee": "child"}, False,
     "worker-kill: unknown parameter modee (allowed: mode, every, duration, trigger)"),
    ("network-delay", {"delay": "20ms", "dealy": "5ms", "correlaton": "5%"}, False,
     f"network-delay: unknown parameter correlaton (allowed: {NETWORK_DELAY_ALLOWED})"),
    ("worker-pause", {"target": "redis"}, False, "worker-pause: unknown parameter target (allowed: duration, trigger)"),
    ("no-such-fault", {}, False, f"unknown fault 'no-such-fault' (known: {KNOWN})"),
    ("worker-kill", {"mode": "sideways"}, False, "worker-kill: mode: 'sideways' is not one of main, child, all"),
    # durations
    ("worker-pause", {"duration": "-5s"}, False, "worker-pause: duration: '-5s' is negative (a duration must be >= 0)"),
    ("worker-pause", {"duration": "30"}, False, f"worker-pause: duration: '30' has no unit ({DURATION_USE})"),
    ("worker-pause", {"duration": "3601s"}, False, "worker-pause: duration: '3601s' is above the limit of 3600s"),
    ("cpu-exhaustion", {"duration": "2h"}, False, "cpu-exhaustion: duration: '2h' is above the limit of 3600s"),
    ("worker-pause", {"duration": None}, False, "worker-pause: duration is required"),
    ("worker-kill", {"every": "5s"}, False,
     "worker-kill: every needs a duration (kill every 5s for 60s: every=5s duration=60s)"),
    ("worker-kill", {"every": "0s", "duration": "10s"}, False, "worker-kill: every: '0s' must be above 0"),
    ("redis-restart", {"down_for": "5"}, False, f"redis-restart: down_for: '5' has no unit ({DURATION_USE})"),
    ("redis-restart", {"mode": "restart"}, False, "redis-restart: mode: 'restart' is not one of graceful, kill"),
    ("broker-restart", {"down_for": "-2s"}, False,
     "broker-restart: down_for: '-2s' is negative (a duration must be >= 0)"),
    ("redis-maxmemory", {}, False, "redis-maxmemory: maxmemory is required"),
    ("redis-maxmemory", {"maxmemory": "512KiB"}, False, "redis-maxmemory: maxmemory: '512KiB' is below 1MiB"),
    ("redis-maxmemory", {"maxmemory": "64"}, False,
     "redis-maxmemory: maxmemory: '64' has no unit (use B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)"),
    ("redis-maxmemory", {"maxmemory": "4MiB", "policy": "lru"}, False,
     "redis-maxmemory: policy: 'lru' is not one of allkeys-lru, allkeys-lfu, allkeys-random, volatile-lru, "
     "volatile-lfu, volatile-random, volatile-ttl, noeviction"),
    # network-delay
    ("network-delay", {"delay": "61s"}, False, "network-delay: delay: '61s' is above the limit of 60s"),
    ("network-delay", {"delay": "2m"}, False, "network-delay: delay: '2m' is above the limit of 60s"),
    ("network-delay", {"delay": "0ms"}, False, "network-delay: delay: '0ms' must be above 0"),
    ("network-delay", {}, False, "network-delay: delay is required"),
    ("network-delay", {"delay": ""}, False, "network-delay: delay is required"),
    ("network-delay", {"delay": "20"}, False, f"network-delay: delay: '20' has no unit ({DURATION_USE})"),
    ("network-delay", {"delay": "20ms", "jitter": "61s"}, False,
     "network-delay: jitter: '61s' is above the limit of 60s"),
    ("network-delay", {"delay": "20ms", "distribution": "gamma"}, False,
     "network-delay: distribution: 'gamma' is not one of uniform, normal, pareto, paretonormal"),
    ("network-delay", {"delay": "20ms", "distribution": "pareto"}, False,
     "network-delay: distribution pareto needs a jitter, e.g. jitter=5ms"),
    ("network-delay", {"delay": "20ms", "distribution": "normal", "jitter": "0ms"}, False,
     "network-delay: distribution normal needs a jitter, e.g. jitter=5ms"),
    ("network-delay", {"delay": "20ms", "engine": "ebpf"}, False,
     "network-delay: engine: 'ebpf' is not one of auto, netem, nfqueue"),
    ("network-delay", {"delay": "20ms", "correlation": "101%"}, False,
     "network-delay: correlation: '101%' is above 100%"),
    # network-loss
    ("network-loss", {"loss": "120%"}, False, "network-loss: loss: '120%' is above 100%"),
    ("network-loss", {"loss": "-1%"}, False, "network-loss: loss: '-1%' is negative (a percentage must be >= 0)"),
    ("network-loss", {"loss": "5x"}, False, "network-loss: loss: '5x' has an unknown unit 'x' (use %)"),
    ("network-loss", {}, False, "network-loss: give at least one of loss, duplicate, corrupt, reorder above 0%"),
    ("network-loss", {"loss": "0%", "correlation": "50%", "delay": "10ms"}, False,
     "network-loss: give at least one of loss, duplicate, corrupt, reorder above 0%"),
    ("network-loss", {"reorder": "25%"}, False,
     "network-loss: reorder needs a delay (packets not reordered are delayed), e.g. delay=10ms"),
    ("network-loss", {"loss": "5%", "side": "wire"}, False,
     "network-loss: side: 'wire' is not one of ingress, egress, both"),
    ("network-loss", {"loss": "5%", "correlation": "25%"}, False,
     "network-loss: correlation needs netem on the node's own packets (side=egress); side=ingress loses what the "
     "peers send at random"),
    # network-bandwidth
    ("network-bandwidth", {}, False, "network-bandwidth: rate is required"),
    ("network-bandwidth", {"rate": "8"}, False, f"network-bandwidth: rate: '8' has no unit ({RATE_USE})"),
    ("network-bandwidth", {"rate": "0mbit"}, False,
     "network-bandwidth: rate: '0mbit' is below 1bit (a rate must be positive)"),
    ("network-bandwidth", {"rate": "8mbit", "latency": "0ms"}, False,
     "network-bandwidth: latency: '0ms' must be above 0"),
    ("network-bandwidth", {"rate": "8mbit", "burst": "10"}, False,
     f"network-bandwidth: burst: '10' has no unit ({SIZE_USE})"),
    # memory
    ("memory-limit", {}, False, "memory-limit: limit is required"),
    ("memory-limit", {"limit": "8MiB"}, False, "memory-limit: limit: '8MiB' is below 16MiB"),
    ("memory-limit", {"limit": "16777215B"}, False, "memory-limit: limit: '16777215B' is below 16MiB"),
    ("memory-limit", {"limit": "256"}, False, f"memory-limit: limit: '256' has no unit ({SIZE_USE})"),
    ("memory-exhaustion", {"bytes": "0%"}, False, "memory-exhaustion: bytes: '0%' must be above 0%"),
    ("memory-exhaustion", {"bytes": "101%"}, False, "memory-exhaustion: bytes: '101%' is above 100%"),
    ("memory-exhaustion", {"bytes": "0MiB"}, False, "memory-exhaustion: bytes: '0MiB' must be above 0"),
    ("memory-exhaustion", {"workers": "0"}, False, "memory-exhaustion: workers: 0 is not within 1-64"),
    ("memory-exhaustion", {"workers": "65"}, False, "memory-exhaustion: workers: 65 is not within 1-64"),
    ("memory-exhaustion", {"oom": "task"}, False, "memory-exhaustion: oom: 'task' is not one of stressor, largest"),
    # cpu-exhaustion
    ("cpu-exhaustion", {"workers": "257"}, False, "cpu-exhaustion: workers: 257 is not within 0-256"),
    ("cpu-exhaustion", {"workers": "-1"}, False, "cpu-exhaustion: workers: -1 is not within 0-256"),
    ("cpu-exhaustion", {"workers": "two"}, False, "cpu-exhaustion: workers: 'two' is not a whole number"),
    ("cpu-exhaustion", {"workers": "1.5"}, False, "cpu-exhaustion: workers: '1.5' is not a whole number"),
    ("cpu-exhaustion", {"load": "0"}, False, "cpu-exhaustion: load: 0 is not within 1-100"),
    ("cpu-exhaustion", {"load": "50%"}, False, "cpu-exhaustion: load: '50%' is not a whole number"),
    # peers and nic, as the role resolves them
    ("network-partition", {"duration": "30s"}, True, "network-partition: peers is required"),
    ("network-partition", {"peers": []}, True, "network-partition: peers: matches no node other than the target"),
    ("network-partition", {"peers": " , "}, True, "network-partition: peers: matches no node other than the target"),
    ("network-partition", {"peers": ["198.18.0.10", "redis"]}, True,
     "network-partition: peers: 'redis' is not an IPv4 address"),
    ("network-delay", {"delay": "20ms", "peers": "198.18.0.300", "nic": "lab0"}, True,
     "network-delay: peers: '198.18.0.300' is not an IPv4 address"),
    ("network-delay", {"delay": "20ms", "peers": PEERS}, True, "network-delay: nic is required"),
    ("network-bandwidth", {"rate": "8mbit", "peers": PEERS, "nic": 5}, True,
     "network-bandwidth: nic: must be a non-empty string"),
    ("clock-skew", {}, False, "clock-skew: give a step (e.g. step=30s, step=-2m) or a drift (e.g. drift=5%), or both"),
    ("clock-skew", {"step": "2h"}, False, "clock-skew: step: '2h' is beyond +-3600s"),
    ("clock-skew", {"step": "30"}, False, "clock-skew: step: '30' has no unit (use ms, s, m or h)"),
    ("clock-skew", {"drift": "12%"}, False, "clock-skew: drift: '12%' is beyond +-10%"),
    ("redis-disk-full", {"free": "lots"}, False,
     "redis-disk-full: free: 'lots' is not a size (a number with a unit: use B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)"),
    ("redis-slow-fsync", {"iops": "-5"}, False, "redis-slow-fsync: iops: -5 is not within 1-100000"),
    ("redis-slow-fsync", {"iops": "5.5"}, False, "redis-slow-fsync: iops: '5.5' is not a whole number"),
    ("redis-slow-fsync", {"iops": "5", "duration": "10"}, False,
     "redis-slow-fsync: duration: '10' has no unit (use ms, s, m or h)"),
]


@pytest.mark.parametrize(("fault", "params", "resolved", "message"), BAD)
def test_check_rejects_in_one_line(fault, params, resolved, message):
    with pytest.raises(ValueError, match=exact(message)) as err:
        check(fault, params, resolved)
    assert "\n" not in str(err.value)


def test_check_rejects_the_same_way_resolved_or_not():
    """Only peers and nic depend on resolution: every other error is found by the preflight check already."""
    for fault, params, resolved, message in BAD:
        if resolved or fault not in ALL or not ALL[fault].node_values():
            continue
        with pytest.raises(ValueError, match=exact(message)):
            check(fault, {**params, "peers": PEERS, "nic": "lab0"})


# --- the files made from the declarations (tools/fault_files.py) ------------------------------------------------------

SPECS = yaml.safe_load((ROOT / "roles/fault/meta/argument_specs.yml").read_text())["argument_specs"]
PASSED = re.compile(r"\{\{ (?P<var>\w+) \| default\((?P<default>.*)\) \}\}")


def test_generated_fault_files_are_up_to_date():
    """What CI checks: every playbook, entry point, spec entry and docs table as the declarations make them."""
    assert fault_files.stale(ROOT) == {}


def test_every_fault_has_a_playbook_and_an_entry_point():
    assert {path.stem for path in (ROOT / "faults").glob("*.yml")} - {"preflight"} == set(ALL)
    assert set(SPECS) - {"main"} == {kind.entry for kind in ALL.values()}
    assert set(SPECS["clear"]["options"]) == {"fault_only"} and SPECS["clear"]["options"]["fault_only"]["default"] == ""


def passed_default(expression: str, name: str) -> object:
    """The default in `"{{ name | default(...) }}"`, as a Python value."""
    match = PASSED.fullmatch(expression)
    assert match is not None, f"{expression!r} is not '{{{{ {name} | default(...) }}}}'"
    assert match["var"] == name
    return ast.literal_eval(match["default"])


@pytest.mark.parametrize("fault", list(KINDS))
def test_a_parameter_keeps_its_name_and_default_from_playbook_to_agent(fault):
    """-e delay=... reaches the role as fault_params.delay, with the declared default, and the agent as delay=."""
    kind = KINDS[fault]
    plays = yaml.safe_load((ROOT / "faults" / f"{fault}.yml").read_text())
    preflight = plays[0]["vars"]
    task = plays[1]["tasks"][0]
    assert preflight["fault_name"] == fault and plays[0]["ansible.builtin.import_playbook"] == "preflight.yml"
    assert task["ansible.builtin.include_role"] == {"name": "fault", "tasks_from": kind.entry}
    passed = task["vars"]["fault_params"]
    assert list(passed) == [param.name for param in kind.params]
    options = SPECS[kind.entry]["options"]["fault_params"]["options"]
    for param in kind.params:
        given = passed_default(passed[param.name], param.name)
        assert given == ("" if param.required else param.default)
        assert options[param.name].get("required", False) is param.required
        if param.value.choices:
            assert options[param.name]["choices"] == list(param.value.choices)
    assert ("fault_peers" in preflight) == (kind.peers is not None) == ("fault_peers" in task["vars"])
    entry = yaml.safe_load((ROOT / "roles/fault/tasks" / f"{kind.entry}.yml").read_text())
    assert entry[0]["ansible.builtin.include_tasks"] == "apply.yml" and entry[0]["vars"]["fault_name"] == fault
    # what the role fills in on the node, under the names the agent takes
    for name in kind.node_values():
        assert f"'{name}': {fault_files.NODE_SOURCES[name]}" in entry[0]["vars"]["fault_agent_params"]


# --- units.parse_rate and parse_percent -----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "bits"), [
    ("8mbit", 8_000_000), ("8Mbit", 8_000_000), ("512kbit", 512_000), ("1gbit", 10**9), ("1bit", 1),
    ("1kibit", 1024), ("1mibit", 2**20), ("1gibit", 2**30), ("100kbps", 800_000), ("1mbps", 8_000_000),
    ("1gbps", 8 * 10**9), ("10bps", 80), ("1.5kbit", 1500), (" 8 mbit ", 8_000_000), ("8MBIT", 8_000_000),
])
def test_parse_rate(text, bits):
    assert parse_rate(text) == bits


@pytest.mark.parametrize(("text", "message"), [
    ("8", f"'8' has no unit ({RATE_USE})"),
    (8, f"'8' has no unit ({RATE_USE})"),
    ("", f"'' is not a rate (a number with a unit: {RATE_USE})"),
    ("fast", f"'fast' is not a rate (a number with a unit: {RATE_USE})"),
    ("1e3bit", f"'1e3bit' is not a rate (a number with a unit: {RATE_USE})"),
    (None, f"None is not a rate (a number with a unit: {RATE_USE})"),
    (True, f"True is not a rate (a number with a unit: {RATE_USE})"),
    ("-1mbit", "'-1mbit' is negative (a rate must be >= 0)"),
    ("0mbit", "'0mbit' is below 1bit (a rate must be positive)"),
    ("0.5bit", "'0.5bit' is below 1bit (a rate must be positive)"),
    ("8mb", f"'8mb' has an unknown unit 'mb' ({RATE_USE})"),
])
def test_parse_rate_rejects(text, message):
    with pytest.raises(ValueError, match=exact(message)) as err:
        parse_rate(text)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("text", "percent"), [
    ("20%", 20.0), ("20", 20.0), ("0.5%", 0.5), (".5%", 0.5), ("100%", 100.0), ("0", 0.0), ("0%", 0.0),
    (" 50 % ", 50.0), (20, 20.0), (1.5, 1.5),
])
def test_parse_percent(text, percent):
    assert parse_percent(text) == percent


@pytest.mark.parametrize(("text", "message"), [
    ("100.1%", "'100.1%' is above 100%"),
    ("101", "'101' is above 100%"),
    ("-1%", "'-1%' is negative (a percentage must be >= 0)"),
    ("5x", "'5x' has an unknown unit 'x' (use %)"),
    ("", "'' is not a percentage (a number with a unit: use %)"),
    ("%", "'%' is not a percentage (a number with a unit: use %)"),
    (None, "None is not a percentage (a number with a unit: use %)"),
    (True, "True is not a percentage (a number with a unit: use %)"),
    (float("nan"), "'nan' is not a percentage (a finite number with a unit: use %)"),
    (float("inf"), "'inf' is not a percentage (a finite number with a unit: use %)"),
])
def test_parse_percent_rejects(text, message):
    with pytest.raises(ValueError, match=exact(message)) as err:
        parse_percent(text)
    assert "\n" not in str(err.value)


# --- nfqueue_delay.DelaySampler -------------------------------------------------------------------------------------

SAMPLES = 20000
DELAY, JITTER = 0.1, 0.02


def samples(distribution: str, delay: float = DELAY, jitter: float = JITTER, seed: int = 1) -> list[float]:
    sampler = DelaySampler(delay, jitter, distribution, random.Random(seed))
    return [sampler.sample() for _ in range(SAMPLES)]


@pytest.mark.parametrize("distribution", ["uniform", "normal", "pareto", "paretonormal"])
def test_sampler_without_jitter_always_gives_the_delay(distribution):
    assert set(samples(distribution, jitter=0.0)) == {DELAY}


def test_sampler_uniform_stays_within_the_jitter():
    values = samples("uniform")
    assert statistics.fmean(values) == pytest.approx(DELAY, rel=0.01)
    assert DELAY - JITTER <= min(values) < DELAY - 0.9 * JITTER
    assert DELAY + 0.9 * JITTER < max(values) <= DELAY + JITTER


def test_sampler_normal_has_the_jitter_as_standard_deviation():
    values = samples("normal")
    assert statistics.fmean(values) == pytest.approx(DELAY, rel=0.02)
    assert statistics.pstdev(values) == pytest.approx(JITTER, rel=0.05)


@pytest.mark.parametrize("distribution", ["pareto", "paretonormal"])
def test_sampler_pareto_is_right_skewed_with_the_jitter_as_standard_deviation(distribution):
    values = samples(distribution)
    mean = statistics.fmean(values)
    assert mean == pytest.approx(DELAY, rel=0.05)
    assert statistics.pstdev(values) == pytest.approx(JITTER, rel=0.15)
    above = sum(value > mean + 2 * JITTER for value in values)
    below = sum(value < mean - 2 * JITTER for value in values)
    assert above > below + SAMPLES // 100


@pytest.mark.parametrize("distribution", ["uniform", "normal", "pareto", "paretonormal"])
def test_sampler_is_never_negative(distribution):
    values = samples(distribution, delay=0.001, jitter=0.01)
    assert min(values) == 0.0  # clamped, not negative
    assert max(values) > 0.001


def test_sampler_reorders_by_sending_the_share_asked_at_once():
    sampler = DelaySampler(0.01, immediate=0.25, rng=random.Random(3))
    values = [sampler.sample() for _ in range(SAMPLES)]
    assert set(values) == {0.0, 0.01}
    assert values.count(0.0) / SAMPLES == pytest.approx(0.25, abs=0.01)


def test_sampler_rejects_an_unknown_distribution():
    with pytest.raises(ValueError, match=exact("unknown distribution 'gamma' (use uniform, normal, pareto, "
                                               "paretonormal)")):
        DelaySampler(0.01, 0.001, "gamma")


# --- nfqueue_delay.DelayEngine: release order, with fake packets and a fake clock ----------------------------------

class FakeSampler:
    def __init__(self, delays: list[float]) -> None:
        self.delays = iter(delays)

    def sample(self) -> float:
        return next(self.delays)


class FakePacket:
    """Records when it is accepted; deliberately not orderable, as netfilterqueue's packets are not."""

    def __init__(self, name: str, accepted: list[str]) -> None:
        self.name = name
        self.accepted = accepted

    def accept(self) -> None:
        self.accepted.append(self.name)


def test_engine_accepts_packets_in_release_order_once_due():
    now = [0.0]
    accepted: list[str] = []
    engine = DelayEngine(FakeSampler([0.3, 0.1, 0.2, 0.1, 0.05]), clock=lambda: now[0])
    for name in ("a", "b", "c"):  # due at 0.3, 0.1, 0.2
        engine._arrived(FakePacket(name, accepted))
    now[0] = 0.1
    engine._arrived(FakePacket("d", accepted))  # due at 0.2, after c (same time, arrived later)
    engine._release(0.0999)
    assert accepted == []
    engine._release(0.1)
    assert accepted == ["b"]
    now[0] = 0.2
    engine._arrived(FakePacket("e", accepted))  # due at 0.25
    engine._release(0.2)
    assert accepted == ["b", "c", "d"]
    engine._release(0.29)
    assert accepted == ["b", "c", "d", "e"]
    engine._release(1.0)
    engine._release(2.0)
    assert accepted == ["b", "c", "d", "e", "a"]  # each once
    assert engine.stats == {"packets": 5, "released": 5, "duplicated": 0, "corrupted": 0}
    assert engine.held == []


# --- fault_agent: parameters and refusals ---------------------------------------------------------------------------


PACKET = bytes([0x45, 0, 0, 32]) + bytes(16) + b"after the header"


def test_a_node_in_a_named_network_namespace_shares_the_host_clock(tmp_path):
    from chaoslab.node.fault_clock import shares_the_host_clock

    assert shares_the_host_clock(str(tmp_path)) is False
    (tmp_path / "other").write_text("")
    assert shares_the_host_clock(str(tmp_path)) is False
    (tmp_path / "chaoslab-worker-1").symlink_to(f"/proc/{os.getpid()}/ns/net")  # as ip netns names this one
    assert shares_the_host_clock(str(tmp_path)) is True
    assert shares_the_host_clock(str(tmp_path / "missing")) is False


def test_the_clock_lead_is_fitted_as_a_step_and_a_drift():
    from chaoslab.node.fault_clock import _line

    points = [(100.0 + t / 4, 30.0 + 0.05 * t / 4) for t in range(40)]  # 30 s ahead, 5 % fast
    step, slope = _line(points)
    assert step == pytest.approx(30.0) and slope == pytest.approx(0.05)


def test_a_corrupted_packet_has_one_bit_flipped_past_its_ip_header():
    rng = random.Random(5)
    for _ in range(200):
        changed = flip_bit(PACKET, rng)
        assert changed[:20] == PACKET[:20]
        assert sum(bin(a ^ b).count("1") for a, b in zip(changed, PACKET, strict=True)) == 1


class PayloadPacket(FakePacket):
    def __init__(self, name: str, accepted: list[str]) -> None:
        super().__init__(name, accepted)
        self.payload = PACKET

    def get_payload(self) -> bytes:
        return self.payload

    def set_payload(self, payload: bytes) -> None:
        self.payload = payload


class SentCopies:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, address: tuple[str, int]) -> None:
        self.sent.append((data, address))


def test_engine_duplicates_and_corrupts_the_shares_asked_and_sends_copies_as_they_leave():
    accepted: list[str] = []
    engine = DelayEngine(DelaySampler(0.0), clock=lambda: 0.0, mangling=Mangling(duplicate=0.3, corrupt=0.2),
                         rng=random.Random(11))
    copies = SentCopies()
    engine.copies = copies  # type: ignore[assignment]
    packets = [PayloadPacket(str(n), accepted) for n in range(2000)]
    for packet in packets:
        engine._arrived(packet)
    engine._release(0.0)
    corrupted = [packet for packet in packets if packet.payload != PACKET]
    assert len(accepted) == 2000 and engine.stats["corrupted"] == len(corrupted)
    assert len(corrupted) / 2000 == pytest.approx(0.2, abs=0.03)
    assert len(copies.sent) / 2000 == pytest.approx(0.3, abs=0.03) and engine.stats["duplicated"] == len(copies.sent)
    # a copy is the packet as it left (corrupted or not), to the packet's own destination
    assert {address for _, address in copies.sent} == {("0.0.0.0", 0)}
    left = {packet.payload for packet in packets}
    assert all(data in left for data, _ in copies.sent)

def test_parse_params():
    assert parse_params(["delay=20ms", "peers=198.18.0.101,198.18.0.102", "burst=", "x=a=b"]) == {
        "delay": "20ms", "peers": "198.18.0.101,198.18.0.102", "burst": "", "x": "a=b"}
    assert parse_params([]) == {}
    with pytest.raises(ValueError, match=exact("parameter 'ab' is not name=value")):
        parse_params(["delay=20ms", "ab"])


@pytest.mark.parametrize(("params", "message"), [
    (["network-delay", "delay=5"], f"network-delay: delay: '5' has no unit ({DURATION_USE})"),
    (["network-delay", "delay"], "parameter 'delay' is not name=value"),
    (["worker-kill", "every=5s"], "worker-kill: every needs a duration (kill every 5s for 60s: every=5s duration=60s)"),
    (["no-such-fault"], f"unknown fault 'no-such-fault' (known: {KNOWN})"),
])
def test_agent_refuses_bad_parameters_before_touching_anything(params, message, tmp_path, capsys, monkeypatch):
    def touched(*_args, **_kwargs):
        raise AssertionError("the agent went on after a bad parameter")

    monkeypatch.setattr(fault_agent, "build", touched)
    monkeypatch.setattr(fault_agent, "run_fault", touched)
    state = tmp_path / "state"
    code = fault_agent.main(["--node", "n", "--state-dir", str(state), "--textfile-dir", str(tmp_path / "tf"),
                             *params])
    out, err = capsys.readouterr()
    assert code == 2
    assert err == message + "\n"
    assert out == ""
    assert list(tmp_path.iterdir()) == []


# --- plugins/filter/chaoslab.py: fault_errors and fault_agent_args -------------------------------------------------

def test_fault_errors_is_empty_for_good_parameters_and_ignores_target():
    assert filters.fault_errors({"target": "redis", "delay": "20ms", "peers": "workers"}, "network-delay", False) == ""
    assert filters.fault_errors({"delay": "20ms", "peers": PEERS, "nic": "lab0"}, "network-delay") == ""
    assert filters.fault_errors({}, "clear") == ""


@pytest.mark.parametrize(("params", "fault", "resolved", "message"), [
    ({"target": "redis", "delay": "5"}, "network-delay", False,
     f"network-delay: delay: '5' has no unit ({DURATION_USE})"),
    ({"dealy": "5ms"}, "network-delay", False,
     f"network-delay: unknown parameter dealy (allowed: {NETWORK_DELAY_ALLOWED})"),
    ({"delay": "20ms", "peers": "workers"}, "network-delay", False, ""),
    ({"delay": "20ms", "peers": [], "nic": "lab0"}, "network-delay", True,
     "network-delay: peers: matches no node other than the target"),
    ({}, "no-such-fault", False, f"unknown fault 'no-such-fault' (known: {KNOWN})"),
])
def test_fault_errors(params, fault, resolved, message):
    assert filters.fault_errors(params, fault, resolved) == message


def test_fault_agent_args():
    assert filters.fault_agent_args({"delay": "20ms", "workers": 2, "peers": PEERS, "burst": "", "nic": "lab0"}) == [
        "delay=20ms", "workers=2", "peers=198.18.0.101,198.18.0.102", "burst=", "nic=lab0"]
    assert filters.fault_agent_args({}) == []
    # what the filter writes, the agent reads back
    params = {"delay": "20ms", "peers": PEERS, "nic": "lab0"}
    assert check("network-delay", parse_params(filters.fault_agent_args(params)))["peers"] == PEERS


# --- fault_record.FaultRecord ---------------------------------------------------------------------------------------

def test_fault_record_lifecycle(tmp_path):
    record = FaultRecord("network-delay", "redis", str(tmp_path / "state"), str(tmp_path / "textfile"))
    state = tmp_path / "state" / "network-delay.json"
    prom = tmp_path / "textfile" / "chaoslab_fault_network_delay.prom"
    assert record.read() is None
    record.claim()  # nothing active: the state file is created, exclusively
    assert record.read()["pid"] is None

    before = time.time()
    started = record.start(before + 30, {"delay": 0.02}, os.getpid(), {})
    assert before <= started <= time.time()
    assert json.loads(state.read_text()) == {"fault": "network-delay", "node": "redis", "pid": os.getpid(),
                                             "pid_start": process_start(os.getpid()),
                                             "start": started, "deadline": before + 30,
                                             "params": {"delay": 0.02}, "detail": {}}
    text = prom.read_text()
    assert 'chaoslab_fault_active{fault="network-delay",target="redis"} 1\n' in text
    assert "# TYPE chaoslab_fault_active gauge\n" in text

    record.update({"engine": "netem"})
    assert record.read()["detail"] == {"engine": "netem"}
    assert record.read()["pid"] == os.getpid()  # the rest is kept
    assert sorted(path.name for path in tmp_path.rglob("*")) == [
        "chaoslab_fault_network_delay.prom", "network-delay.json", "state", "textfile"]  # no .tmp left

    record.end()
    assert not state.exists() and not prom.exists()
    assert record.read() is None
    record.end()  # again: nothing to remove, no error


def test_fault_record_without_textfile_dir(tmp_path):
    record = FaultRecord("worker-pause", "worker-1", str(tmp_path), "")
    assert record.textfile is None
    record.start(None, {}, None, {"pids": [1]})
    assert [path.name for path in tmp_path.iterdir()] == ["worker-pause.json"]
    record.end()
    assert list(tmp_path.iterdir()) == []


def test_fault_record_unreadable_state_reads_as_none(tmp_path):
    record = FaultRecord("x", "n", str(tmp_path), "")
    record.state.write_text("not json")
    assert record.read() is None
    record.state.write_text("[1, 2]")
    assert record.read() is None


def test_a_second_claim_is_refused_naming_clear_in_one_line_and_leaves_the_first(tmp_path):
    record = FaultRecord("x", "n", str(tmp_path), str(tmp_path))
    record.claim()
    record.start(None, {}, None, {})
    with pytest.raises(ValueError, match=exact("x is already active on n (until cleared); run faults/clear.yml first")):
        FaultRecord("x", "n", str(tmp_path), str(tmp_path)).claim()

    deadline = time.time() + 60
    record.start(deadline, {}, 1, {})
    until = time.strftime("%H:%M:%S", time.localtime(deadline))
    with pytest.raises(ValueError, match=exact(f"x is already active on n (until {until}); run faults/clear.yml first")
                       ) as err:
        FaultRecord("x", "n", str(tmp_path), str(tmp_path)).claim()
    assert "\n" not in str(err.value)
    assert record.read()["deadline"] == deadline  # the refused claim did not touch the winner's record


def test_of_many_simultaneous_claims_exactly_one_wins(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    def claim(_: int) -> bool:
        try:
            FaultRecord("x", "n", str(tmp_path), str(tmp_path)).claim()
        except ValueError:
            return False
        return True

    with ThreadPoolExecutor(10) as pool:
        assert sorted(pool.map(claim, range(10))) == [False] * 9 + [True]
    FaultRecord("x", "n", str(tmp_path), str(tmp_path)).end()
    FaultRecord("x", "n", str(tmp_path), str(tmp_path)).claim()  # free again once the winner ended


def test_users_cannot_set_what_the_role_fills_in():
    """nic (and peers as addresses) come from the inventory: a user's -e nic=... is an unknown parameter."""
    with pytest.raises(ValueError, match=r"^network-delay: unknown parameter nic \(allowed: delay, "):
        check("network-delay", {"delay": "5ms", "nic": "eth0"}, resolved=False)
    with pytest.raises(ValueError, match=r"^clear: unknown parameter x \(allowed: only\)$"):
        check("clear", {"x": "1"}, resolved=False)
    with pytest.raises(ValueError, match=r"^clear: only: 'nope' is not a fault \(known: worker-kill, "):
        check("clear", {"only": "nope"}, resolved=False)


def test_a_measurement_is_recorded_at_the_time_it_gives(tmp_path):
    """clock-skew measures while the node's clock is skewed: it gives the true time, and the record uses it, so the
    measurement falls inside its window."""
    from chaoslab.node.fault_record import MEASURED_AT

    events = tmp_path / "events.jsonl"
    record = FaultRecord("x", "n", str(tmp_path / "state"), "", str(events))
    record.measured({"effective": True, MEASURED_AT: 1000.5})
    record.measured({"effective": False})
    first, second = (json.loads(line) for line in events.read_text().splitlines())
    assert first["t"] == 1000.5 and first["effect"] == {"effective": True}
    assert second["t"] > 1000.5 and second["effect"] == {"effective": False}
