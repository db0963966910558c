"""Faults that prove themselves: each fault's agent measures what the fault did while it was in force, and the
measurement matches what was asked (or says the fault was not effective when it did nothing)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
from typing import Any

import psutil
import pytest
import redis
import yaml

from fault_state import is_baseline, measured, node_state, wait_until
from test_experiments import run_scenario
from tests.conftest import BIN, ROOT, ansible_env, run_playbook
from verdict_checks import assert_verdicts_hold_up, lab_redis


def inject(fault: str, node: str, *params: str) -> dict[str, Any]:
    since = time.time()
    run_playbook(f"faults/{fault}.yml", "-e", f"target={node}", *(arg for p in params for arg in ("-e", p)))
    return measured(node, fault, since)


def test_a_delay_is_measured_as_the_added_round_trip_to_each_peer(lab):
    effect = inject("network-delay", "redis", "delay=100ms", "duration=6s")
    added = effect["measured"]["added_rtt_ms"]
    assert set(added) == {"198.18.0.101", "198.18.0.102"}, effect
    for peer, value in added.items():
        assert abs(value - 100) <= max(10, 2), (peer, effect)
    assert effect["effective"] is True and effect["measured"]["samples"] >= 20, effect
    assert wait_until(lambda: is_baseline(node_state()) == [], 15)
    # the same, as a user who ran the playbook by hand sees it
    shown = subprocess.run([str(BIN / "chaoslab"), "faults", "--json"], cwd=ROOT, env=ansible_env(),
                           capture_output=True, text=True, timeout=120, check=False)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    window = [row for row in json.loads(shown.stdout) if row["fault"] == "network-delay"][-1]
    assert window["node"] == "redis" and window["in_force"] is False and window["effective"] == "yes", window
    assert window["effect"] == effect and 5.0 <= window["end"] - window["start"] <= 7.0, window


def test_a_loss_is_measured_as_the_share_of_connects_unanswered(lab):
    effect = inject("network-loss", "redis", "loss=20%", "duration=8s")
    assert effect["measured"]["probes"] >= 200 and abs(effect["measured"]["loss"] - 0.20) <= 0.05, effect
    assert effect["effective"] is True, effect
    assert wait_until(lambda: is_baseline(node_state()) == [], 15)


def icmp_checksum_errors(nodes: tuple[str, ...] = ("worker-1", "worker-2")) -> int:
    """ICMP messages the nodes' kernels refused for a bad checksum, so far."""
    total = 0
    for node in nodes:
        snmp = subprocess.run(["ip", "netns", "exec", f"chaoslab-{node}", "cat", "/proc/net/snmp"],
                              capture_output=True, text=True, check=True).stdout.splitlines()
        names, values = (line.split()[1:] for line in snmp if line.startswith("Icmp:"))
        total += int(dict(zip(names, values, strict=True))["InCsumErrors"])
    return total


def test_duplication_corruption_and_reordering_are_measured_from_the_peers_answers(lab):
    """On this kernel the NFQUEUE engine does all three; the peers' kernels answer each echo request that reached
    them intact, twice when it came twice, at once when it overtook the delayed ones."""
    refused = icmp_checksum_errors()
    effect = inject("network-loss", "redis", "duplicate=20%", "corrupt=10%", "reorder=25%", "delay=20ms",
                    "duration=10s")
    refused = icmp_checksum_errors() - refused
    assert effect["asked"] == {"duplicated_share": 0.2, "corrupted_share": 0.1, "early_share": 0.25}, effect
    measured = effect["measured"]
    assert measured["echo_requests"] >= 1000, effect
    for name, share in effect["asked"].items():
        assert abs(measured[name] - share) <= 0.05, (name, effect)
    # the corrupted requests are the ones the peers' kernels counted as failing their checksum (with the copies of
    # the corrupted ones the engine also sent: a copy leaves as the packet did)
    expected = measured["corrupted_share"] * (1 + measured["duplicated_share"])
    assert abs(refused / measured["echo_requests"] - expected) <= 0.03, (refused, effect)
    assert effect["effective"] is True, effect
    assert wait_until(lambda: is_baseline(node_state()) == [], 15)


def test_a_partition_is_measured_as_connects_nobody_answers(lab):
    effect = inject("network-partition", "worker-1", "duration=5s")
    assert effect["measured"]["answered"] == {"198.18.0.10": 0} and effect["effective"] is True, effect
    assert wait_until(lambda: is_baseline(node_state()) == [], 15)


