"""The worker side of the task ledger: a received record per delivery, a start and an end record per execution, a
revoked record for a task the worker discarded (revoked, or expired) instead of running it.

Connected to Celery's signals when the worker's config names a ledger file. The main process writes a ``received``
record when a message reaches it (prefetched: not yet running) and stamps the time on the request; each pool process
(or the main process, for the solo and threads pools) appends to the node's ledger through its own
:class:`~chaoslab.ledger.LedgerWriter`, opened after the fork. A start record is written before the task body runs,
so an execution killed by SIGKILL or the OOM killer still leaves its start behind. Every record names the process
(``pid``) and when that process started (``ps``), so that a pid the kernel hands to a new process later is not taken
for the one that wrote the record.

When the worker is ready, its main process writes the settings it really runs with (pool, concurrency, prefetch,
acknowledgement, transport options, versions) to ``<ledger>.settings.json`` beside the ledger.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
from celery import Celery, signals

from chaoslab import brokers
from chaoslab.ledger import FsyncPolicy, LedgerWriter, task_kind

RECEIVED_KEY = "chaoslab_received"
# The time the load generator sent the message (a header of its own; Celery puts it on the task's request).
SENT_KEY = "chaoslab_sent"
OUTCOMES = {"SUCCESS": "success", "FAILURE": "failure", "RETRY": "retry"}
# What a worker reports it runs with (besides its pool and concurrency).
REPORTED_SETTINGS = ("task_acks_late", "task_reject_on_worker_lost", "task_acks_on_failure_or_timeout",
                     "worker_prefetch_multiplier", "task_soft_time_limit", "task_time_limit", "result_extended",
                     "task_track_started", "broker_transport_options", "broker_connection_timeout",
                     "broker_pool_limit", "result_expires")


def canvas_ids(request: Any) -> dict[str, str]:
    """Where an execution sits in a canvas: the task that published it (``parent``), the first of its workflow
    (``root``) and its group; only those it has (a task published on its own has none)."""
    found = {key: getattr(request, name, None) for key, name in (("parent", "parent_id"), ("root", "root_id"),
                                                                  ("group", "group"))}
    return {key: value for key, value in found.items()
            if isinstance(value, str) and value and not (key == "root" and value == request.id)}


REDIS_VISIBILITY_TIMEOUT = 3600
"""kombu's Redis transport hands an unacknowledged message out again after this many seconds unless told otherwise."""


def eta_fields(eta: Any, transport_options: dict[str, Any] | None, broker_url: str = "redis://") -> dict[str, float]:
    """An execution held for an ETA or countdown: the ETA (epoch seconds) and, on Redis, the broker's visibility
    timeout then in force (``vt``; a message held unacknowledged longer than it is handed out again: RabbitMQ has
    none); nothing without an ETA."""
    if isinstance(eta, str):
        try:
            eta = datetime.fromisoformat(eta)
        except ValueError:
            return {}
    if not isinstance(eta, datetime):
        return {}
    if brokers.of_url(broker_url) != "redis":
        return {"eta": round(eta.timestamp(), 3)}
    timeout = (transport_options or {}).get("visibility_timeout", REDIS_VISIBILITY_TIMEOUT)
    return {"eta": round(eta.timestamp(), 3), "vt": float(timeout)}


def process_start(pid: int | None = None) -> float:
    """When a process started (epoch seconds, as psutil and the ``alive`` record give it)."""
    return round(psutil.Process(pid).create_time(), 2)


