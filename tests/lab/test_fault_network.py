"""Network faults on the local lab, measured between a worker and Redis while active and after revert.

This kernel lacks sch_netem, so delay is the NFQUEUE engine's and loss iptables' statistic match; the
faults report which engine acted.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import time

import pytest

from fault_state import (
    finished,
    in_node,
    is_baseline,
    measured,
    node_state,
    probe,
    probe_in_background,
    wait_until,
)
from tests.conftest import BIN, ROOT, ansible_env, run_playbook

REDIS = "198.18.0.10"
WORKER_1 = "198.18.0.101"


def connect_ms(count: int = 30) -> float:
    """Median TCP connect time from worker-1 to Redis, in ms."""
    return statistics.median(probe("worker-1", "connect", REDIS, 6379, count)["ms"])


@pytest.mark.parametrize("delay_ms", [20, 200])
def test_delay_adds_the_requested_rtt_and_goes_away(lab, delay_ms):
    baseline = connect_ms()
    out = run_playbook("faults/network-delay.yml", "-e", f"delay={delay_ms}ms", "-e", "duration=60s").stdout
    assert "engine: nfqueue" in out or "engine: netem" in out
    try:
        added = connect_ms(20 if delay_ms > 100 else 30) - baseline
    finally:
        run_playbook("faults/clear.yml")
    assert abs(added - delay_ms) <= max(0.05 * delay_ms, 2.0), f"added {added:.2f} ms for {delay_ms} ms"
    after = connect_ms()
    assert after <= baseline + 2.0, f"{after:.2f} ms after the revert, {baseline:.2f} ms before"
    assert is_baseline(node_state()) == []


def test_delay_spares_traffic_outside_the_peers(lab):
    """peers=workers[1]: worker-2's packets are delayed, worker-1's are not."""
    run_playbook("faults/network-delay.yml", "-e", "delay=50ms", "-e", "peers=workers[1]", "-e", "duration=60s")
    try:
        worker_1 = statistics.median(probe("worker-1", "connect", REDIS, 6379, 10)["ms"])
        worker_2 = statistics.median(probe("worker-2", "connect", REDIS, 6379, 10)["ms"])
    finally:
        run_playbook("faults/clear.yml")
    assert worker_1 < 5 and 48 <= worker_2 <= 60, (worker_1, worker_2)


def test_loss_of_20_percent_over_2000_probes(lab):
    server = probe_in_background("redis", "echo", REDIS, 9100, 30)
    try:
        out = run_playbook("faults/network-loss.yml", "-e", "loss=20%", "-e", "peers=workers[0]",
                           "-e", "duration=60s").stdout
        assert "engine: iptables-statistic" in out or "engine: netem" in out
        try:
            during = probe("worker-1", "udp", REDIS, 9100, 2000)
        finally:
            run_playbook("faults/clear.yml")
        after = probe("worker-1", "udp", REDIS, 9100, 300)
    finally:
        server.kill()
    loss = 100 * (1 - during["received"] / during["sent"])
    assert 15 <= loss <= 25, f"measured {loss:.1f} % loss"
    assert after["received"] == after["sent"]


def tcp_retransmits(node: str) -> int:
    """Segments the node's TCP retransmitted so far (its namespace's /proc/net/snmp, node_exporter's
    node_netstat_Tcp_RetransSegs)."""
    out = subprocess.run(in_node(node, "cat", "/proc/net/snmp"), capture_output=True, text=True, check=True).stdout
    header, values = [line.split() for line in out.splitlines() if line.startswith("Tcp:")]
    return int(dict(zip(header, values, strict=True))["RetransSegs"])


def sent_from_worker_1(port: int) -> tuple[int, float]:
    """worker-1 sends to redis at 8 Mbit/s for 4 s (well below what the link takes: no congestion): the segments
    worker-1's TCP retransmitted meanwhile, and the rate redis received."""
    before = tcp_retransmits("worker-1")
    source = probe_in_background("worker-1", "paced", WORKER_1, port, 6)
    rate = probe("redis", "sink", WORKER_1, port, 4.0)["bits_per_second"]
    finished(source)
    return tcp_retransmits("worker-1") - before, rate


