"""What the HTTP API does to the lab, through the same playbooks, agent records and runner a user runs.

No fault is implemented here: starting one runs ``faults/<kind>.yml``, reverting runs ``faults/clear.yml``,
active faults are the agents' state files read from every node, runs are ``chaoslab run`` processes.
Bad input raises :class:`RequestError` with the one-line message the playbook would print.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from chaoslab.analysis import run_dir
from chaoslab.experiment.ansible_runner import (
    AnsibleError,
    PlaybookFailed,
    adhoc_json,
    ansible_env,
    playbook,
    project_root,
    run_fault,
    tool,
    unwrap_unsafe,
)
from chaoslab.experiment.lab_lock import LabBusy, LabLock
from chaoslab.experiment.runner import new_run_id
from chaoslab.experiment.scenario import ScenarioError, load_scenario
from chaoslab.fault_kinds import KINDS
from chaoslab.fault_params import check, request
from chaoslab.inputs import InputError, groups_of
from chaoslab.inputs import name as node_name

FAULT_TIMEOUT_S = 300.0
INVENTORY_TIMEOUT_S = 60.0
INVENTORY_CACHE_S = 30.0


class RequestError(ValueError):
    """A request the lab refuses, before anything changes (HTTP 4xx)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class LabOperations:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or project_root()
        self.runs: dict[str, subprocess.Popen[bytes]] = {}
        self._starting = threading.Lock()
        self._groups: tuple[float, dict[str, list[str]]] | None = None

    # -- faults ---------------------------------------------------------------------------------

    def fault_kinds(self) -> list[dict[str, Any]]:
        """Every fault with its parameters, from the fault kinds' declarations."""
        return [kind.schema() for kind in KINDS.values()]

    def groups(self) -> dict[str, list[str]]:
        """Every inventory group with its hosts, in order (read again at most every INVENTORY_CACHE_S)."""
        now = time.monotonic()
        if self._groups is None or now - self._groups[0] > INVENTORY_CACHE_S:
            proc = subprocess.run([tool("ansible-inventory"), "--list"], cwd=self.root, env=ansible_env(),
                                  capture_output=True, text=True, timeout=INVENTORY_TIMEOUT_S, check=False)
            if proc.returncode != 0:
                raise RequestError("cannot read the inventory", 503)
            self._groups = (now, groups_of(json.loads(proc.stdout, object_hook=unwrap_unsafe)))
        return self._groups[1]

    def _locked(self, what: str) -> LabLock:
        """The lab's lock for one operation (409 while a run or another fault holds it)."""
        lock = LabLock(self.root)
        try:
            lock.acquire(what)
        except LabBusy as busy:
            raise RequestError(str(busy), 409) from None
        return lock

    def start_fault(self, fault: str, target: str | None, params: dict[str, Any], duration: str) -> list[dict]:
        if fault not in KINDS:
            raise RequestError(f"unknown fault {fault!r}", 404)
        given = {**params, "duration": duration}
        try:
            if not check(fault, given, resolved=False)["duration"]:  # the parameters alone, before the inventory
                raise ValueError(f"{fault}: duration must be above 0 (a fault started through the API heals by "
                                 "itself)")
            groups = self.groups()
            request(fault, target, given, groups)  # target and peers name nodes, before the lab's lock is taken
        except ValueError as error:
            raise RequestError(str(error), 422) from None
        with self._locked(f"API: {fault}") as lock, tempfile.TemporaryDirectory(prefix="chaoslab-api-") as reports:
            try:
                return run_fault(fault, target, given, groups, Path(reports), quiet=True, env=lock.env(),
                                 timeout=FAULT_TIMEOUT_S)
            except PlaybookFailed as failed:
                raise RequestError(failed.reason, 422) from None

    def active_faults(self) -> list[dict[str, Any]]:
        """Every fault the nodes' agents record as active (state files), with its deadline."""
        command = ("for f in {{ lab_run_dir }}/faults/*.json; do [ -f \"$f\" ] && cat \"$f\" && echo; done; true")
        try:
            results = adhoc_json("all", "ansible.builtin.shell", command, timeout=120)
        except AnsibleError as error:
            raise RequestError(str(error), 503) from None
        active = []
        for node, result in sorted(results.items()):
            for line in str(result.get("stdout", "")).splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                active.append({"node": node, "fault": record.get("fault"), "start": record.get("start"),
                               "deadline": record.get("deadline"), "params": record.get("params", {}),
                               "engine": (record.get("detail") or {}).get("engine")})
        return active

    def revert(self, node: str | None = None, fault: str | None = None) -> None:
        """Revert one fault on one node, or (no arguments) every fault on every node."""
        extra: dict[str, Any] = {}
        if node is not None:
            try:
                known = node_name(node, "node") == node and node in self.groups().get("all", [])
            except InputError:
                known = False
            if not known:
                raise RequestError(f"clear: node {node!r} is not in the inventory", 404)
            extra["target"] = node
        if fault is not None:
            if fault not in KINDS:
                raise RequestError(f"unknown fault {fault!r}", 404)
            extra["only"] = fault
        with self._locked("API: clear") as lock:
            proc = playbook("faults/clear.yml", extra, quiet=True, check=False, timeout=FAULT_TIMEOUT_S,
                            env=lock.env())
        if proc.returncode != 0:
            raise RequestError(PlaybookFailed("faults/clear.yml", proc).reason, 503)

    # -- runs -----------------------------------------------------------------------------------

    @property
    def results(self) -> Path:
        return self.root / "experiments" / "results"

    def start_run(self, scenario: str) -> dict[str, Any]:
        """Start ``chaoslab run experiments/<scenario>``; the run holds the lab's lock from before its process starts
        (the API takes it and hands it over), so a second run or a fault meanwhile is refused (409)."""
        stem = scenario.removesuffix(".yml") if isinstance(scenario, str) else scenario
        try:
            path = self.root / "experiments" / f"{node_name(stem, 'scenario')}.yml"
        except InputError:
            path = None
        if path is None or not path.is_file():
            raise RequestError(f"no scenario {str(scenario)[:80]!r} in experiments/", 404)
        try:
            load_scenario(path, self.root)
        except ScenarioError as error:
            raise RequestError(str(error), 422) from None
        with self._starting:
            lock = self._locked(f"API: run {stem}")
            run_id = f"{new_run_id(stem)}-{secrets.token_hex(2)}"
            fd, env = lock.hand_over()
            command = [tool("chaoslab"), "run", str(path), "--results", str(self.results), "--run-id", run_id]
            try:
                proc = subprocess.Popen(command, cwd=self.root, env=ansible_env(env), pass_fds=(fd,),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            finally:
                lock.let_go()
            self.runs[run_id] = proc
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if run_dir.has_run(self.results / run_id):
                return {"run_id": run_id, "scenario": f"{stem}.yml"}
            time.sleep(0.2)
        if run_dir.has_run(self.results / run_id):
            return {"run_id": run_id, "scenario": f"{stem}.yml"}
        raise RequestError(f"the run of {scenario} did not start (exit {proc.poll()})", 503)

    def _run_ids(self) -> list[str]:
        if not self.results.is_dir():
            return []
        return sorted(path.parent.name for path in self.results.glob(f"*/{run_dir.RUN_FILE}"))

    def list_runs(self) -> list[dict[str, Any]]:
        return [self.run(run_id) for run_id in self._run_ids()]

    def _run_dir(self, run_id: str) -> Path:
        try:
            node_name(run_id, "run")
        except InputError:
            raise RequestError(f"no run {run_id[:80]!r}", 404) from None
        path = self.results / run_id
        if not run_dir.has_run(path):
            raise RequestError(f"no run {run_id!r}", 404)
        return path

    def run(self, run_id: str) -> dict[str, Any]:
        path = self._run_dir(run_id)
        run = run_dir.read_run(path) or {}
        keep = ("run_id", "scenario", "status", "started", "ended", "faults")
        summary = run_dir.read_summary(path)
        data: dict[str, Any] = {key: run.get(key) for key in keep}
        if summary is not None:
            data["summary"] = {"classes": summary.get("classes"), "causes": summary.get("causes"),
                               "delivery": summary.get("delivery")}
        data["running"] = run_id in self.runs and self.runs[run_id].poll() is None
        data["report"] = run_dir.report_path(path).is_file()
        return data

    def report(self, run_id: str) -> Path:
        path = run_dir.report_path(self._run_dir(run_id))
        if not path.is_file():
            raise RequestError(f"run '{run_id}' has no report yet", 404)
        return path

    def stop_run(self, run_id: str) -> None:
        self._run_dir(run_id)
        proc = self.runs.get(run_id)
        if proc is None or proc.poll() is not None:
            raise RequestError(f"run '{run_id}' is not running", 409)
        os.kill(proc.pid, signal.SIGINT)  # the runner reverts the fault and marks the run aborted
        proc.wait(300)
