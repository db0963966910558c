"""A recorded trace of tasks to replay as a load: JSON lines, one task each, at its offset from the load's start.

    {"offset": 0.25, "task": "shop.charge_payment", "args": [{"order": 7}], "kwargs": {}}
    {"offset": 0.31, "kind": "noop"}

``offset`` is seconds from the start (>= 0; lines need not be in order); a line names a task of the app under test
(``task``, positional ``args`` and keyword ``kwargs``) or a lab task kind (``kind``, keyword ``args``), plain JSON
data. The scenario checks the file before a run (a bad line is one error naming its line), the load generator
reads it again on its node.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Final

from chaoslab.inputs import is_json_data
from chaoslab.ledger import task_kind
from chaoslab.node.load_mix import TASK_NAME, MixEntry
from chaoslab.node.tasks import KINDS

MAX_LINES: Final = 1_000_000
MAX_BYTES: Final = 256 * 1024 * 1024
LINE_KEYS: Final = frozenset({"offset", "task", "kind", "args", "kwargs"})

Trace = tuple[tuple[float, MixEntry], ...]


def _entry(data: Any) -> tuple[float, MixEntry]:
    if not isinstance(data, dict):
        raise ValueError(f"must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - LINE_KEYS)
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown key (allowed: {', '.join(sorted(LINE_KEYS))})")
    offset = data.get("offset")
    if isinstance(offset, bool) or not isinstance(offset, int | float) or not math.isfinite(offset) or offset < 0:
        raise ValueError(f"offset: must be seconds >= 0 from the load's start, got {offset!r}")
    task, kind = data.get("task"), data.get("kind")
    args, kwargs = data.get("args"), data.get("kwargs")
    if (task is None) == (kind is None):
        raise ValueError("give a task (of the app under test) or a kind (of the lab's), one of them")
    if kind is not None:
        if kind not in KINDS or kwargs is not None:
            raise ValueError(f"kind: one of {', '.join(KINDS)} with its keyword args, got {kind!r}")
        if not isinstance(args or {}, dict) or not is_json_data(args or {}):
            raise ValueError(f"args: a lab kind's keyword arguments (a mapping), got {args!r}")
        return float(offset), MixEntry(kind, args=dict(args or {}))
    if not isinstance(task, str) or len(task) > 200 or not TASK_NAME.fullmatch(task):
        raise ValueError(f"task: a task's registered name, got {task!r}")
    if not isinstance(args or [], list) or not is_json_data(args or []):
        raise ValueError(f"args: the task's positional arguments (a list of plain data), got {args!r}")
    if not isinstance(kwargs or {}, dict) or not is_json_data(kwargs or {}):
        raise ValueError(f"kwargs: the task's keyword arguments (a mapping of plain data), got {kwargs!r}")
    return float(offset), MixEntry(task_kind(task), args=dict(kwargs or {}), task=task, positional=tuple(args or ()))


def read(path: str | Path) -> Trace:
    """The trace in *path*, in order of offset (ValueError ``line N: ...`` for the first bad line)."""
    file = Path(path)
    if file.stat().st_size > MAX_BYTES:
        raise ValueError(f"larger than {MAX_BYTES // (1024 * 1024)} MiB")
    found: list[tuple[float, MixEntry]] = []
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            if len(found) >= MAX_LINES:
                raise ValueError(f"more than {MAX_LINES} tasks")
            try:
                found.append(_entry(json.loads(line)))
            except ValueError as err:  # json's errors are ValueErrors too
                raise ValueError(f"line {number}: {err}") from None
    if not found:
        raise ValueError("holds no task")
    found.sort(key=lambda item: item[0])
    return tuple(found)
