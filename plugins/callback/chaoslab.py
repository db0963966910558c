"""Stdout callback: Ansible's default output, but a failure is one line saying what is wrong.

A rejected parameter (role argument spec or a preflight assert) reads
``fatal: [worker-1]: celery_worker_settings: unknown setting task_acks_lat (allowed: ...)``
instead of a dump of the argument spec. With -vv the full result is shown as usual.

Before a playbook starts, before Ansible has templated anything, the callback screens the command line's extra
variables: Ansible trusts them as templates, so a value holding template syntax (``{{``, ``{%``, ``{#``, or a
``#jinja2:`` header that changes the delimiters) would run as code when first used. Such a value is refused in one
line (exit 2); values the lab's own tools pass are marked unsafe and never templated. A fault playbook's values must
moreover be the fault's parameters in their grammar (chaoslab.fault_params), and a fault playbook or clear.yml takes
the lab's lock (chaoslab.experiment.lab_lock) for as long as it runs: a fault during a run is refused, naming the run.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ansible import constants as C
from ansible._internal._datatag._tags import TrustedAsTemplate
from ansible.plugins.callback.default import CallbackModule as DefaultCallback
from ansible.utils.vars import load_extra_vars

DOCUMENTATION = r"""
name: chaoslab
type: stdout
short_description: Ansible's default output with one-line failure messages
description:
  - Like the default callback; a failed task is reported as one line with its message.
extends_documentation_fragment:
  - default_callback
  - result_format_callback
requirements:
  - set as the stdout callback in ansible.cfg
"""

FILTER_FAILED = re.compile(r"^The filter plugin '[\w.]+' failed: ")
UNSUPPORTED = re.compile(r"^(?P<path>[\w.]+)\.(?P<name>\w+)\. Supported parameters include: (?P<allowed>.*?)\.?$")


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def failure_message(result: dict[str, Any]) -> str:
    """The one line that says why a task failed."""
    errors = result.get("argument_errors")
    if errors:
        first = one_line(errors[0])
        match = UNSUPPORTED.match(first)
        if match:
            return f"{match['path']}: unknown parameter {match['name']} (allowed: {match['allowed']})"
        return first
    if result.get("msg"):
        return FILTER_FAILED.sub("", one_line(result["msg"]).removeprefix("Task failed: "))
    for key in ("stderr", "stdout"):
        lines = str(result.get(key) or "").strip().splitlines()
        if lines:
            return one_line(lines[-1])
    return "failed (run with -vv for details)"


TEMPLATE_SYNTAX = ("{{", "{%", "{#")
JINJA_HEADER = "#jinja2:"
EXIT_REFUSED = 2


def _strings(value: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """Every string leaf of an extra variable, with its path."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key, f"{where}.{key}" if where else str(key))
            yield from _strings(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _strings(item, f"{where}[{index}]")


def template_problem(extra_vars: dict[str, Any]) -> str:
    """The first extra variable whose value Ansible would template and that holds template syntax, or ""."""
    for where, text in _strings(extra_vars):
        if not TrustedAsTemplate.is_tagged_on(text):
            continue  # marked unsafe: data, never templated
        if text.lstrip().startswith(JINJA_HEADER) or any(mark in text for mark in TEMPLATE_SYNTAX):
            return f"{where}: values are plain text, and this one holds template syntax; refused"
    return ""


def fault_of(playbook_file: str) -> str | None:
    """The fault a playbook of faults/ runs ("clear" for clear.yml), None for any other playbook."""
    path = Path(playbook_file)
    if path.parent.name != "faults" or path.stem == "preflight":
        return None
    return path.stem


def fault_problem(fault: str, extra_vars: dict[str, Any]) -> str:
    """What is wrong with a fault playbook's extra variables in the fault's own grammar, or ""."""
    from chaoslab.fault_kinds import CLEAR, KINDS
    from chaoslab.fault_params import CONTROL_PARAMS, check, control_errors

    if fault not in KINDS and fault != CLEAR.name:
        return ""
    given = {str(key): value for key, value in extra_vars.items()}
    try:
        check(fault, {key: value for key, value in given.items() if key not in CONTROL_PARAMS}, resolved=False)
    except ValueError as error:
        return str(error)
    return control_errors(given)


class CallbackModule(DefaultCallback):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "chaoslab"

    def v2_playbook_on_start(self, playbook: Any) -> None:
        super().v2_playbook_on_start(playbook)
        extra_vars = dict(load_extra_vars(playbook._loader))
        fault = fault_of(playbook._file_name)
        problem = template_problem(extra_vars) or (fault_problem(fault, extra_vars) if fault else "")
        if problem:
            self._refuse(problem)
        if fault is not None:
            self._lock(playbook._file_name, fault)

    def _refuse(self, message: str) -> None:
        self._display.display(f"fatal: [localhost]: {one_line(message)}", color=C.COLOR_ERROR)
        sys.exit(EXIT_REFUSED)

    def _lock(self, playbook_file: str, fault: str) -> None:
        """Hold the lab's lock until ansible-playbook exits (a fault or clear never overlaps another)."""
        from chaoslab.experiment.lab_lock import LabBusy, LabLock

        root = Path(C.CONFIG_FILE).parent if C.CONFIG_FILE else Path(playbook_file).resolve().parent.parent
        self._lab_lock = LabLock(root)
        try:
            self._lab_lock.acquire(f"faults/{fault}.yml" if fault != "clear" else "faults/clear.yml")
        except LabBusy as busy:
            self._refuse(str(busy))

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        if ignore_errors or self._display.verbosity >= 2 or (result.task.loop and "results" in result.result):
            super().v2_runner_on_failed(result, ignore_errors)
            return
        if self._last_task_banner != result.task._uuid:
            self._print_task_banner(result.task)
        message = f"fatal: [{self.host_label(result)}]: {failure_message(result.result)}"
        self._display.display(message, color=C.COLOR_ERROR, stderr=self.get_option("display_failed_stderr"))

    def v2_runner_item_on_failed(self, result: Any) -> None:
        if self._display.verbosity >= 2:
            super().v2_runner_item_on_failed(result)
            return
        if self._last_task_banner != result.task._uuid:
            self._print_task_banner(result.task)
        label = self._get_item_label(result.result)
        message = f"fatal: [{self.host_label(result)}] ({label}): {failure_message(result.result)}"
        self._display.display(message, color=C.COLOR_ERROR, stderr=self.get_option("display_failed_stderr"))
