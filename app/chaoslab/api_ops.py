"""What the HTTP API does to the lab, through the same playbooks, agent records and runner a user runs.

No fault is implemented here: starting one runs ``faults/<kind>.yml``, reverting runs ``faults/clear.yml``,
active faults are the agents' state files read from every node, runs are ``chaoslab run`` processes.
Bad input raises :class:`RequestError` with the one-line message the playbook would print.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from chaoslab.ansible_runner import AnsibleError, adhoc_json, ansible_env, playbook, project_root, tool
from chaoslab.fault_params import PARAMS, check, user_params
from chaoslab.scenario import FAULT_SPEC, ScenarioError, load_scenario


class RequestError(ValueError):
    """A request the lab refuses, before anything changes (HTTP 4xx)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _fatal(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (proc.stdout or "").splitlines() if line.startswith("fatal:")]
    if not lines:
        return f"failed (exit {proc.returncode})"
    return lines[0].split("]: ", 1)[-1]


class LabOperations:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or project_root()
        self.runs: dict[str, subprocess.Popen[bytes]] = {}

    # -- faults ---------------------------------------------------------------------------------

    def fault_kinds(self) -> list[dict[str, Any]]:
        """Every fault with its parameters (from the role's argument specs, the playbooks' own)."""
        specs = yaml.safe_load((self.root / FAULT_SPEC).read_text(encoding="utf-8"))["argument_specs"]
        kinds = []
        for fault in PARAMS:
            if fault == "clear":
                continue
            entry = specs[fault.replace("-", "_")]
            options = entry.get("options") or {}
            params = {}
            for name in user_params(fault):
                spec = options.get(f"fault_{name}", {})
                params[name] = {key: spec[key] for key in ("type", "default", "required", "choices", "description")
                                if key in spec}
            kinds.append({"name": fault, "description": entry.get("short_description", ""), "parameters": params})
        return kinds

    def targets(self, pattern: str) -> list[str]:
        """The inventory's nodes matching ``pattern`` (Ansible's own pattern rules)."""
        proc = subprocess.run([tool("ansible"), pattern, "--list-hosts"], cwd=self.root, env=ansible_env(),
                              capture_output=True, text=True, timeout=60, check=False)
        hosts = [line.strip() for line in proc.stdout.splitlines()[1:] if line.strip()]
        return hosts if proc.returncode == 0 else []

    def start_fault(self, fault: str, target: str | None, params: dict[str, Any], duration: str) -> list[dict]:
        if fault not in PARAMS or fault == "clear":
            raise RequestError(f"unknown fault '{fault}'", 404)
        given = {key: value for key, value in params.items()}
        given["duration"] = duration
        try:
            values = check(fault, given, resolved=False)
        except ValueError as error:
            raise RequestError(str(error), 422) from None
        if values["duration"] <= 0:
            raise RequestError(f"{fault}: duration must be above 0 (a fault started through the API heals by itself)",
                               422)
        if target is not None and not self.targets(target):
            raise RequestError(f"{fault}: target '{target}' matches no node of the inventory", 422)
        extra: dict[str, Any] = {**given, **({"target": target} if target else {})}
        with tempfile.TemporaryDirectory(prefix="chaoslab-api-") as reports:
            extra["report"] = reports
            proc = playbook(f"faults/{fault}.yml", extra, quiet=True, check=False)
            if proc.returncode != 0:
                raise RequestError(_fatal(proc), 422)
            return [json.loads(path.read_text(encoding="utf-8")) for path in sorted(Path(reports).glob("*.json"))]

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
            if node not in self.targets("all"):
                raise RequestError(f"clear: node '{node}' is not in the inventory", 404)
            extra["target"] = node
        if fault is not None:
            if fault not in PARAMS or fault == "clear":
                raise RequestError(f"unknown fault '{fault}'", 404)
            extra["only"] = fault
        proc = playbook("faults/clear.yml", extra, quiet=True, check=False)
        if proc.returncode != 0:
            raise RequestError(_fatal(proc), 503)

    # -- runs -----------------------------------------------------------------------------------

    @property
    def results(self) -> Path:
        return self.root / "experiments" / "results"

    def start_run(self, scenario: str) -> dict[str, Any]:
        path = (self.root / "experiments" / scenario).resolve()
        if path.parent != (self.root / "experiments").resolve() or path.suffix != ".yml" or not path.is_file():
            raise RequestError(f"no scenario '{scenario}' in experiments/", 404)
        try:
            load_scenario(path, self.root)
        except ScenarioError as error:
            raise RequestError(str(error), 422) from None
        if any(proc.poll() is None for proc in self.runs.values()):
            raise RequestError("a run is already in progress (one at a time: they share the lab)", 409)
        before = set(self._run_ids())
        proc = subprocess.Popen([tool("chaoslab"), "run", str(path), "--results", str(self.results)], cwd=self.root,
                                env=ansible_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            new = set(self._run_ids()) - before
            if new:
                run_id = sorted(new)[-1]
                self.runs[run_id] = proc
                return {"run_id": run_id, "scenario": scenario}
            time.sleep(0.2)
        raise RequestError(f"the run of {scenario} did not start (exit {proc.poll()})", 503)

    def _run_ids(self) -> list[str]:
        return sorted(path.parent.name for path in self.results.glob("*/run.json")) if self.results.is_dir() else []

    def list_runs(self) -> list[dict[str, Any]]:
        return [self.run(run_id) for run_id in self._run_ids()]

    def _run_dir(self, run_id: str) -> Path:
        path = self.results / run_id
        if "/" in run_id or run_id.startswith(".") or not (path / "run.json").is_file():
            raise RequestError(f"no run '{run_id}'", 404)
        return path

    def run(self, run_id: str) -> dict[str, Any]:
        path = self._run_dir(run_id)
        run = json.loads((path / "run.json").read_text(encoding="utf-8"))
        keep = ("run_id", "scenario", "status", "started", "ended", "faults")
        summary = path / "summary.json"
        data: dict[str, Any] = {key: run.get(key) for key in keep}
        if summary.is_file():
            figures = json.loads(summary.read_text(encoding="utf-8"))
            data["summary"] = {"classes": figures.get("classes"), "causes": figures.get("causes"),
                               "delivery": figures.get("delivery")}
        data["running"] = run_id in self.runs and self.runs[run_id].poll() is None
        data["report"] = (path / "report.html").is_file()
        return data

    def report(self, run_id: str) -> Path:
        path = self._run_dir(run_id) / "report.html"
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