def stressor_cpu_seconds(node: str, stop: threading.Event, totals: dict[int, float]) -> None:
    """The CPU seconds of every stress-ng process in *node*'s network namespace, sampled from outside the node
    until *stop*."""
    netns = os.stat(f"/run/netns/chaoslab-{node}").st_ino
    while not stop.wait(0.1):
        for proc in psutil.process_iter(["name"]):
            if (proc.info["name"] or "").startswith("stress-ng"):
                with contextlib.suppress(OSError, psutil.Error):
                    if os.stat(f"/proc/{proc.pid}/ns/net").st_ino == netns:
                        times = proc.cpu_times()
                        totals[proc.pid] = times.user + times.system


def test_cpu_exhaustion_is_measured_as_cpu_the_stressors_took(lab):
    """Half a CPU asked. What the stressors get depends on what else the 2-core host runs (stress-ng's load is a
    busy/sleep cycle in wall-clock time, so a preempted busy slice gives less), so the measurement is held to an
    account kept from outside the node, and its verdict to its own figures."""
    stop, totals = threading.Event(), {}
    sampler = threading.Thread(target=stressor_cpu_seconds, args=("worker-1", stop, totals))
    sampler.start()
    try:
        effect = inject("cpu-exhaustion", "worker-1", "workers=1", "load=50", "duration=6s")
    finally:
        stop.set()
        sampler.join()
    assert effect["asked"] == {"cpus": 0.5}
    measured_cpus, seconds = effect["measured"]["stress_cpus"], effect["measured"]["seconds"]
    outside = sum(totals.values()) / seconds
    # the outside account misses at most its last 0.1 s sample of each stressor and counts their start-up
    assert abs(measured_cpus - outside) <= 0.06, (outside, effect)
    assert 0.2 <= measured_cpus <= 0.6, effect
    assert measured_cpus <= effect["measured"]["node_cpus"] + 0.02, effect  # the stressors are in the node
    assert abs(effect["ratio"] - measured_cpus / 0.5) < 0.01, effect
    if abs(effect["ratio"] - 0.9) > 0.01:  # its verdict follows from its figures (the node is far from 0.9 x 2 CPUs)
        assert effect["effective"] is (effect["ratio"] >= 0.9), effect


def test_memory_exhaustion_is_measured_as_memory_the_stressors_held(lab):
    effect = inject("memory-exhaustion", "worker-1", "bytes=256MiB", "duration=6s")
    assert effect["asked"] == {"bytes": 256 * 2**20}
    assert effect["measured"]["stress_bytes"] >= 0.9 * 256 * 2**20 and effect["effective"] is True, effect
    assert effect["measured"]["node_size_bytes"] == 1024 * 2**20, effect


def test_a_pause_is_measured_as_processes_seen_stopped(lab):
    effect = inject("worker-pause", "worker-2", "duration=3s")
    assert effect["measured"]["stopped"] == effect["measured"]["signalled"] >= 2, effect
    assert effect["effective"] is True
    assert wait_until(lambda: is_baseline(node_state()) == [], 15)


def test_a_kill_is_measured_as_processes_killed(lab):
    effect = inject("worker-kill", "worker-2", "mode=child", "duration=3s")
    assert effect["measured"]["killed"] == 1 and effect["effective"] is True, effect


def test_a_memory_cap_nothing_reaches_is_reported_not_effective(lab):
    """A deliberately ineffective fault: a cap far above what the idle node uses kills nothing and is never
    reached, and the measurement says so."""
    effect = inject("memory-limit", "worker-2", "limit=900MiB", "duration=4s")
    assert effect["measured"]["oom_kills"] == 0 and effect["measured"]["peak_bytes"] < 0.9 * 900 * 2**20, effect
    assert effect["effective"] is False and effect["ratio"] < 0.9, effect
    assert wait_until(lambda: is_baseline(node_state()) == [], 15)


@pytest.mark.parametrize("fault", ["redis-restart", "broker-restart"])
def test_a_redis_restart_is_measured_as_the_downtime_a_client_saw(lab, fault):
    """On a Redis lab, broker-restart is redis-restart under the name that serves both brokers."""
    effect = inject(fault, "redis", "mode=graceful", "down_for=2s", "duration=3s")
    assert effect["measured"]["restarted"] is True and effect["measured"]["answering"] is True, effect
    assert 1.8 <= effect["measured"]["down_seen_s"] <= 4.0 and effect["effective"] is True, effect
    assert wait_until(lambda: is_baseline(node_state()) == [], 15)