class WorkerLedger:
    def __init__(self, path: str, node: str, fsync: FsyncPolicy = "batch") -> None:
        self.path = path
        self.node = node
        self.fsync: FsyncPolicy = fsync
        self._writers: dict[int, LedgerWriter] = {}
        self._starts: dict[int, float] = {}
        self._lock = threading.Lock()

    def writer(self) -> LedgerWriter:
        """This process's writer (one per pid: the prefork pool's children each open their own)."""
        pid = os.getpid()
        writer = self._writers.get(pid)
        if writer is None:
            with self._lock:
                writer = self._writers.get(pid) or LedgerWriter(self.path, self.fsync)
                self._writers = {pid: writer}
        return writer

    def _process(self) -> tuple[int, float]:
        pid = os.getpid()
        start = self._starts.get(pid)
        if start is None:
            start = self._starts[pid] = process_start(pid)
        return pid, start

    def on_received(self, request: Any = None, **_kwargs: Any) -> None:
        if request is None:
            return
        now = time.time()
        request.request_dict[RECEIVED_KEY] = now
        pid, start = self._process()
        self.writer().write({"type": "received", "id": request.id, "node": self.node, "pid": pid, "ps": start,
                             "t": now})

    def _base(self, task: Any) -> dict[str, Any]:
        request = task.request
        pid, start = self._process()
        return {
            "id": request.id,
            "kind": task_kind(task.name),
            "node": self.node,
            "pid": pid,
            "ps": start,
            "attempt": request.retries or 0,
        }

    def on_prerun(self, task: Any = None, **_kwargs: Any) -> None:
        request = task.request
        record = self._base(task)
        record.update(
            type="start",
            redelivered=bool((request.delivery_info or {}).get("redelivered")),
            received=getattr(request, RECEIVED_KEY, None),
            t=time.time(),
        )
        record.update(canvas_ids(request))
        eta = getattr(request, "eta", None)
        if eta:
            record.update(eta_fields(eta, task.app.conf.broker_transport_options, str(task.app.conf.broker_url or "")))
        self.writer().write(record)

    def on_postrun(self, task: Any = None, state: str | None = None, retval: Any = None, **_kwargs: Any) -> None:
        if state is None:
            # Cut short before it had a state: Celery sends task_postrun from a finally block, also while a
            # SystemExit raised by the SIGTERM the pool sends at a hard time limit (or a terminate) unwinds it. The
            # task did not end by itself: no end record, as for a SIGKILL; the result backend says how it ended.
            return
        record = self._base(task)
        failed = isinstance(retval, BaseException)
        record.update(
            type="end",
            t=time.time(),
            outcome=OUTCOMES.get(state, "failure"),
            error_type=type(retval).__name__ if failed else None,
        )
        sent = getattr(task.request, SENT_KEY, None)
        if isinstance(sent, int | float):
            record["sent"] = sent
        self.writer().write(record)

    def on_revoked(self, request: Any = None, terminated: bool = False, expired: bool = False,
                   **_kwargs: Any) -> None:
        """The worker discarded a task instead of running it (revoked, or past its ``expires``), or terminated it;
        Celery records it REVOKED in the result backend."""
        task_id = getattr(request, "id", None)
        if not task_id:
            return
        pid, start = self._process()
        self.writer().write({"type": "revoked", "id": task_id, "node": self.node, "pid": pid, "ps": start,
                             "t": time.time(), "expired": bool(expired), "terminated": bool(terminated)})

    def on_ready(self, sender: Any = None, **_kwargs: Any) -> None:
        """Write the settings the worker runs with beside the ledger (replaced whole: a restart writes it again)."""
        write_settings(Path(self.path + ".settings.json"), self.node, sender)

    def connect(self) -> None:
        signals.task_received.connect(self.on_received, weak=False)
        signals.task_prerun.connect(self.on_prerun, weak=False)
        signals.task_postrun.connect(self.on_postrun, weak=False)
        signals.task_revoked.connect(self.on_revoked, weak=False)
        signals.worker_ready.connect(self.on_ready, weak=False)


def effective_settings(consumer: Any) -> dict[str, Any]:
    """What a ready worker runs with: its pool and concurrency as started, and Celery's settings as it reads them
    (the lab's usual ones and every one it was given)."""
    import celery
    import kombu

    app = consumer.app
    controller = getattr(consumer, "controller", None)
    pool = getattr(consumer, "pool", None)
    lab = getattr(app.conf, "chaoslab", None)
    # the settings it was given that are Celery's (the lab's transport options are in broker_transport_options)
    given = [name for name in getattr(lab, "celery", {}) if name in app.conf]
    found: dict[str, Any] = {name: app.conf.get(name) for name in (*REPORTED_SETTINGS, *given)}
    found["worker_pool"] = type(pool).__module__.rsplit(".", 1)[-1] if pool is not None else None
    found["worker_concurrency"] = getattr(controller, "concurrency", None)
    found["celery"], found["kombu"] = celery.__version__, kombu.__version__
    return found


def write_settings(path: Path, node: str, consumer: Any) -> None:
    data = {"node": node, "pid": os.getpid(), "t": time.time(), "settings": effective_settings(consumer)}
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(data, default=repr, sort_keys=True) + "\n", encoding="utf-8")
    partial.replace(path)


def install(app: Celery) -> WorkerLedger | None:
    """Connect the ledger when the node's config names one (workers only; publishers never do)."""
    lab = app.conf.chaoslab
    if not lab.ledger_path:
        return None
    ledger = WorkerLedger(lab.ledger_path, lab.node, lab.ledger_fsync)
    ledger.connect()
    return ledger
