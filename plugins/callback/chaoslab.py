"""Stdout callback: Ansible's default output, but a failure is one line saying what is wrong.

A rejected parameter (role argument spec or a preflight assert) reads
``fatal: [worker-1]: celery_worker_settings: unknown setting task_acks_lat (allowed: ...)``
instead of a dump of the argument spec. With -vv the full result is shown as usual.
"""

from __future__ import annotations

import re
from typing import Any

from ansible import constants as C
from ansible.plugins.callback.default import CallbackModule as DefaultCallback

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


class CallbackModule(DefaultCallback):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "chaoslab"

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
