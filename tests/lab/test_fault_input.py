"""Bad fault input is refused in one line with the nodes untouched; clear.yml reverts every fault kind."""

from __future__ import annotations

import pytest

from fault_state import is_baseline, node_state, settled_node_state, wait_until
from tests.conftest import recap, run_playbook

BAD_INPUT = [
    ("network-delay", ["dealy=20ms"], "network-delay: unknown parameter dealy (allowed: delay, jitter"),
    ("network-delay", [], "network-delay: delay is required"),
    ("network-delay", ["delay=20"], "network-delay: delay: '20' has no unit (use ms, s, m or h)"),
    ("network-delay", ["delay=-5ms"], "network-delay: delay: '-5ms' is negative"),
    ("network-delay", ["delay=61s"], "network-delay: delay: '61s' is above the limit of 60s"),
    ("network-delay", ["delay=20ms", "distribution=gamma"], "distribution: 'gamma' is not one of uniform, normal"),
    ("network-delay", ["delay=20ms", "distribution=normal"], "distribution normal needs a jitter"),
    ("network-delay", ["delay=20ms", "target=nosuchnode"], "target 'nosuchnode' matches no node of the inventory"),
    ("network-delay", ["delay=20ms", "correlation=25%", "engine=nfqueue"],
     "network-delay: correlation needs tc netem, and engine=nfqueue was asked for"),
    ("network-loss", ["loss=120%"], "network-loss: loss: '120%' is above 100%"),
    ("network-loss", [], "network-loss: give at least one of loss, duplicate, corrupt, reorder above 0%"),
    ("network-loss", ["reorder=25%"], "network-loss: reorder needs a delay"),
    ("network-loss", ["loss=5%", "side=egress", "correlation=25%", "engine=nfqueue"],
     "network-loss: correlation needs tc netem, and engine=nfqueue was asked for"),
    ("network-loss", ["duplicate=5x"], "network-loss: duplicate: '5x' has an unknown unit 'x' (use %)"),
    ("network-loss", ["corrupt=-1%"], "network-loss: corrupt: '-1%' is negative"),
    ("network-bandwidth", ["rate=8"], "network-bandwidth: rate: '8' has no unit"),
    ("network-bandwidth", ["rate=8mbit", "burst=lots"], "network-bandwidth: burst: 'lots' is not a size"),
    ("network-partition", ["peers=nope"], "network-partition: peers 'nope' match no node other than the target"),
    ("network-partition", ["peers=workers[0]"], "peers 'workers[0]' match no node other than the target"),
    ("worker-pause", ["target=workers[7]"], "target 'workers[7]' matches no node of the inventory"),
    ("worker-pause", ["duration=5"], "worker-pause: duration: '5' has no unit"),
    ("worker-pause", ["duration=2h"], "worker-pause: duration: '2h' is above the limit of 3600s"),
    ("worker-kill", ["mode=sideways"], "worker-kill: mode: 'sideways' is not one of main, child, all"),
    ("worker-kill", ["every=5s"], "worker-kill: every needs a duration"),
    ("cpu-exhaustion", ["load=150"], "cpu-exhaustion: load: 150 is not within 1-100"),
    ("cpu-exhaustion", ["workers=lots"], "cpu-exhaustion: workers: 'lots' is not a whole number"),
    ("memory-exhaustion", ["bytes=512"], "memory-exhaustion: bytes: '512' has no unit"),
    ("memory-exhaustion", ["bytes=150%"], "memory-exhaustion: bytes: '150%' is above 100%"),
    ("memory-exhaustion", ["bytes=100TiB"], "memory-exhaustion: bytes=100TiB must be above 0 and at most the node's"),
    ("memory-limit", [], "memory-limit: limit is required"),
    ("redis-maxmemory", ["maxmemory=512KiB"], "redis-maxmemory: maxmemory: '512KiB' is below 1MiB"),
    ("redis-maxmemory", ["maxmemory=4MiB", "policy=lru"], "redis-maxmemory: policy: 'lru' is not one of"),
    ("memory-limit", ["limit=8MiB"], "memory-limit: limit: '8MiB' is below 16MiB"),
    ("memory-limit", ["limit=20MiB"], "memory-limit: 20MiB is below what worker-1 needs without its pool children"),
    ("memory-limit", ["limit=2GiB"], "memory-limit: 2048MiB is not below worker-1's memory cap now (1024MiB: its "
                                     "size): it would cap nothing"),
    ("redis-disk-full", ["free=5x"], "redis-disk-full: free: '5x' has an unknown unit"),
    ("redis-disk-full", ["target=workers[0]"], "redis-disk-full: the lab's Redis does not run on worker-1"),
    ("redis-slow-fsync", ["iops=0"], "redis-slow-fsync: iops: 0 is not within 1-100000"),
    ("redis-slow-fsync", ["iops=fast"], "redis-slow-fsync: iops: 'fast' is not a whole number"),
    ("redis-slow-fsync", ["target=workers[0]"], "redis-slow-fsync: the lab's Redis does not run on worker-1"),
    ("clock-skew", ["step=30s"], "clock-skew: worker-1 is a network namespace of the local lab and shares the "
                                 "host's one kernel clock with every node; run it on the Vagrant lab or real hosts"),
    ("clock-skew", [], "clock-skew: give a step (e.g. step=30s, step=-2m) or a drift (e.g. drift=5%), or both"),
    ("redis-restart", ["mode=hard"], "redis-restart: mode: 'hard' is not one of graceful, kill"),
    ("redis-restart", ["down_for=-1s"], "redis-restart: down_for: '-1s' is negative"),
    ("broker-restart", ["mode=hard"], "broker-restart: mode: 'hard' is not one of graceful, kill"),
    ("rabbitmq-alarm", ["alarm=cpu"], "rabbitmq-alarm: alarm: 'cpu' is not one of memory, disk"),
    ("rabbitmq-alarm", [], "rabbitmq-alarm: the lab's broker on redis is Redis, not RabbitMQ"),
    ("broker-restart", ["down_for=3"], "broker-restart: down_for: '3' has no unit"),
]


