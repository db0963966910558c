"""The node side of the lab's faults: check, act, record, and heal by a deadline that lives on the node.

Run on the target node by the fault playbooks::

    python -m chaoslab.node.fault_agent --node redis --state-dir DIR --textfile-dir DIR --events FILE \\
        network-delay delay=20ms duration=30s nic=lab0 peers=198.18.0.101,198.18.0.102

Parameters are the fault's own (chaoslab.fault_params). With ``trigger=<condition>`` (chaoslab.triggers) the
agent arms the fault and applies it when the condition holds on the node (``--ledger``: the worker's task ledger).
While a fault is active it has a state file ``<state-dir>/<fault>.json`` (pid, start, deadline, parameters, what to
revert) and the series ``chaoslab_fault_active{fault="...",target="<node>"} 1`` in node_exporter's textfile
directory. It prints one JSON line: the fault, its start and deadline, and what it did (e.g. the engine), and appends
to the node's event ledger (``--events``) when the fault took effect and when it was reverted.
``clear`` ends every fault on the node and removes whatever lab qdisc, chain, stress process,
memory cap or frozen worker it finds.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from chaoslab.fault_kinds import KINDS
from chaoslab.fault_params import check
from chaoslab.node import (
    config,
    fault_network,
    fault_process,
    fault_redis_disk,
    fault_redis_fsync,
    fault_service,
    fault_trigger,
)
from chaoslab.node.fault_record import Detail, Fault, FaultRecord, Node, process_start, run_fault


def node_code(path: str) -> Callable[..., Any]:
    """A fault's node code as its declaration names it: ``module:function``, the module in chaoslab.node unless
    the name is dotted (a fault kind declared outside the project's own, e.g. in a test)."""
    module, _, function = path.partition(":")
    return getattr(importlib.import_module(module if "." in module else f"chaoslab.node.{module}"), function)


# The faults that take a service down, and the service each takes when its state file does not name it.
RESTARTS = {"redis-restart": lambda: "redis", "broker-restart": fault_service.broker_service}


def build(fault: str, values: dict[str, Any], args: argparse.Namespace) -> Fault:
    """The fault to run, from checked parameters, by the node code its declaration names."""
    node = Node(args.node, args.service_manager, args.supervisor_conf)
    built: Fault = node_code(KINDS[fault].apply)(values, node)
    if KINDS[fault].measure and KINDS[fault].lasts(values) > 0:  # measured in force: a fault that stays a while
        built.measure = node_code(KINDS[fault].measure)(values, node)
    if values.get("trigger") is not None:  # armed: the node's agent waits for the condition before applying it
        broker_url = config.load().broker_url if not values["trigger"].on_worker else ""
        built.armed = fault_trigger.watch(values["trigger"], args.ledger, broker_url)
        built.trigger = str(values["trigger"])
    return built


def revert(fault: str, detail: Detail) -> None:
    """Undo a fault from its state file when no agent holds it (no duration, or the agent died)."""
    if fault in KINDS and KINDS[fault].revert:
        node_code(KINDS[fault].revert)(detail)


def our_agent(pid: object, started: object) -> psutil.Process | None:
    """The fault agent a state file names, if that process still is it: same pid, same start time, a fault agent's
    command line (pids are reused, and the local lab's nodes share the host's process table)."""
    if not isinstance(pid, int) or isinstance(pid, bool):
        return None
    try:
        process = psutil.Process(pid)
        same = started is None or process_start(pid) == started
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
        if agent is None and not state.exists():  # its agent ended it by its deadline meanwhile
            continue
        ended = False
        if agent is not None:
            try:
                agent.terminate()  # the agent reverts its fault and removes its record
                agent.wait(15)
                ended = True
            except psutil.TimeoutExpired:
                with contextlib.suppress(psutil.Error):
                    agent.kill()
            except psutil.Error:  # it ended by itself meanwhile (its deadline): it reverted and wrote its record
                ended = not record.state.exists()
        if not ended and state.stem in RESTARTS:  # its agent died, perhaps while the service was down
            service = (data.get("detail") or {}).get("service") or RESTARTS[state.stem]()
            fault_service.ServiceControl(args.service_manager, str(service), args.supervisor_conf, state.stem).start()
        elif not ended:
            revert(state.stem, data.get("detail") or {})
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
    cleared += fault_redis_disk.clear_filler()
    cleared += fault_redis_fsync.clear_throttle()
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
    parser.add_argument("--ledger", default="", help="the node's task ledger, if it runs a worker (for a trigger)")
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
            result = run_fault(record, fault, KINDS[args.fault].lasts(values))
    except ValueError as err:
        print(f"{err}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
