"""The node side of the lab's faults: check, act, record, and heal by a deadline that lives on the node.

Run on the target node by the fault playbooks::

    python -m chaoslab.node.fault_agent --node redis --state-dir DIR --textfile-dir DIR --events FILE \\
        network-delay delay=20ms duration=30s nic=lab0 peers=198.18.0.101,198.18.0.102

Parameters are the fault's own (chaoslab.fault_params). While a fault is active it has a state
file ``<state-dir>/<fault>.json`` (pid, start, deadline, parameters, what to revert) and the series
``chaoslab_fault_active{fault="...",target="<node>"} 1`` in node_exporter's textfile directory.
It prints one JSON line: the fault, its start and deadline, and what it did (e.g. the engine), and appends
to the node's event ledger (``--events``) when the fault took effect and when it was reverted.
``clear`` ends every fault on the node and removes whatever lab qdisc, chain, stress process,
memory cap or frozen worker it finds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from chaoslab.fault_params import check
from chaoslab.node import fault_memory, fault_network, fault_process, fault_service
from chaoslab.node.fault_record import Detail, Fault, FaultRecord, run_fault


def build(fault: str, values: dict[str, Any], args: argparse.Namespace) -> Fault:
    """The fault to run, from checked parameters."""
    if fault == "worker-kill":
        return fault_process.worker_kill(values["mode"], values["every"])
    if fault == "worker-pause":
        return fault_process.worker_pause()
    if fault == "cpu-exhaustion":
        return fault_process.cpu_exhaustion(values["workers"], values["load"], values["duration"])
    if fault == "memory-exhaustion":
        return fault_process.memory_exhaustion(values["bytes"], values["workers"], values["duration"])
    if fault == "memory-limit":
        return fault_memory.memory_limit(values["limit"], args.node)
    if fault == "redis-restart":
        service = fault_service.ServiceControl(args.service_manager, "redis", args.supervisor_conf)
        return fault_service.redis_restart(service, values["mode"], values["down_for"])
    builders: dict[str, Callable[[dict[str, Any]], Fault]] = {
        "network-delay": fault_network.network_delay, "network-loss": fault_network.network_loss,
        "network-bandwidth": fault_network.network_bandwidth, "network-partition": fault_network.network_partition,
    }
    return builders[fault](values)


def fault_duration(fault: str, values: dict[str, Any]) -> float:
    if fault == "redis-restart":  # always detached, so that Redis is started again even if the controller dies
        return max(values["duration"], values["down_for"], 0.001)
    return float(values.get("duration") or 0.0)


# How clear undoes a fault from its state file when no agent holds it (no duration, or the agent died).
REVERTS: dict[str, Callable[[Detail], object]] = {
    "worker-pause": fault_process.thaw_workers,
    "cpu-exhaustion": fault_process.stop_stress,
    "memory-exhaustion": fault_process.stop_stress,
    "memory-limit": fault_memory.revert_memory_limit,
    "network-delay": fault_network.revert_network,
    "network-loss": fault_network.revert_network,
    "network-bandwidth": fault_network.revert_network,
    "network-partition": fault_network.revert_partition,
}


def our_agent(pid: object, started: object) -> psutil.Process | None:
    """The fault agent a state file names, if that process still is it: same pid, same start time, a fault agent's
    command line (pids are reused, and the local lab's nodes share the host's process table)."""
    if not isinstance(pid, int) or isinstance(pid, bool):
        return None
    try:
        process = psutil.Process(pid)
        same = started is None or round(process.create_time(), 2) == started
        return process if same and "chaoslab.node.fault_agent" in " ".join(process.cmdline()) else None
    except psutil.Error:
        return None


def clear(args: argparse.Namespace, only: str = "") -> dict[str, object]:
    """End every fault on this node (or only the fault ``only``); then, for all, remove what a lost agent left."""
    cleared: list[str] = []
    for state in sorted(Path(args.state_dir).glob(f"{only or '*'}.json")):
        record = FaultRecord(state.stem, args.node, args.state_dir, args.textfile_dir, args.events)
        data = record.read() or {}
        agent = our_agent(data.get("pid"), data.get("pid_start"))
        ended = False
        if agent is not None:
            try:
                agent.terminate()  # the agent reverts its fault and removes its record
                agent.wait(15)
                ended = True
            except psutil.TimeoutExpired:
                agent.kill()
            except psutil.Error:
                pass
        if not ended and state.stem == "redis-restart":  # its agent died, perhaps while Redis was down
            fault_service.ServiceControl(args.service_manager, "redis", args.supervisor_conf).start()
        elif not ended and state.stem in REVERTS:
            REVERTS[state.stem](data.get("detail") or {})
        if not ended:  # an agent that ended wrote its own record of when it reverted
            record.reverted(time.time(), "clear")
        record.end()
        cleared.append(state.stem)
    if only:
        return {"cleared": cleared}
    fault_process.thaw_workers()
    if fault_process.stop_stress():
        cleared.append("stress-ng")
    cleared += fault_network.clear_network(args.nic)
    return {"cleared": cleared}


def parse_params(items: list[str]) -> dict[str, str]:
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"parameter '{item}' is not name=value")
        params[name] = value
    return params


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chaoslab.node.fault_agent", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--node", required=True, help="the node's name, for the records")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--textfile-dir", default="", help="node_exporter textfile collector directory")
    parser.add_argument("--service-manager", default="supervisor", choices=["supervisor", "systemd"])
    parser.add_argument("--supervisor-conf", default="", help="the node's supervisord.conf")
    parser.add_argument("--nic", default="", help="the node's lab NIC (for clear)")
    parser.add_argument("--events", default="", help="the node's event ledger (fault applied and reverted)")
    parser.add_argument("fault", help="a fault (network-delay, ...) or clear")
    parser.add_argument("params", nargs="*", help="name=value")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.fault == "clear":
            result: dict[str, object] = clear(args, check("clear", parse_params(args.params))["only"])
        else:
            values = check(args.fault, parse_params(args.params))
            fault = build(args.fault, values, args)
            record = FaultRecord(args.fault, args.node, args.state_dir, args.textfile_dir, args.events)
            result = run_fault(record, fault, fault_duration(args.fault, values))
    except ValueError as err:
        print(f"{err}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