@pytest.fixture(scope="module")
def settled_lab(lab: dict) -> dict:
    """The lab once its nodes have settled after the tests before this module (one wait, not one per case)."""
    settled_node_state()
    return lab


@pytest.mark.parametrize(("fault", "extra", "message"), BAD_INPUT, ids=[f"{f}-{'-'.join(e) or 'none'}"
                                                                         for f, e, _ in BAD_INPUT])
def test_bad_input_is_refused_in_one_line_and_changes_nothing(settled_lab, fault, extra, message):
    before = node_state()
    args = [arg for item in extra for arg in ("-e", item)]
    proc = run_playbook(f"faults/{fault}.yml", *args, check=False)
    assert proc.returncode != 0
    fatal = [line for line in proc.stdout.splitlines() if line.startswith("fatal:")]
    assert len(fatal) == 1 and message in fatal[0], proc.stdout[-3000:]
    assert node_state() == before


CLEARABLE = [
    ("worker-pause", []),
    ("cpu-exhaustion", ["workers=1"]),
    ("memory-exhaustion", ["bytes=64MiB"]),
    ("memory-limit", ["limit=900MiB"]),
    ("network-delay", ["delay=20ms"]),
    ("network-loss", ["loss=10%"]),
    ("network-bandwidth", ["rate=50mbit"]),
    ("network-partition", []),
    ("redis-maxmemory", ["maxmemory=64MiB", "policy=volatile-lru"]),
    ("redis-disk-full", []),
    ("redis-slow-fsync", []),
]


@pytest.mark.parametrize(("fault", "extra"), CLEARABLE, ids=[fault for fault, _ in CLEARABLE])
def test_clear_restores_the_baseline_after_each_fault_and_then_changes_nothing(lab, fault, extra):
    assert is_baseline(node_state()) == []
    run_playbook(f"faults/{fault}.yml", *[arg for item in extra for arg in ("-e", item)])
    assert wait_until(lambda: is_baseline(node_state()) != [], timeout=5), f"{fault} changed nothing"
    first = run_playbook("faults/clear.yml")
    assert sum(host["changed"] for host in recap(first.stdout).values()) >= 1
    assert is_baseline(node_state()) == []
    second = run_playbook("faults/clear.yml")
    assert all(host["changed"] == 0 for host in recap(second.stdout).values()), second.stdout[-2000:]
