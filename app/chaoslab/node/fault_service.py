"""Restart a lab service (Redis, or the lab's broker) through the node's service manager: gracefully, or SIGKILL
and stay down.

``graceful`` stops it the way the service manager does (SIGTERM: Redis writes its AOF/RDB and closes, RabbitMQ
stops its queues), and starts it again after ``down_for``. ``kill`` SIGKILLs it, so that whatever it had not
persisted is gone, and keeps it down for ``down_for``. Every process of the service is frozen first (its main process
and all under it: RabbitMQ runs its Erlang VM under a script). Under supervisor the manager is then asked to stop it
(so that it does not restart it at once) and all are killed before any can handle its SIGTERM; systemd follows its
stop signal with SIGCONT, so there they are killed first and the unit is stopped at once, which cancels the restart
systemd schedules.
``redis-restart`` restarts Redis whatever the broker (on a RabbitMQ lab: the result backend); ``broker-restart``
restarts the lab's broker, Redis or RabbitMQ.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import psutil

from chaoslab.node.fault_record import HEALED_AT, IN_FORCE_AT, Detail, Fault, Node, Stop, hold_until

CTL_TIMEOUT_S = 60.0
"""The longest a call of the service manager may take (supervisorctl, systemctl)."""


class ServiceControl:
    """One service of the node under supervisor (the local lab) or systemd."""

    def __init__(self, manager: str, name: str, supervisor_conf: str = "", fault: str = "redis-restart") -> None:
        self.manager = manager
        self.name = name
        self.supervisor_conf = supervisor_conf
        self.fault = fault  # the fault that acts on it, for its messages

    def _ctl(self, *args: str) -> list[str]:
        if self.manager == "supervisor":
            return ["supervisorctl", "-c", self.supervisor_conf, *args, self.name]
        return ["systemctl", *args, f"chaoslab-{self.name}.service"]

    def state(self) -> tuple[str, int | None]:
        """("running" | "stopping" | "stopped" | "starting" | ..., main pid or None)."""
        if self.manager == "supervisor":
            out = subprocess.run(self._ctl("status"), capture_output=True, text=True, check=False,
                                 timeout=CTL_TIMEOUT_S).stdout
            match = re.search(r"\s(RUNNING|STOPPING|STOPPED|STARTING|BACKOFF|EXITED|FATAL)\s+(?:pid (\d+))?", out)
            if match is None:
                raise ValueError(f"{self.fault}: supervisor knows no service {self.name}: {out.strip()}")
            return match[1].lower(), int(match[2]) if match[2] else None
        out = subprocess.run(self._ctl("show", "-p", "ActiveState", "-p", "MainPID"), capture_output=True,
                             text=True, check=False, timeout=CTL_TIMEOUT_S).stdout
        values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        states = {"active": "running", "deactivating": "stopping", "inactive": "stopped", "failed": "stopped",
                  "activating": "starting"}
        pid = int(values.get("MainPID", "0") or 0)
        return states.get(values.get("ActiveState", ""), "unknown"), pid or None

    def wait_for(self, states: set[str], timeout: float) -> tuple[str, int | None]:
        deadline = time.monotonic() + timeout
        while (current := self.state())[0] not in states:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} is {current[0]}, not {'/'.join(sorted(states))}, after {timeout:g}s")
            time.sleep(0.05)
        return current

    def start(self) -> None:
        if self.state()[0] != "running":
            subprocess.run(self._ctl("start"), capture_output=True, text=True, check=False, timeout=CTL_TIMEOUT_S)
            self.wait_for({"running"}, 30)

    def stop(self) -> None:
        subprocess.run(self._ctl("stop"), capture_output=True, text=True, check=True, timeout=CTL_TIMEOUT_S)

    def kill_and_keep_down(self) -> list[int]:
        """SIGKILL every process of the service (its main process and all under it: RabbitMQ's rabbitmq-server script
        and its Erlang VM alike), so that none shuts down, and keep it down; returns the killed pids, the main one
        first."""
        status, pid = self.state()
        if status != "running" or pid is None:
            raise ValueError(f"{self.fault}: {self.name} is {status}, not running")
        frozen = freeze_tree(pid)  # none runs on: none can act on a signal, write more, or start another process
        if self.manager == "systemd":
            # systemd follows its stop signal with SIGCONT, which would let the service run its shutdown: kill
            # first, then stop the unit, which cancels the restart systemd has scheduled (RestartSec) for it.
            kill_all(frozen)
            stopping = subprocess.Popen(self._ctl("stop", "--no-block"), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        else:
            # supervisor restarts an exited process at once: ask it to stop first (its SIGTERM stays pending in the
            # frozen processes), then kill.
            stopping = subprocess.Popen(self._ctl("stop"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                self.wait_for({"stopping", "stopped"}, 10)
            finally:
                kill_all(frozen)
        stopping.wait(30)
        self.wait_for({"stopped"}, 30)
        return [proc.pid for proc in frozen]


def freeze_tree(pid: int) -> list[psutil.Process]:
    """SIGSTOP process *pid* and every process under it, *pid* first; the frozen processes. A process's children are
    listed once it is stopped, so that any it started before its stop are found and it can start no more."""
    frozen: dict[int, psutil.Process] = {}
    pending = [psutil.Process(pid)]
    while pending:
        stopped = []
        for proc in pending:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGSTOP)
                frozen[proc.pid] = proc
                stopped.append(proc)
        pending = [child for proc in stopped for child in _children(proc) if child.pid not in frozen]
    return list(frozen.values())


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children()
    except psutil.NoSuchProcess:
        return []


def kill_all(processes: list[psutil.Process]) -> None:
    """SIGKILL each of *processes* still alive (psutil checks that a pid is still the same process)."""
    for proc in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGKILL)


def broker_service() -> str:
    """The service of the lab's broker on its node, as the node's lab configuration names the broker: rabbitmq on a
    RabbitMQ lab, else redis."""
    from chaoslab import brokers
    from chaoslab.node import config

    return "rabbitmq" if brokers.of_url(config.load().broker_url) == "rabbitmq" else "redis"


def redis_restart(values: dict[str, Any], node: Node) -> Fault:
    return service_restart("redis-restart", "redis", values, node)


def broker_restart(values: dict[str, Any], node: Node) -> Fault:
    name = broker_service()
    return service_restart("broker-restart", name, values, node, _accepting() if name == "rabbitmq" else None)


READY_WITHIN_S = 300.0
"""How long a restarted service may take to serve clients again: the fault waits this long for it, and its
measurement watches this long for the first answer. Redis answers within a second; RabbitMQ boots in seconds on a
host, in 77 s on a software-emulated VM (measured), longer with a large message store to recover (the rabbitmq
role's ``rabbitmq_start_timeout`` is also 300 s)."""


def _accepting() -> Callable[[], bool]:
    """Whether the broker of the node's lab configuration accepts TCP connections on its port: RabbitMQ opens its
    listener once it has booted, long after its service manager reports it running."""
    import socket
    import urllib.parse

    from chaoslab.node import config

    url = urllib.parse.urlsplit(config.load().broker_url)
    address = (url.hostname or "127.0.0.1", url.port or 5672)

    def accepting() -> bool:
        try:
            socket.create_connection(address, timeout=0.5).close()
        except OSError:
            return False
        return True

    return accepting


def service_restart(fault: str, name: str, values: dict[str, Any], node: Node,
                    ready: Callable[[], bool] | None = None) -> Fault:
    """The restart of service *name* as fault *fault*: its detail names the service, so that clearing the fault
    after its agent died starts the right one. Healed once the service runs again and, with *ready*, once ready says
    it serves clients."""
    service = ServiceControl(node.service_manager, name, node.supervisor_conf, fault)
    mode, down_for = str(values["mode"]), float(values["down_for"])
    status, _ = service.state()
    if status != "running":
        raise ValueError(f"{fault}: {service.name} is {status}, not running")

    detail: Detail = {}

    def start() -> None:
        service.start()
        deadline = time.monotonic() + READY_WITHIN_S
        while ready is not None and not ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        detail[HEALED_AT] = time.time()  # the fault's effect ends when the service serves again

    def apply() -> Detail:
        started = time.time()
        if mode == "kill":
            killed = service.kill_and_keep_down()
        else:
            killed = None
            service.stop()
        detail.update({"mode": mode, "service": name, "killed": killed, "down_at": started, "down_for": down_for,
                       IN_FORCE_AT: started})
        if down_for <= 0:
            start()
        return detail

    def hold(deadline: float | None, stop: Stop) -> None:
        if down_for > 0:
            hold_until(time.time() + down_for, stop)
            start()
        hold_until(deadline, stop)

    def revert(_detail: Detail) -> None:
        service.start()

    return Fault(fault, {"mode": mode, "down_for": down_for}, apply, revert, hold)
