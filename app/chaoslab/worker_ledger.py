"""The worker side of the task ledger: one start and one end record per task execution.

Connected to Celery's signals when the worker's config names a ledger file. The main
process stamps the time it received each message; each pool process (or the main
process, for the solo and threads pools) appends to the node's ledger through its own
:class:`~chaoslab.ledger.LedgerWriter`, opened after the fork. A start record is written
before the task body runs, so an execution killed by SIGKILL or the OOM killer still
leaves its start behind.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from celery import Celery, signals

from chaoslab.ledger import FsyncPolicy, LedgerWriter

RECEIVED_KEY = "chaoslab_received"
# The time the load generator sent the message (a header of its own; Celery puts it on the task's request).
SENT_KEY = "chaoslab_sent"
OUTCOMES = {"SUCCESS": "success", "FAILURE": "failure", "RETRY": "retry"}


class WorkerLedger:
    def __init__(self, path: str, node: str, fsync: FsyncPolicy = "batch") -> None:
        self.path = path
        self.node = node
        self.fsync: FsyncPolicy = fsync
        self._writers: dict[int, LedgerWriter] = {}
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

    def on_received(self, request: Any = None, **_kwargs: Any) -> None:
        if request is not None:
            request.request_dict[RECEIVED_KEY] = time.time()

    def _base(self, task: Any) -> dict[str, Any]:
        request = task.request
        return {
            "id": request.id,
            "kind": task.name.rsplit(".", 1)[-1],
            "node": self.node,
            "pid": os.getpid(),
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
        self.writer().write(record)

    def on_postrun(self, task: Any = None, state: str | None = None, retval: Any = None, **_kwargs: Any) -> None:
        record = self._base(task)
        failed = isinstance(retval, BaseException)
        record.update(
            type="end",
            t=time.time(),
            outcome=OUTCOMES.get(state or "", "failure"),
            error_type=type(retval).__name__ if failed else None,
        )
        sent = getattr(task.request, SENT_KEY, None)
        if isinstance(sent, int | float):
            record["sent"] = sent
        self.writer().write(record)

    def connect(self) -> None:
        signals.task_received.connect(self.on_received, weak=False)
        signals.task_prerun.connect(self.on_prerun, weak=False)
        signals.task_postrun.connect(self.on_postrun, weak=False)


def install(app: Celery) -> WorkerLedger | None:
    """Connect the ledger when the node's config names one (workers only; publishers never do)."""
    lab = app.conf.chaoslab
    if not lab.ledger_path:
        return None
    ledger = WorkerLedger(lab.ledger_path, lab.node, lab.ledger_fsync)
    ledger.connect()
    return ledger
