"""A fault's trigger: the task state that brings it into force instead of a clock (fault parameter ``when``).

Written as one term::

    running>=N     the target worker has at least N executions running (started, not ended, process alive)
    reserved>=N    the target worker holds at least N messages it received and has not started yet: prefetched,
                   not yet acknowledged under early acknowledgement (the receive-to-ack window)
    started=KIND   an execution of task kind KIND starts on the target worker
    unacked>=N     the target broker's unacknowledged set holds at least N messages (Redis: the ``unacked`` hash)

The fault's agent on the node arms it at once and watches the worker's own task ledger (or the broker) for the
condition; the fault comes into force when it holds and ends at the same deadline as it would have without one
(the duration counts from arming: an armed fault never outlives it). A condition that never holds before the
deadline leaves the node untouched, and the node's event ledger says so (``untriggered``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

COUNTS: Final = {"running": "executions running", "reserved": "messages received, not yet started",
                 "unacked": "messages unacknowledged at the broker"}
"""The counted conditions (``what>=N``) and what each counts."""
WORKER_CONDITIONS: Final = frozenset({"running", "reserved", "started"})
"""Read from a worker's task ledger: the target must be a worker."""
BROKER_CONDITIONS: Final = frozenset({"unacked"})
"""Read from the broker on its own node: the target must be the Redis node."""
MAX_COUNT: Final = 10_000
_TERM: Final = re.compile(r"\s*(?P<what>[a-z]+)\s*(?P<op>>=|=)\s*(?P<value>[A-Za-z0-9_.:-]{1,120})\s*", re.ASCII)
_KIND: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,119}", re.ASCII)


@dataclass(frozen=True)
class Trigger:
    """One parsed condition."""

    what: str
    """running, reserved, unacked (a count reached) or started (a kind started)."""
    count: int = 0
    kind: str = ""

    def __str__(self) -> str:
        return f"started={self.kind}" if self.what == "started" else f"{self.what}>={self.count}"

    @property
    def on_worker(self) -> bool:
        return self.what in WORKER_CONDITIONS

    def describe(self) -> str:
        """The condition in words, for reports."""
        if self.what == "started":
            return f"a {self.kind} task started"
        return f"{self.count} or more {COUNTS[self.what]}"


def parse(text: object) -> Trigger:
    """A condition as written (``running>=2``, ``started=io``); ValueError naming what is wrong."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a condition (e.g. running>=2, reserved>=1, started=io, unacked>=10)")
    found = _TERM.fullmatch(text)
    known = ", ".join(sorted([*COUNTS, "started"]))
    if found is None:
        raise ValueError(f"'{text}' is not a condition (e.g. running>=2, reserved>=1, started=io, unacked>=10)")
    what, op, value = found["what"], found["op"], found["value"]
    if what == "started":
        if op != "=" or not _KIND.fullmatch(value):
            raise ValueError(f"'{text}': started takes a task kind (started=io)")
        return Trigger("started", kind=value)
    if what not in COUNTS:
        raise ValueError(f"'{text}': unknown condition {what} (known: {known})")
    if op != ">=" or not value.isdigit():
        raise ValueError(f"'{text}': {what} takes a count (e.g. {what}>=2)")
    count = int(value)
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"'{text}': the count must be within 1-{MAX_COUNT}")
    return Trigger(what, count=count)