def test_several_faults_in_one_phase_each_act_in_their_own_window(lab, tmp_path):
    path = tmp_path / "several.yml"
    path.write_text(yaml.safe_dump({
        "name": "several", "celery": {"task_acks_late": True, "worker_prefetch_multiplier": 1},
        "load": {"rate": 8, "seed": 5, "mix": [{"kind": "sleep", "args": {"ms": 50}}]},
        "phases": [{"name": "baseline", "duration": "4s"},
                   {"name": "fault", "duration": "14s", "faults": [
                       {"playbook": "cpu-exhaustion", "target": "worker-1", "params": {"workers": 1, "load": 50}},
                       {"playbook": "network-delay", "target": "redis", "params": {"delay": "40ms"}, "at": "5s",
                        "duration": "5s"}]},
                   {"name": "recovery", "duration": "2s"}, {"name": "drain", "duration": "20s"}],
        "hypothesis": {"lost": 0}}))
    proc, run_dir = run_scenario(path, tmp_path / "results")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    summary = assert_verdicts_hold_up(lab, run_dir)
    run = json.loads((run_dir / "run.json").read_text())
    phase = next(phase for phase in run["phases"] if phase["name"] == "fault")
    windows = {window["fault"]: window for window in summary["faults"]}
    assert set(windows) == {"cpu-exhaustion", "network-delay"} and summary["fault_source"] == "agents"
    delay, cpu = windows["network-delay"], windows["cpu-exhaustion"]
    assert 4.5 <= delay["start"] - phase["start"] <= 7.0, (delay, phase)
    assert 4.0 <= delay["end"] - delay["start"] <= 6.0, delay
    # the stressor lasts the phase's 14 s from when it was applied (about a second in)
    assert cpu["start"] - phase["start"] <= 2.5 and 13.0 <= cpu["end"] - cpu["start"] <= 15.0, (cpu, phase)
    assert delay["effect"]["effective"] and cpu["effect"]["effective"], windows
    assert is_baseline(node_state()) == []


def test_a_redis_memory_limit_is_measured_as_keys_evicted(lab):
    """volatile-lru: only keys with a TTL go (this test's own, and results), never the lab's queues."""
    client = lab_redis(lab, 2)
    try:
        for index in range(300):
            client.set(f"chaoslab-test-{index}", b"x" * 10_000, ex=600)
        used = int(client.info("memory")["used_memory"])
        since = time.time()
        run_playbook("faults/redis-maxmemory.yml", "-e", f"maxmemory={(used - 2 * 2**20) // 2**20}MiB", "-e",
                     "policy=volatile-lru", "-e", "duration=4s")
        client.set("chaoslab-test-write", b"x", ex=600)  # Redis evicts when a write needs room
        effect = measured("redis", "redis-maxmemory", since)
    finally:
        client.flushdb()
    assert effect["measured"]["evicted_keys"] >= 1 and effect["effective"] is True, effect
    assert wait_until(lambda: is_baseline(node_state()) == [], 15)


def test_redis_refusing_writes_fails_publishes_and_loses_nothing_queued(lab, tmp_path):
    """noeviction below what Redis holds: every write that needs memory is refused (publishes fail, the caller is
    told), and Redis throws nothing away."""
    scenario = yaml.safe_load((ROOT / "experiments" / "redis-noeviction.yml").read_text())
    scenario["phases"] = [{"name": "baseline", "duration": "4s"},
                          {**scenario["phases"][1], "duration": "5s"},
                          {"name": "recovery", "duration": "3s"}, {"name": "drain", "duration": "8s"}]
    path = tmp_path / "noeviction.yml"
    path.write_text(yaml.safe_dump(scenario))
    proc, run_dir = run_scenario(path, tmp_path / "results")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    summary = assert_verdicts_hold_up(lab, run_dir)  # what is pending is in the broker, what is lost is not
    assert summary["classes"]["publish_failed"] >= 1 and summary["classes"]["lost"] == 0, summary["classes"]
    effect = summary["faults"][0]["effect"]
    assert effect["measured"]["refused_writes"] >= 1 and effect["measured"]["evicted_keys"] == 0, effect
    assert effect["effective"] is True
    # a task that ran to success while Redis refused its result and its acknowledgement stays reserved
    assert set(summary["causes"].get("pending", {})) <= {"reserved", "completed_unacked"}, summary["causes"]


