"""Run the project's Ansible playbooks and ad-hoc commands from Python, with the project's ansible.cfg."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from chaoslab.fault_params import request
from chaoslab.inputs import unsafe
from chaoslab.project import find_project

PLAYBOOK_TIMEOUT_S = 3600.0
"""The longest any playbook may run (provisioning VMs under emulation takes minutes, never an hour)."""


class AnsibleError(RuntimeError):
    """An Ansible run failed; the message is the task's own one-line message where there is one."""


class PlaybookFailed(AnsibleError):
    """A playbook failed: the message names the playbook and its first failed task's line (``fatal: [node]: ...``,
    one line from the project's callback); ``reason`` is that task's message alone, else the exit code."""

    def __init__(self, path: str, proc: subprocess.CompletedProcess[str]) -> None:
        lines = [line for line in (proc.stdout or "").splitlines() if line.startswith("fatal:")]
        line = lines[0] if lines else f"failed (exit {proc.returncode})"
        super().__init__(f"{path}: {line}")
        self.reason = line.split("]: ", 1)[-1]


def project_root() -> Path:
    """The project directory (see :func:`chaoslab.project.find_project`)."""
    root = find_project()
    if root is None:
        raise AnsibleError("cannot find the project (a directory with ansible.cfg and playbooks/); set CHAOSLAB_HOME")
    return root


def tool(name: str) -> str:
    """An Ansible command from the venv running this code, else from PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def ansible_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for Ansible commands: the project's ansible.cfg."""
    root = project_root()
    env = dict(os.environ)
    env.setdefault("ANSIBLE_CONFIG", str(root / "ansible.cfg"))
    env.update(extra or {})
    return env


def adhoc_json(pattern: str, module: str, args: str, timeout: float = 600) -> dict[str, dict[str, Any]]:
    """Run an ad-hoc module on ``pattern``; return each host's result (through ansible's --tree output)."""
    with tempfile.TemporaryDirectory(prefix="chaoslab-adhoc-") as tree:
        proc = subprocess.run(
            [tool("ansible"), pattern, "-m", module, "-a", args, "--tree", tree],
            cwd=project_root(), env=ansible_env(), capture_output=True, text=True, timeout=timeout, check=False,
        )
        hosts = {entry.name: json.loads(entry.read_text(encoding="utf-8")) for entry in Path(tree).iterdir()}
    if not hosts:
        last = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["no output"])[-1]
        raise AnsibleError(f"ansible {pattern}: {last}")
    return hosts


def unwrap_unsafe(obj: dict[str, Any]) -> Any:
    """json object_hook: ansible-inventory writes plugin-made strings as {"__ansible_unsafe": value}."""
    return obj["__ansible_unsafe"] if set(obj) == {"__ansible_unsafe"} else obj


def run_fault(fault: str, target: str | None, params: dict[str, Any], groups: dict[str, list[str]],
              report_dir: Path, quiet: bool = False, env: dict[str, str] | None = None,
              timeout: float = PLAYBOOK_TIMEOUT_S) -> list[dict[str, Any]]:
    """Start a fault through its playbook faults/<fault>.yml, as the runner and the API both do: the parameters
    parsed and passed on in canonical form, target and peers as the inventory's host names (ValueError names what
    is wrong, before anything runs). Each target node's report (start, deadline, engine, ...) from report_dir."""
    extra = request(fault, target, params, groups, str(report_dir))
    proc = playbook(f"faults/{fault}.yml", extra, quiet=quiet, check=False, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise PlaybookFailed(f"faults/{fault}.yml", proc)
    return [json.loads(path.read_text(encoding="utf-8")) for path in sorted(report_dir.glob(f"*-{fault}.json"))]


def playbook(
    path: str, extra_vars: dict[str, Any] | None = None, quiet: bool = False, tags: str | None = None,
    check: bool = True, timeout: float = PLAYBOOK_TIMEOUT_S, env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run a playbook of the project; with ``check``, raise AnsibleError when it fails.

    Every string of *extra_vars* is passed marked unsafe: Ansible never templates it, whatever it holds. A playbook
    still running after *timeout* seconds is killed with its process group (AnsibleError).
    """
    cmd = [tool("ansible-playbook"), path]
    if extra_vars:
        cmd += ["-e", json.dumps(unsafe(extra_vars))]
    if tags:
        cmd += ["--tags", tags]
    proc = subprocess.Popen(cmd, cwd=project_root(), env=ansible_env(env), text=True, start_new_session=True,
                            stdout=subprocess.PIPE if quiet else None, stderr=subprocess.PIPE if quiet else None)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AnsibleError(f"{path} did not finish within {timeout:g}s and was stopped") from None
    except BaseException:  # Ctrl-C: the playbook stops with the caller
        os.killpg(proc.pid, signal.SIGINT)
        proc.communicate()
        raise
    done = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    if check and done.returncode != 0:
        raise AnsibleError(f"{path} failed (exit {done.returncode})")
    return done
