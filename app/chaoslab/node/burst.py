"""A burst of every task kind: publish, wait for every result, tell where each ran.

The quickest proof that a lab works end to end (publisher -> Redis -> workers -> results).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from celery.result import AsyncResult

from chaoslab.node.tasks import KINDS

# Arguments per kind that keep a burst short and light on a small node.
BURST_ARGS: dict[str, dict[str, Any]] = {
    "noop": {},
    "sleep": {"ms": 200},
    "http_request": {"latency_ms": 20},
    "cpu": {"limit": 20000},
    "memory": {"mb": 32, "hold_ms": 200},
}


@dataclass(frozen=True)
class Outcome:
    kind: str
    node: str
    ok: bool
    error: str = ""


def publish(per_kind: int, kinds: list[str] | None = None) -> list[tuple[str, AsyncResult]]:
    """Publish ``per_kind`` tasks of every kind (or of ``kinds``), interleaved so no kind goes to one worker
    first."""
    sent = []
    for _round in range(per_kind):
        for kind in kinds or list(KINDS):
            sent.append((kind, KINDS[kind].apply_async(kwargs=BURST_ARGS[kind])))
    return sent


def collect(sent: list[tuple[str, AsyncResult]], timeout: float) -> list[Outcome]:
    deadline = time.monotonic() + timeout
    outcomes = []
    for kind, result in sent:
        try:
            value = result.get(timeout=max(deadline - time.monotonic(), 0.1), propagate=True)
            outcomes.append(Outcome(kind, value["node"], True))
        except Exception as err:
            outcomes.append(Outcome(kind, "?", False, f"{type(err).__name__}: {err}"))
    return outcomes


def tally(outcomes: list[Outcome], table: dict[str, Counter[str]] | None = None) -> dict[str, Counter[str]]:
    """Per kind: successes per node, and failures under the key 'failed' (added to *table* when given)."""
    table = table if table is not None else {kind: Counter() for kind in KINDS}
    for outcome in outcomes:
        table[outcome.kind][outcome.node if outcome.ok else "failed"] += 1
    return table


def ran_on(counts: Counter[str]) -> list[str]:
    """The worker nodes a kind succeeded on."""
    return [node for node in counts if node != "failed" and counts[node]]


def short_kinds(table: dict[str, Counter[str]], min_nodes: int) -> list[str]:
    """Kinds that succeeded on fewer worker nodes than ``min_nodes``."""
    return [kind for kind, counts in table.items() if len(ran_on(counts)) < min_nodes]


def run(per_kind: int, timeout: float, min_nodes: int, rounds: int = 3) -> tuple[dict[str, Counter[str]], int]:
    """A burst, then up to ``rounds - 1`` more of the kinds that ran on too few nodes: which worker takes a task
    is the broker's draw (a fast kind can all go to the worker that asked first), and a kind that keeps to one
    node over every round is a real problem. Returns the tally over all rounds and the rounds published."""
    table = tally(collect(publish(per_kind), timeout))
    done = 1
    while done < rounds and (short := short_kinds(table, min_nodes)):
        tally(collect(publish(per_kind, short), timeout), table)
        done += 1
    return table, done


def problems(table: dict[str, Counter[str]], min_nodes: int) -> list[str]:
    """What keeps a burst from proving the lab: failures, or a kind that ran on too few nodes."""
    found = []
    for kind, counts in table.items():
        if counts["failed"]:
            found.append(f"{kind}: {counts['failed']} failed")
    for kind in short_kinds(table, min_nodes):
        found.append(f"{kind}: ran on {len(ran_on(table[kind]))} worker node(s), expected at least {min_nodes}")
    return found