def takes_writes(client: Any) -> bool:
    try:
        return bool(client.set("chaoslab:after-disk-full", "1"))
    except redis.ResponseError:  # MISCONF: it has not written its AOF again yet
        return False


def test_a_full_disk_under_redis_with_aof_is_measured_as_writes_redis_refused(lab):
    client = lab_redis(lab, 0)
    client.config_set("appendonly", "yes")
    try:
        effect = inject("redis-disk-full", "redis", "duration=4s")
        assert wait_until(lambda: takes_writes(client), 15), "Redis never took writes again"
    finally:
        client.config_set("appendonly", "no")
    measured = effect["measured"]
    assert measured["writes"] >= 10 and measured["writes_refused"] >= 1, effect
    assert measured["first_error"].startswith("MISCONF") and measured["aof_last_write_status"] == "err", effect
    assert measured["free_bytes_seen"] < 64 * 1024 and effect["effective"] is True, effect
    assert wait_until(lambda: is_baseline(node_state()) == [], 15)


def redis_set_ms(client, count: int = 5) -> float:
    """The slowest of a few SETs, in ms."""
    times = []
    for number in range(count):
        start = time.monotonic()
        client.set("chaoslab:slow-fsync-test", str(number))
        times.append(time.monotonic() - start)
    return max(times) * 1000


def test_a_slow_disk_under_redis_with_aof_always_is_measured_as_capped_fsyncs_and_slow_writes(lab):
    client = lab_redis(lab, 0)
    client.config_set("appendonly", "yes")
    client.config_set("appendfsync", "always")
    try:
        assert wait_until(lambda: client.info("persistence")["aof_rewrite_in_progress"] == 0, 15)
        assert redis_set_ms(client) < 50  # before: the disk is fast
        effect = inject("redis-slow-fsync", "redis", "iops=5", "duration=6s")
        assert wait_until(lambda: is_baseline(node_state()) == [], 15)
        assert redis_set_ms(client) < 50  # after: fast again
    finally:
        client.config_set("appendfsync", "everysec")
        client.config_set("appendonly", "no")
    measured = effect["measured"]
    # the probe shares the disk's 5 writes a second with a Redis that fsyncs after every write command: one of its
    # fsyncs may wait seconds behind Redis's, so a 6 s window holds one burst or a few (one an fsync still held up
    # when the fault ended counts as far as it went); a single fsync waits about 1/iops s (the kernel grants the
    # budget per 100 ms: measured 177 ms to 1.6 s here), against a fraction of a millisecond before
    assert measured["bursts"] >= 1 and measured["disk_writes_per_s"] <= 5 / 0.9, effect
    assert measured["fsyncs_per_s_before"] >= 50 and measured["single_fsync_median_ms"] >= 150, effect
    # appendfsync always: every write command waits for its fsync
    assert measured["redis_write_median_ms"] >= 150 and measured["aof_enabled"] == 1, effect
    assert effect["effective"] is True and effect["asked"] == {"disk_writes_per_s_at_most": 5}, effect


def test_a_slow_disk_under_a_redis_that_persists_nothing_is_slow_but_reported_not_effective(lab):
    """Deliberately ineffective: the disk is capped (the probe's fsyncs run at the rate asked, about), but the
    lab's Redis as provisioned writes nothing to it."""
    effect = inject("redis-slow-fsync", "redis", "iops=20", "duration=4s")
    measured = effect["measured"]
    assert measured["bursts"] >= 2 and measured["fsyncs_per_s"] <= 20 / 0.9, effect
    assert 20 * 0.8 <= measured["disk_writes_per_s"] <= 20 / 0.9, effect  # the disk alone, at the cap
    assert measured["aof_enabled"] == 0 and measured["save"] == "" and measured["redis_write_median_ms"] < 20, effect
    assert effect["effective"] is False, effect
    assert wait_until(lambda: is_baseline(node_state()) == [], 15)


def test_a_full_disk_under_a_redis_that_persists_nothing_is_reported_not_effective(lab):
    """Deliberately ineffective: the lab's Redis as provisioned writes no AOF and has no save points."""
    effect = inject("redis-disk-full", "redis", "duration=3s")
    assert effect["measured"]["writes"] >= 5 and effect["measured"]["writes_refused"] == 0, effect
    assert effect["measured"]["aof_enabled"] == 0 and effect["effective"] is False, effect
    assert wait_until(lambda: is_baseline(node_state()) == [], 15)
