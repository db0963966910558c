"""Benchmark: delay accuracy of the network-delay engines, and activation and revert latency of every fault.

Run as root with the local lab up (make lab): .venv/bin/python bench/bench_faults.py [--samples 30]

Delay accuracy: TCP connect time from worker-1 to Redis (median of --samples connections) with
network-delay on Redis at 10/50/100/500 ms, minus the baseline measured in the same run; on the
engine this kernel has (the NFQUEUE fallback without sch_netem; netem where the kernel has it, where
the fallback is measured too with engine=nfqueue). Target: within ±5 % or ±2 ms.

Latency, per fault, on the node (the agent run in the node as the playbooks run it, without
Ansible's own start-up): activation = from starting the agent until it returns with the fault in
force; revert = from the fault's deadline until the node is back at its baseline (Redis: from the end
of down_for until it accepts connections again). Target: ≤ 1 s each.
"""

from __future__ import annotations

import argparse
import json
import shlex
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins" / "connection"))
from netns import cgroup_procs_files, node_command  # noqa: E402

PYTHON = sys.executable
REDIS, WORKER_1 = "198.18.0.10", "198.18.0.101"
RUN = Path("/run/chaoslab/nodes")
REDIS_DOWN_FOR = 1.0
CONNECT = ("import socket,sys,time,json\nout=[]\nfor _ in range(int(sys.argv[1])):\n"
           " t=time.perf_counter();s=socket.create_connection((sys.argv[2],6379),timeout=10)\n"
           " out.append((time.perf_counter()-t)*1000);s.close();time.sleep(0.01)\nprint(json.dumps(out))")


def in_node(node: str, command: list[str]) -> subprocess.CompletedProcess[str]:
    shell = node_command(f"chaoslab-{node}", cgroup_procs_files(f"chaoslab/{node}"), shlex.join(command))
    return subprocess.run(["/bin/sh", "-c", shell], capture_output=True, text=True, check=False)