def test_loss_on_ingress_is_seen_by_the_senders_tcp_as_on_a_wire(lab):
    """side=ingress on redis drops what worker-1 sends as it arrives: worker-1's TCP resends after a timeout, as
    for loss on a wire. side=egress on worker-1 drops the same packets in worker-1 itself, whose TCP is told at
    once."""
    clean, _ = sent_from_worker_1(9105)
    run_playbook("faults/network-loss.yml", "-e", "loss=5%", "-e", "peers=workers[0]", "-e", "duration=60s")
    try:
        wire, wire_rate = sent_from_worker_1(9106)
    finally:
        run_playbook("faults/clear.yml")
    run_playbook("faults/network-loss.yml", "-e", "target=workers[0]", "-e", "peers=redis", "-e", "loss=5%",
                 "-e", "side=egress", "-e", "duration=60s")
    try:
        local, local_rate = sent_from_worker_1(9107)
    finally:
        run_playbook("faults/clear.yml")
    print(f"retransmits: clean {clean}, ingress {wire} ({wire_rate / 1e6:.1f} Mbit/s), "
          f"egress {local} ({local_rate / 1e6:.1f} Mbit/s)")
    # 5 % of ~3600 segments: ~180 resent by worker-1 (a run here: clean 0, ingress 173, egress 0)
    assert wire >= 60 and clean <= 10 and local < wire / 4, (clean, wire, local)
    assert is_baseline(node_state()) == []


def test_bandwidth_is_limited_to_the_rate(lab):
    def throughput(port: int) -> float:
        source = probe_in_background("redis", "source", REDIS, port, 5)
        rate = probe("worker-1", "sink", REDIS, port, 4.0)["bits_per_second"]
        finished(source)
        return rate

    since = time.time()
    out = run_playbook("faults/network-bandwidth.yml", "-e", "rate=16mbit", "-e", "duration=60s").stdout
    assert "engine: tbf" in out
    try:
        # the fault measures itself first (echo requests offered at 24 Mbit/s to each worker), then the test does
        effect = measured("redis", "network-bandwidth", since)
        limited = throughput(9101)
    finally:
        run_playbook("faults/clear.yml")
    assert abs(limited - 16e6) <= 0.15 * 16e6, f"{limited / 1e6:.2f} Mbit/s for 16mbit"
    assert effect["effective"] is True, effect
    for peer, answered in effect["measured"]["answered_mbit_s"].items():
        assert 13.0 <= answered <= 18.0 and effect["measured"]["offered_mbit_s"][peer] >= 22.0, effect
    assert throughput(9102) > 3 * 16e6


def test_partition_cuts_both_ways_then_heals(lab):
    def both_ways(port: int) -> tuple[bool, bool]:
        listener = probe_in_background("worker-1", "listen", WORKER_1, port, 3)
        to_redis = probe("worker-1", "reach", REDIS, 6379, 1.0)["reached"]
        from_redis = probe("redis", "reach", WORKER_1, port, 1.0)["reached"]
        listener.kill()
        listener.wait()
        return to_redis, from_redis

    assert both_ways(9103) == (True, True)
    run_playbook("faults/network-partition.yml", "-e", "duration=8s")
    assert both_ways(9104) == (False, False)
    # worker-2 still reaches Redis: only worker-1 is cut off
    assert probe("worker-2", "reach", REDIS, 6379, 1.0)["reached"]
    assert wait_until(lambda: is_baseline(node_state()) == [], timeout=15)
    assert both_ways(9105) == (True, True)


def test_network_delay_heals_when_the_controller_is_killed(lab):
    baseline = connect_ms(10)
    proc = subprocess.Popen([str(BIN / "ansible-playbook"), "faults/network-delay.yml", "-e", "delay=100ms",
                             "-e", "duration=15s"], cwd=ROOT, env=ansible_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    state = "/run/chaoslab/nodes/redis/faults/network-delay.json"
    assert wait_until(lambda: os.path.exists(state) or proc.poll() is not None, timeout=60)
    applied = time.monotonic()
    os.killpg(proc.pid, signal.SIGKILL)  # the controller dies right after the fault is applied
    proc.wait()
    assert wait_until(lambda: connect_ms(3) > 90, timeout=5), "the delay was not in force"
    time.sleep(max(15 + 2 - (time.monotonic() - applied), 0))
    assert is_baseline(node_state()) == []
    assert connect_ms(10) <= baseline + 2.0
