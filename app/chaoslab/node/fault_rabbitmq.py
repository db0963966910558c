"""RabbitMQ's own flow control as a fault: a resource alarm raised on purpose.

``memory`` lowers the memory high watermark far below what the node uses; ``disk`` raises the free disk limit far
above what the disk has. Either way RabbitMQ raises the alarm and blocks every connection that publishes (consumers
go on), until the limit is put back. The limits in force before are read first and put back at the end, also by
``clear`` from the fault's state file when its agent is gone. Both go through the node's ``rabbitmqctl`` (the
rabbitmq role writes it beside the node's lab configuration, with the node's files and cookie).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from chaoslab.node.fault_record import IN_FORCE_AT, Detail, Fault, Node

CTL_TIMEOUT_S = 60.0
# What each alarm sets: a watermark no node stays under, a free-disk limit no disk has.
ALARM_LIMITS = {"memory": "0.0000001", "disk": "1000000GB"}
# Erlang expressions that read the limits in force (rabbitmqctl eval), and how each is put back.
READ = {"memory": "vm_memory_monitor:get_vm_memory_high_watermark().",
        "disk": "rabbit_disk_monitor:get_disk_free_limit()."}


def rabbitmqctl(*args: str) -> str:
    """The node's rabbitmqctl; its output (ValueError with its last line when it fails)."""
    etc = Path(os.environ.get("CHAOSLAB_CONFIG", "/etc/chaoslab/chaoslab.yml")).parent
    proc = subprocess.run([str(etc / "rabbitmqctl"), "-q", *args], capture_output=True, text=True, check=False,
                          timeout=CTL_TIMEOUT_S)
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise ValueError(f"rabbitmqctl {args[0]}: {last}")
    return proc.stdout.strip()


def alarms() -> list[str]:
    """The resource alarms RabbitMQ has raised now (``memory``, ``disk``), as it says itself."""
    out = rabbitmqctl("eval", "[Resource || {{resource_limit, Resource, _}, _} <- rabbit_alarm:get_alarms()].")
    return sorted(word for word in ("memory", "disk") if word in out)


def _put_back(alarm: str, previous: str) -> None:
    if alarm == "memory":
        if previous.startswith("{absolute"):
            rabbitmqctl("set_vm_memory_high_watermark", "absolute", previous.strip("{}").split(",")[1].strip())
        else:
            rabbitmqctl("set_vm_memory_high_watermark", previous)
    else:
        rabbitmqctl("set_disk_free_limit", previous)


def rabbitmq_alarm(values: dict[str, Any], node: Node) -> Fault:
    from chaoslab.node.fault_service import broker_service

    alarm = str(values["alarm"])
    if broker_service() != "rabbitmq":
        raise ValueError(f"rabbitmq-alarm: the lab's broker on {node.name} is Redis, not RabbitMQ")
    previous = rabbitmqctl("eval", READ[alarm])

    def apply() -> Detail:
        if alarm == "memory":
            rabbitmqctl("set_vm_memory_high_watermark", ALARM_LIMITS[alarm])
        else:
            rabbitmqctl("set_disk_free_limit", ALARM_LIMITS[alarm])
        return {"alarm": alarm, "previous": previous, "limit": ALARM_LIMITS[alarm], IN_FORCE_AT: time.time()}

    return Fault("rabbitmq-alarm", {"alarm": alarm}, apply, revert_rabbitmq_alarm)


def revert_rabbitmq_alarm(detail: Detail) -> None:
    """Put the limit back (a RabbitMQ restarted since has its configured limits again)."""
    alarm, previous = str(detail.get("alarm", "")), str(detail.get("previous", ""))
    if alarm in READ and previous:
        try:
            _put_back(alarm, previous)
        except (ValueError, OSError, subprocess.TimeoutExpired):  # RabbitMQ down or restarted meanwhile
            return