def agent(node: str, *args: str) -> dict:
    command = [PYTHON, "-m", "chaoslab.node.fault_agent", "--node", node, "--state-dir", str(RUN / node / "faults"),
               "--textfile-dir", f"/var/lib/chaoslab/nodes/{node}/textfile", "--supervisor-conf",
               f"/etc/chaoslab/nodes/{node}/supervisord.conf", "--nic", "lab0", *args]
    proc = in_node(node, command)
    if proc.returncode != 0:
        sys.exit(f"fault_agent {' '.join(args)} on {node} failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def connect_ms(samples: int) -> float:
    proc = in_node("worker-1", [PYTHON, "-c", CONNECT, str(samples), REDIS])
    return statistics.median(json.loads(proc.stdout))


def clear_all() -> None:
    for node in ("redis", "worker-1", "worker-2", "monitor"):
        agent(node, "clear")


def delay_table(samples: int, engines: list[str]) -> list[tuple[str, int, float, float]]:
    rows = []
    for engine in engines:
        for delay in (10, 50, 100, 500):
            baseline = connect_ms(samples)
            agent("redis", "network-delay", f"delay={delay}ms", f"engine={engine}", "duration=300s", "nic=lab0",
                  f"peers={WORKER_1}")
            added = connect_ms(samples if delay < 500 else max(samples // 3, 5)) - baseline
            clear_all()
            rows.append((engine, delay, added, added - delay))
    return rows


def wait_for(check: Callable[[], bool], timeout: float = 30) -> float:
    deadline = time.time() + timeout
    while not check():
        if time.time() > deadline:
            sys.exit("timed out waiting for the node's state")
        time.sleep(0.01)
    return time.time()


def nfqueue_rules(node: str) -> bool:
    return "CHAOSLAB" in in_node(node, ["iptables", "-S"]).stdout


def lab_qdisc(node: str) -> bool:
    return "c1a0:" in in_node(node, ["tc", "qdisc", "show", "dev", "lab0"]).stdout


def stress_running() -> bool:
    return subprocess.run(["pgrep", "-x", "stress-ng"], capture_output=True, check=False).returncode == 0


def worker_stopped() -> bool:
    out = subprocess.run(["ps", "-eo", "stat,args"], capture_output=True, text=True, check=True).stdout
    return any(line.startswith("T") and "chaoslab.node.worker_app" in line for line in out.splitlines())


def memory_capped() -> bool:
    path = Path("/sys/fs/cgroup/memory/chaoslab/worker-1/memory.limit_in_bytes")
    return path.exists() and int(path.read_text()) < 2**62


def redis_down() -> bool:
    """Redis does not accept connections (from the controller, on the lab bridge)."""
    try:
        socket.create_connection((REDIS, 6379), timeout=0.5).close()
    except OSError:
        return True
    return False


# fault -> (node, agent arguments, "in force" check)
FAULTS: dict[str, tuple[str, list[str], Callable[[], bool]]] = {
    "network-delay": ("redis", ["delay=20ms", "nic=lab0", f"peers={WORKER_1}"], lambda: nfqueue_rules("redis")
                      or lab_qdisc("redis")),
    "network-loss": ("redis", ["loss=10%", "nic=lab0", f"peers={WORKER_1}"], lambda: nfqueue_rules("redis")
                     or lab_qdisc("redis")),
    "network-bandwidth": ("redis", ["rate=50mbit", "nic=lab0", f"peers={WORKER_1}"], lambda: lab_qdisc("redis")),
    "network-partition": ("worker-1", [f"peers={REDIS}"], lambda: nfqueue_rules("worker-1")),
    "cpu-exhaustion": ("worker-1", ["workers=1"], stress_running),
    "memory-exhaustion": ("worker-1", ["bytes=64MiB"], stress_running),
    "memory-limit": ("worker-1", ["limit=3GiB"], memory_capped),
    "worker-pause": ("worker-1", [], worker_stopped),
    "redis-restart": ("redis", ["mode=kill", f"down_for={REDIS_DOWN_FOR}s"], redis_down),
}


def latency(fault: str, seconds: float) -> tuple[float, float]:
    node, args, in_force = FAULTS[fault]
    started = time.time()
    report = agent(node, fault, *args, f"duration={seconds:g}s")
    activated = time.time() - started
    if not in_force():
        sys.exit(f"{fault} is not in force after the agent returned")
    if fault == "redis-restart":  # reverted = accepting connections again after down_for
        return activated, wait_for(lambda: not redis_down()) - (report["detail"]["down_at"] + REDIS_DOWN_FOR)
    state = RUN / node / "faults" / f"{fault}.json"
    healed = wait_for(lambda: not state.exists() and not in_force())
    return activated, healed - report["deadline"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    clear_all()
    netem = agent("redis", "network-delay", "delay=1ms", "nic=lab0", f"peers={WORKER_1}",
                  "duration=300s")["detail"]["engine"] == "netem"
    clear_all()
    engines = ["netem", "nfqueue"] if netem else ["nfqueue"]
    print(f"Delay accuracy (worker-1 -> Redis TCP connect, median of {args.samples}; target ±5 % or ±2 ms)")
    print(f"{'engine':<10}{'requested':>12}{'added':>12}{'error':>10}  ok")
    for engine, delay, added, error in delay_table(args.samples, engines):
        ok = abs(error) <= max(0.05 * delay, 2.0)
        print(f"{engine:<10}{delay:>10} ms{added:>9.2f} ms{error:>+8.2f} ms  {'yes' if ok else 'NO'}")
    print("\nActivation and revert latency on the node (target <= 1 s each)")
    print(f"{'fault':<20}{'activation':>12}{'revert':>10}  ok")
    for fault in FAULTS:
        activated, reverted = latency(fault, 3.0)
        ok = activated <= 1.0 and reverted <= 1.0
        print(f"{fault:<20}{activated:>10.3f} s{reverted:>8.3f} s  {'yes' if ok else 'NO'}")
    clear_all()


if __name__ == "__main__":
    main()
