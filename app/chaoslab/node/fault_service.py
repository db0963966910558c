"""Restart a lab service (Redis) through the node's service manager: gracefully, or SIGKILL and stay down.

``graceful`` stops it the way the service manager does (SIGTERM: Redis writes its AOF/RDB and
closes), and starts it again after ``down_for``. ``kill`` SIGKILLs it, so that whatever Redis had
not persisted is gone, and keeps it down for ``down_for``: the process is frozen first, the
manager is asked to stop it (so it does not restart it at once), then it is killed before it can
handle the manager's SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from typing import Any

from chaoslab.node.fault_record import HEALED_AT, IN_FORCE_AT, Detail, Fault, Node, Stop, hold_until

CTL_TIMEOUT_S = 60.0
"""The longest a call of the service manager may take (supervisorctl, systemctl)."""


class ServiceControl:
    """One service of the node under supervisor (the local lab) or systemd."""

    def __init__(self, manager: str, name: str, supervisor_conf: str = "") -> None:
        self.manager = manager
        self.name = name
        self.supervisor_conf = supervisor_conf

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
                raise ValueError(f"redis-restart: supervisor knows no service {self.name}: {out.strip()}")
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

    def kill_and_keep_down(self) -> int:
        """SIGKILL the main process so that the manager does not restart it; returns the killed pid."""
        status, pid = self.state()
        if status != "running" or pid is None:
            raise ValueError(f"redis-restart: {self.name} is {status}, not running")
        os.kill(pid, signal.SIGSTOP)  # no more work, and the manager's SIGTERM stays pending
        stopping = subprocess.Popen(self._ctl("stop", *(["--no-block"] if self.manager == "systemd" else [])),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.wait_for({"stopping", "stopped"}, 10)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stopping.wait(30)
        self.wait_for({"stopped"}, 30)
        return pid


def redis_restart(values: dict[str, Any], node: Node) -> Fault:
    service = ServiceControl(node.service_manager, "redis", node.supervisor_conf)
    mode, down_for = str(values["mode"]), float(values["down_for"])
    status, _ = service.state()
    if status != "running":
        raise ValueError(f"redis-restart: {service.name} is {status}, not running")

    detail: Detail = {}

    def apply() -> Detail:
        started = time.time()
        if mode == "kill":
            killed = service.kill_and_keep_down()
        else:
            killed = None
            service.stop()
        detail.update({"mode": mode, "killed": killed, "down_at": started, "down_for": down_for,
                       IN_FORCE_AT: started})
        if down_for <= 0:
            service.start()
            detail[HEALED_AT] = time.time()
        return detail

    def hold(deadline: float | None, stop: Stop) -> None:
        if down_for > 0:
            hold_until(time.time() + down_for, stop)
            service.start()
            detail[HEALED_AT] = time.time()  # the fault's effect ends when Redis runs again
        hold_until(deadline, stop)

    def revert(_detail: Detail) -> None:
        service.start()

    return Fault("redis-restart", {"mode": mode, "down_for": down_for}, apply, revert, hold)
