"""What a fault did, measured on its node while it acts, by other means than the one that applied it.

A chaos tool that stops at "injected" cannot tell a fault that did nothing from one that did what was asked. Each
fault kind names a measurement here (``measure`` in :mod:`chaoslab.fault_kinds`): a function ``(values, node)``
called before the fault is applied (it may take a baseline then), returning the function that measures the fault
in force, given its :class:`Window`. The agent writes the outcome to the node's event ledger (a ``measured``
record), from which the checker, the report and the verdict read it::

    {"asked": {"delay_ms": 100.0}, "measured": {"added_rtt_ms": {"198.18.0.10": 100.4}, ...},
     "ratio": 1.004, "effective": true, "how": "median added round trip of 20 TCP connects to each peer"}

``ratio`` is what was measured over what was asked (the smallest over the fault's peers or processes); a fault is
effective when the ratio is at least :data:`EFFECTIVE` (or, where the asked effect is tiny, within its own
tolerance). Measurements:

- network-delay: TCP connects from the node to each peer (a closed port answers at once with a reset; the SYN and
  its answer cross the faulted NIC), median of up to 20 before and in force: the added round trip.
- network-loss: 600 TCP connects from the node to its peers at once, the share left unanswered (a SYN or its
  answer lost).
- network-bandwidth: ICMP echo requests offered to each peer at 1.5 times the limit (the peer's kernel answers
  them): the rate it answered must not be above the limit.
- network-partition: the same connects, which must all go unanswered.
- cpu-exhaustion: the CPU time the stressors took, and the node's own CPU use and throttling (its cgroup).
- memory-exhaustion: the memory the stressors hold, and the node's memory in use against its size.
- memory-limit: OOM kills in the node's memory cgroup and its peak use against the cap.
- worker-kill: the processes killed, and when the worker was running again.
- worker-pause: the worker's processes seen stopped (state T) after the pause.
- redis-maxmemory: the keys Redis evicted and the writes it refused (its own counters), its peak memory in use.
- redis-restart: a client's PINGs on the node from the restart until Redis answers again (the downtime it saw), and
  Redis's own run id (a new one: it did restart).
- rabbitmq-alarm: the alarms RabbitMQ says it has raised (rabbitmqctl), sampled while the fault lasts.
- broker-restart: the same for the lab's broker; on RabbitMQ, AMQP connections opened until one is accepted again,
  and the broker's main pid (a new one: it did restart).
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from chaoslab.node.cgroupfs import memory_files, read_keyed
from chaoslab.node.fault_record import Detail, Node, Stop
from chaoslab.node.fault_service import READY_WITHIN_S

EFFECTIVE = 0.9
"""A fault whose measured effect is below this share of what was asked is not effective."""
PROBE_PORT = 9
"""TCP port the connects go to (discard: closed on the lab's nodes, so the peer answers with a reset)."""
RTT_SAMPLES = 20
MIN_SAMPLES = 5
DELAY_TOLERANCE_S = 0.002
"""An added round trip this close to the delay asked counts as the delay (tiny delays: scheduling noise)."""


@dataclass
class Window:
    """The fault in force, as its measurement sees it: apply's detail, the deadline, and when it ends."""

    detail: Detail
    deadline: float | None
    stop: Stop
    ended: threading.Event = field(default_factory=threading.Event)
    """Set by the agent just before it reverts the fault: measurements that sample until the end wait on it."""

    def budget(self, share: float = 0.6, cap: float = 15.0) -> float:
        """Seconds a measurement may take from now: a share of what is left of the fault, at most *cap*."""
        left = cap if self.deadline is None else max(self.deadline - time.time(), 0.0)
        return min(cap, share * left)


Measure = Callable[[Window], Detail]


def effect(asked: dict[str, Any], measured: dict[str, Any], ratio: float | None, how: str,
           effective: bool | None = None) -> Detail:
    """A measurement's outcome, in the shape every fault's has."""
    if effective is None:
        effective = ratio is not None and ratio >= EFFECTIVE
    return {"asked": asked, "measured": measured, "ratio": None if ratio is None else round(ratio, 3),
            "effective": bool(effective), "how": how}


# ---------------------------------------------------------------------------------------------------------------
# Network


def connect_time(address: str, timeout: float, port: int = PROBE_PORT) -> float | None:
    """Seconds a TCP connect to *address* took to be answered (accepted or refused); None when unanswered."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        start = time.perf_counter()
        try:
            sock.connect((address, port))
        except ConnectionRefusedError:
            pass
        except OSError:
            return None
        return time.perf_counter() - start


def connect_times(address: str, count: int, timeout: float, budget: float) -> list[float | None]:
    """Up to *count* connects one after the other, within *budget* seconds (at least MIN_SAMPLES)."""
    found: list[float | None] = []
    end = time.monotonic() + budget
    while len(found) < count and (len(found) < MIN_SAMPLES or time.monotonic() < end):
        found.append(connect_time(address, timeout))
    return found


def each_peer(peers: list[str], probe: Callable[[str], list[float | None]]) -> dict[str, list[float | None]]:
    with ThreadPoolExecutor(max_workers=max(len(peers), 1)) as pool:
        return dict(zip(peers, pool.map(probe, peers), strict=True))


def _median_ms(samples: list[float | None]) -> float | None:
    answered = [sample for sample in samples if sample is not None]
    return round(statistics.median(answered) * 1000, 3) if answered else None


def network_delay(values: dict[str, Any], _node: Node) -> Measure:
    peers, delay = list(values["peers"]), float(values["delay"])
    before = each_peer(peers, lambda peer: connect_times(peer, RTT_SAMPLES, 1.0, 2.0))

    def during(window: Window) -> Detail:
        timeout = max(1.0, 4 * delay)
        budget = window.budget()
        found = each_peer(peers, lambda peer: connect_times(peer, RTT_SAMPLES, timeout, budget))
        base = {peer: _median_ms(samples) for peer, samples in before.items()}
        now = {peer: _median_ms(samples) for peer, samples in found.items()}
        added = {peer: None if now[peer] is None or base[peer] is None else round(now[peer] - base[peer], 3)
                 for peer in peers}
        known = [value for value in added.values() if value is not None]
        smallest = min(known) / 1000 if len(known) == len(peers) and known else None
        ratio = None if smallest is None else smallest / delay
        close = smallest is not None and delay - smallest <= DELAY_TOLERANCE_S
        return effect({"delay_ms": round(delay * 1000, 3)},
                      {"added_rtt_ms": added, "baseline_rtt_ms": base,
                       "samples": min((len(samples) for samples in found.values()), default=0)},
                      ratio, f"median added round trip of up to {RTT_SAMPLES} TCP connects to each peer",
                      effective=(ratio is not None and ratio >= EFFECTIVE) or close)

    return during


LOSS_PROBES = 600
"""Probes of a loss rate, over all peers: at 20 % the rate's standard error is 1.6 points."""
LOSS_TOLERANCE = 0.05
"""A loss rate this close to the one asked counts as it (200 probes: a few points of sampling noise)."""


def tcp_retransmits() -> int:
    """Segments this node's TCP has retransmitted (``Tcp: RetransSegs`` of /proc/net/snmp, per network namespace:
    node_exporter's ``node_netstat_Tcp_RetransSegs``)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text(encoding="ascii").splitlines()
             if line.startswith("Tcp:")]
    return int(dict(zip(lines[0][1:], lines[1][1:], strict=True))["RetransSegs"])


def network_loss(values: dict[str, Any], _node: Node) -> Measure:
    from chaoslab.node import packet_effect

    peers, loss = list(values["peers"]), float(values["loss"]) / 100
    corrupt, delay = float(values.get("corrupt") or 0.0) / 100, float(values.get("delay") or 0.0)
    mangled = any(float(values.get(name) or 0) > 0 for name in ("duplicate", "corrupt", "reorder"))
    # a connect is lost when its SYN (egress) or the answer (ingress) is: both sides lose more of them; a
    # corrupted SYN is refused by the peer's checksum, lost as well
    expected = 1 - (1 - loss) ** (2 if values.get("side") == "both" else 1) * (1 - corrupt)
    # the delayed packets' delay, where asked, makes an answer late, not lost
    timeout = 0.25 + 4 * delay

    def during(_window: Window) -> Detail:
        asked: dict[str, Any] = {}
        measured: dict[str, Any] = {}
        ratios, effective, how = [], True, []
        if loss > 0:
            count = max(LOSS_PROBES // max(len(peers), 1), MIN_SAMPLES)
            retransmits = tcp_retransmits()
            with ThreadPoolExecutor(max_workers=20) as pool:  # probes at once: a lost one waits its whole timeout
                found = {peer: list(pool.map(connect_time, [peer] * count, [timeout] * count)) for peer in peers}
            retransmits = tcp_retransmits() - retransmits
            probes = sum(len(samples) for samples in found.values())
            unanswered = {peer: sum(sample is None for sample in samples) for peer, samples in found.items()}
            rate = sum(unanswered.values()) / probes
            asked |= {"loss": loss, "side": values.get("side", "ingress"), "connects_lost": round(expected, 4)}
            measured |= {"loss": round(rate, 4), "probes": probes, "unanswered": unanswered,
                         "node_tcp_retransmits": retransmits}
            ratios.append(rate / expected)
            effective = rate >= EFFECTIVE * expected or expected - rate <= LOSS_TOLERANCE
            how.append(f"TCP connects from the node to its peers ({probes} in all) left unanswered within "
                       f"{timeout:g} s (a SYN or its answer lost); the node's own TCP retransmissions meanwhile")
        if mangled:
            more_asked, more, ratio, near, what = packet_effect.measure(values, peers)
            asked, measured = asked | more_asked, measured | more
            ratios.append(ratio)
            effective = effective and near
            how.append(what)
        return effect(asked, measured, min(ratios), "; ".join(how), effective=effective)

    return during


BANDWIDTH_OFFER = 1.5
"""The probe offers this multiple of the limit: a path that lets it all through is not limited."""
BANDWIDTH_SECONDS = 2.0


def network_bandwidth(values: dict[str, Any], _node: Node) -> Measure:
    from chaoslab.node import icmp_probe
    from chaoslab.node.fault_network import tbf_burst

    peers, rate, latency = list(values["peers"]), float(values["rate"]), float(values["latency"])
    burst_bits = 8 * tbf_burst(values)  # passes at once, on top of the rate

    def during(window: Window) -> Detail:
        grace = latency + 0.3  # what the bucket still holds when the probe stops sending
        seconds = max(0.5, min(BANDWIDTH_SECONDS, window.budget() / max(len(peers), 1) - grace))
        # one peer after the other: the limit is on the node's traffic to all of them together
        found = {peer: icmp_probe.throughput(peer, BANDWIDTH_OFFER * rate, seconds, grace) for peer in peers}
        measured = {"answered_mbit_s": {peer: round(item.answered_bps / 1e6, 3) for peer, item in found.items()},
                    "offered_mbit_s": {peer: round(item.offered_bps / 1e6, 3) for peer, item in found.items()}}
        how = (f"ICMP echo requests of {icmp_probe.PAYLOAD} bytes offered to each peer at {BANDWIDTH_OFFER:g} x the "
               f"rate for {seconds:g} s: the bits per second the peer answered")
        if not found or min(item.offered_bps for item in found.values()) < 1.2 * rate:
            return {"asked": {"rate_mbit_s": rate / 1e6}, "measured": measured, "ratio": None, "effective": None,
                    "how": how, "error": "the probe could not offer more than the limit"}
        most = max(item.answered_bps for item in found.values()) - burst_bits / seconds
        measured["above_bucket_mbit_s"] = round(most / 1e6, 3)
        ratio = rate / most if most > 0 else None  # none above the bucket: limited, far below the rate
        return effect({"rate_mbit_s": round(rate / 1e6, 3)}, measured, ratio, how + ", less the bucket's burst",
                      effective=ratio is None or ratio >= EFFECTIVE)

    return during


def network_partition(values: dict[str, Any], _node: Node) -> Measure:
    peers = list(values["peers"])

    def during(window: Window) -> Detail:
        found = each_peer(peers, lambda peer: connect_times(peer, MIN_SAMPLES, 0.5, window.budget()))
        answered = {peer: sum(sample is not None for sample in samples) for peer, samples in found.items()}
        probes = sum(len(samples) for samples in found.values())
        cut = probes - sum(answered.values())
        return effect({"cut_off": True}, {"answered": answered, "probes": probes}, cut / probes if probes else None,
                      f"TCP connects from the node to each peer ({MIN_SAMPLES} each) that went unanswered",
                      effective=probes > 0 and cut == probes)

    return during


# ---------------------------------------------------------------------------------------------------------------
# CPU and memory


def _stress_cpu_seconds() -> dict[int, float]:
    """CPU seconds each of the node's fault stressors has used so far, by pid."""
    from chaoslab.node.fault_process import stress_processes

    found = {}
    for proc in stress_processes():
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            found[proc.pid] = times.user + times.system
    return found


def _cpu_stat() -> dict[str, float]:
    """The node cgroup's CPU use (seconds), throttled periods and seconds throttled, and its quota (CPUs or None)."""
    from chaoslab.node.node_size import own_cgroup

    directory, v2 = own_cgroup("cpu")
    stat = read_keyed(directory / "cpu.stat")
    if v2:
        quota, period = (directory / "cpu.max").read_text(encoding="ascii").split()
        return {"usage_s": stat.get("usage_usec", 0) / 1e6, "throttled": stat.get("nr_throttled", 0),
                "throttled_s": stat.get("throttled_usec", 0) / 1e6,
                "quota": 0.0 if quota == "max" else int(quota) / int(period)}
    accounting, _ = own_cgroup("cpuacct")
    quota = int((directory / "cpu.cfs_quota_us").read_text(encoding="ascii"))
    period = int((directory / "cpu.cfs_period_us").read_text(encoding="ascii"))
    return {"usage_s": int((accounting / "cpuacct.usage").read_text(encoding="ascii")) / 1e9,
            "throttled": stat.get("nr_throttled", 0), "throttled_s": stat.get("throttled_time", 0) / 1e9,
            "quota": 0.0 if quota < 0 else quota / period}


def cpu_ratio(stress: float, node_cpus: float, asked: float, capacity: float) -> float:
    """What a CPU exhaustion did over what it asked: the CPUs the stressors took over those asked (at most the
    node's). Asked to fill the node, the node's own use counts too: the worker's tasks share the CPUs the stressors
    fill, and a node at its cap is as busy as asked whoever took the time."""
    ratio = stress / min(asked, capacity)
    return max(ratio, node_cpus / capacity) if asked >= capacity else ratio


def cpu_exhaustion(values: dict[str, Any], _node: Node) -> Measure:
    workers, load = int(values["workers"]) or os.cpu_count() or 1, int(values["load"])

    def during(window: Window) -> Detail:
        # sampled while in force: stress-ng ends by itself at the deadline too, and takes its times along
        start, first, cgroup_start = time.monotonic(), _stress_cpu_seconds(), _cpu_stat()
        latest, cgroup, at = dict(first), cgroup_start, start
        while not window.ended.wait(0.5):
            latest.update(_stress_cpu_seconds())
            cgroup, at = _cpu_stat(), time.monotonic()
        elapsed = max(at - start, 1e-3)
        stress = sum(seconds - first.get(pid, 0.0) for pid, seconds in latest.items()) / elapsed
        node_cpus = (cgroup["usage_s"] - cgroup_start["usage_s"]) / elapsed
        host = float(os.cpu_count() or 1)
        capacity = min(cgroup["quota"] or host, host)
        asked = workers * load / 100
        ratio = cpu_ratio(stress, node_cpus, asked, capacity)
        return effect({"cpus": round(asked, 3)},
                      {"stress_cpus": round(stress, 3), "node_cpus": round(node_cpus, 3),
                       "node_capacity_cpus": round(capacity, 3),
                       "throttled_periods": int(cgroup["throttled"] - cgroup_start["throttled"]),
                       "throttled_s": round(cgroup["throttled_s"] - cgroup_start["throttled_s"], 3),
                       "seconds": round(elapsed, 1)},
                      ratio, "CPU time the stressors took over the fault, against the CPUs asked (at most the "
                      "node's; asked to fill the node, the node's own use where higher); the node's CPU use and "
                      "throttling from its cgroup",
                      effective=ratio >= EFFECTIVE or node_cpus >= EFFECTIVE * capacity)

    return during


def _node_memory() -> tuple[Path, Path]:
    limit_file, usage_file, _ = memory_files("self")
    return limit_file, usage_file


def memory_exhaustion(values: dict[str, Any], _node: Node) -> Measure:
    from chaoslab.node.fault_process import memory_bytes, node_memory, stress_processes

    asked = memory_bytes(str(values["bytes"]), node_memory())

    def during(window: Window) -> Detail:
        limit_file, usage_file = _node_memory()
        held, peak = 0, 0
        end = time.monotonic() + window.budget(0.8, 10.0)
        while True:  # stress-ng touches its pages over a moment: the most it held, sampled
            rss = 0
            for proc in stress_processes():
                with contextlib.suppress(psutil.Error):
                    rss += proc.memory_info().rss
            held = max(held, rss)
            peak = max(peak, int(usage_file.read_text(encoding="ascii")))
            if held >= asked or time.monotonic() >= end:
                break
            time.sleep(0.2)
        limit = limit_file.read_text(encoding="ascii").strip()
        size = None if limit == "max" or int(limit) >= 2**60 else int(limit)
        stat = read_keyed(usage_file.parent / "memory.stat")
        return effect({"bytes": asked}, {"stress_bytes": held, "node_bytes": peak, "node_size_bytes": size,
                                         "major_faults": stat.get("total_pgmajfault", stat.get("pgmajfault"))},
                      held / asked if asked else None,
                      "memory the stressors held (resident), sampled; the node's memory in use against its size")

    return during


def _oom_kills(limit_file: Path) -> int:
    directory = limit_file.parent
    for name in ("memory.events", "memory.oom_control"):
        if (directory / name).exists():
            return read_keyed(directory / name).get("oom_kill", 0)
    return 0


def memory_limit(values: dict[str, Any], _node: Node) -> Measure:
    limit = int(values["limit"])

    def during(window: Window) -> Detail:
        limit_file = Path(str(window.detail["file"]))
        usage_file = limit_file.parent / ("memory.current" if limit_file.name == "memory.max"
                                          else "memory.usage_in_bytes")
        kills_before, peak = _oom_kills(limit_file), 0
        while not window.ended.wait(0.2):
            with contextlib.suppress(OSError, ValueError):
                peak = max(peak, int(usage_file.read_text(encoding="ascii")))
        kills = _oom_kills(limit_file) - kills_before
        return effect({"limit_bytes": limit}, {"oom_kills": kills, "peak_bytes": peak},
                      peak / limit if limit else None,
                      "OOM kills in the capped memory cgroup, and its peak use (sampled) against the cap",
                      effective=kills > 0 or peak >= EFFECTIVE * limit)

    return during


# ---------------------------------------------------------------------------------------------------------------
# Processes


def worker_kill(_values: dict[str, Any], _node: Node) -> Measure:
    def during(window: Window) -> Detail:
        from chaoslab.node.node_procs import worker_processes

        killed = list(window.detail.get("killed") or [])
        start, back = time.monotonic(), None
        end = start + window.budget(0.9, 60.0)
        while time.monotonic() < end and not window.ended.is_set():
            main, _children = worker_processes()
            if main is not None and main.pid not in killed:
                back = round(time.monotonic() - start, 2)
                break
            time.sleep(0.1)
        return effect({"killed": "at least one worker process"},
                      {"killed": len(killed), "worker_back_after_s": back},
                      1.0 if killed else 0.0, "processes the kill reached, and when a worker main process "
                      "not killed was running again", effective=bool(killed))

    return during


def worker_pause(_values: dict[str, Any], _node: Node) -> Measure:
    def during(window: Window) -> Detail:
        frozen = list(window.detail.get("frozen") or [])
        time.sleep(min(0.5, window.budget()))
        stopped = 0
        for pid in frozen:
            with contextlib.suppress(psutil.Error):
                stopped += psutil.Process(pid).status() == psutil.STATUS_STOPPED
        return effect({"stopped": len(frozen)}, {"stopped": stopped, "signalled": len(frozen)},
                      stopped / len(frozen) if frozen else 0.0,
                      "the worker's processes seen stopped (state T) half a second after the pause")

    return during


def _redis_counters(conn: Any) -> tuple[int, int, int]:
    """(keys evicted, writes refused for lack of memory, memory in use) as Redis counts them."""
    stats = conn.info("stats")
    errors = conn.info("errorstats")
    return (int(stats.get("evicted_keys", 0)), int((errors.get("errorstat_OOM") or {}).get("count", 0)),
            int(conn.info("memory")["used_memory"]))


def redis_maxmemory(values: dict[str, Any], _node: Node) -> Measure:
    from chaoslab.node.fault_redis import client

    maxmemory, policy = int(values["maxmemory"]), str(values["policy"])
    # before the fault: Redis evicts at once when its limit is set below what it holds
    first = _redis_counters(client())[:2]

    def during(window: Window) -> Detail:
        conn = client()
        evicted, refused, peak = _redis_counters(conn)
        while not window.ended.wait(0.25):
            with contextlib.suppress(Exception):  # a Redis that does not answer for a moment: the next sample
                evicted, refused, used = _redis_counters(conn)
                peak = max(peak, used)
        evictions, refusals = evicted - first[0], refused - first[1]
        hit = refusals > 0 if policy == "noeviction" else evictions > 0
        return effect({"maxmemory": maxmemory, "policy": policy},
                      {"evicted_keys": evictions, "refused_writes": refusals, "peak_used_memory": peak},
                      peak / maxmemory, "Redis's own counters (INFO stats evicted_keys, errorstats OOM) over the "
                      "fault, and its memory in use (sampled)", effective=hit or peak >= EFFECTIVE * maxmemory)

    return during


REDIS_PING_EVERY_S = 0.05
REDIS_PING_TIMEOUT_S = 0.5


def _redis_ping(conn: Any) -> str | None:
    """Redis's run id when it answers, None when it does not."""
    try:
        return str(conn.info("server")["run_id"])
    except Exception:  # refused, reset, timed out, loading: not answering as a client needs it
        return None


def redis_restart(values: dict[str, Any], _node: Node) -> Measure:
    from chaoslab.node.fault_redis import client

    conn = client(REDIS_PING_TIMEOUT_S)
    return _restart_measure(float(values["down_for"]), lambda: _redis_ping(conn),
                            f"a client's PINGs (INFO server) on the node every {REDIS_PING_EVERY_S:g} s from the "
                            "restart until Redis answered again, and Redis's run id before and after")


def broker_restart(values: dict[str, Any], node: Node) -> Measure:
    """The lab's broker restarted: Redis as redis-restart measures it; RabbitMQ by AMQP connections opened on the
    node, its identity the service's main pid (a new process is a restart)."""
    from chaoslab.node.fault_service import ServiceControl, broker_service

    if broker_service() == "redis":
        return redis_restart(values, node)
    from chaoslab.node import config
    from chaoslab.node.amqp_publisher import connection_params

    params = connection_params(config.load().broker_url, REDIS_PING_TIMEOUT_S)
    service = ServiceControl(node.service_manager, "rabbitmq", node.supervisor_conf, "broker-restart")

    def identity() -> str | None:
        """The broker's main pid when it accepts an AMQP connection, None when it does not."""
        import amqp

        try:
            with amqp.Connection(**params):
                pass
        except Exception:  # refused, reset, timed out, still booting: not answering as a client needs it
            return None
        return str(service.state()[1])

    return _restart_measure(float(values["down_for"]), identity,
                            f"AMQP connections opened on the node every {REDIS_PING_EVERY_S:g} s from the restart "
                            "until RabbitMQ accepted one again, and its process before and after")


def _restart_measure(down_for: float, identity: Callable[[], str | None], how: str) -> Measure:
    """A restart seen by a client: *identity* is the server's (Redis's run id, RabbitMQ's pid) when it answers, None
    when it does not; the downtime seen is from its first failure to its answer again."""
    before = identity()  # the server the fault restarts

    def during(window: Window) -> Detail:
        first_failed = back = None
        now = None
        end = time.monotonic() + down_for + READY_WITHIN_S  # started again at down_for, fault or no fault
        while time.monotonic() < end:
            seen_at = time.monotonic()
            now = identity()
            if now is None and first_failed is None:
                first_failed = seen_at
            if now is not None and (first_failed is not None or now != before):
                back = seen_at
                break
            if window.ended.is_set() and first_failed is None:  # never seen down, and the fault is over
                break
            time.sleep(REDIS_PING_EVERY_S)
        restarted = before is not None and now is not None and now != before
        down_seen = None if first_failed is None or back is None else round(back - first_failed, 3)
        ratio = None if down_for <= 0 else (down_seen or 0.0) / down_for
        return effect({"down_for_s": down_for, "restarted": True},
                      {"restarted": restarted, "down_seen_s": down_seen, "answering": now is not None}, ratio,
                      how, effective=restarted and (down_for <= 0 or (ratio or 0.0) >= EFFECTIVE))

    return during


RABBITMQ_ALARM_EVERY_S = 0.5


def rabbitmq_alarm(values: dict[str, Any], _node: Node) -> Measure:
    """How long RabbitMQ had the alarm raised, as it says itself, sampled while the fault lasts."""
    from chaoslab.node.fault_rabbitmq import alarms

    alarm = str(values["alarm"])

    def during(window: Window) -> Detail:
        samples = raised = 0
        first = None
        start = time.monotonic()
        while True:
            with contextlib.suppress(Exception):  # a broker that does not answer for a moment: the next sample
                samples += 1
                if alarm in alarms():
                    raised += 1
                    first = first if first is not None else round(time.monotonic() - start, 3)
            if window.ended.wait(RABBITMQ_ALARM_EVERY_S):
                break
        share = raised / samples if samples else None
        return effect({"alarm": alarm}, {"samples": samples, "raised": raised, "raised_after_s": first}, share,
                      f"RabbitMQ's raised alarms (rabbitmqctl eval rabbit_alarm:get_alarms()) every "
                      f"{RABBITMQ_ALARM_EVERY_S:g} s while the fault lasted", effective=bool(share) and share >= 0.5)

    return during
