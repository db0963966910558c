"""Generated arguments: values a load's task arguments take afresh for each task it publishes.

Anywhere in a task's ``args`` or ``kwargs``, a mapping with one key naming a generator stands for a value made when
the task is published, from the load's seed (a run with the same seed publishes the same values):

``{$seq: 1000}``
    The task's number in the load, counted from the given whole number (1000, 1001, ...).
``{$id: order-}``
    A random id (32 hex digits) after the given prefix.
``{$int: [1, 500]}``
    A random whole number between the two given, both included.
``{$choice: [EUR, USD, GBP]}``
    One of the given values.

Everything else is plain data and passes as it is.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Final

MAX_SEQ: Final = 10**15


def _check_seq(value: Any) -> str:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEQ
    return "" if ok else f"must be a whole number from 0 to {MAX_SEQ}, got {value!r}"


def _check_id(value: Any) -> str:
    ok = isinstance(value, str) and len(value) <= 64
    return "" if ok else f"must be a prefix of up to 64 characters (\"\" for none), got {value!r}"


def _check_int(value: Any) -> str:
    ok = (isinstance(value, list) and len(value) == 2
          and all(isinstance(x, int) and not isinstance(x, bool) for x in value) and value[0] <= value[1])
    return "" if ok else f"must be [low, high], two whole numbers with low <= high, got {value!r}"


def _check_choice(value: Any) -> str:
    ok = isinstance(value, list) and 0 < len(value) <= 1000
    return "" if ok else f"must be a list of 1 to 1000 values, got {value!r}"


CHECKS: Final[dict[str, Callable[[Any], str]]] = {
    "$seq": _check_seq, "$id": _check_id, "$int": _check_int, "$choice": _check_choice,
}


def _generator(value: Any) -> str | None:
    """The generator a value names (a mapping with one key starting with ``$``), else None."""
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        if isinstance(key, str) and key.startswith("$"):
            return key
    return None


def check(value: Any, key: str) -> None:
    """ValueError naming the key path of the first generator that is not one, or not given right."""
    name = _generator(value)
    if name is not None:
        if name not in CHECKS:
            raise ValueError(f"{key}.{name}: unknown generator (allowed: {', '.join(CHECKS)})")
        problem = CHECKS[name](value[name])
        if problem:
            raise ValueError(f"{key}.{name}: {problem}")
        if name == "$choice":
            for index, item in enumerate(value[name]):
                check(item, f"{key}.{name}[{index}]")
        return
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for part, item in items:
        check(item, f"{key}.{part}" if isinstance(value, dict) else f"{key}[{part}]")


def has_generators(value: Any) -> bool:
    if _generator(value) is not None:
        return True
    if isinstance(value, dict):
        return any(has_generators(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(has_generators(item) for item in value)
    return False


def render(value: Any, rng: random.Random, seq: int) -> Any:
    """*value* with every generator replaced by the value it makes for the task numbered *seq* (from 0)."""
    name = _generator(value)
    if name == "$seq":
        return value[name] + seq
    if name == "$id":
        return f"{value[name]}{rng.getrandbits(128):032x}"
    if name == "$int":
        return rng.randint(*value[name])
    if name == "$choice":
        return render(rng.choice(value[name]), rng, seq)
    if isinstance(value, dict):
        return {part: render(item, rng, seq) for part, item in value.items()}
    if isinstance(value, list | tuple):
        return [render(item, rng, seq) for item in value]
    return value
