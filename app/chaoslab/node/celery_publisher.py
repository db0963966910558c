"""Publish the load through a Celery app's own ``apply_async``, one task at a time, as the app's code would.

With the app under test loaded on the load's node, a task goes out with the app's routes and queues, its task
options and its publish retry policy (``task_publish_retry``, ``broker_connection_retry``...): what a producer of
the app sees when the broker is slow or gone is what the publish ledger records, a retried publish as one slow
``ok``, one that gives up as an ``error`` or a ``timeout``. A task the app does not register is sent by name.
"""

from __future__ import annotations

import time

from celery import Celery

from chaoslab.node.load_mix import MixEntry
from chaoslab.node.publisher import SENT_HEADER, Outcome, failed


class CeleryPublisher:
    def __init__(self, app: Celery) -> None:
        self.app = app

    def publish(self, entry: MixEntry, task_id: str) -> Outcome:
        options = {**entry.options, "task_id": task_id, "headers": {SENT_HEADER: time.time()}}
        task = self.app.tasks.get(entry.task_name)
        try:
            if task is not None:
                task.apply_async(args=list(entry.positional), kwargs=dict(entry.args), **options)
            else:
                self.app.send_task(entry.task_name, args=list(entry.positional), kwargs=dict(entry.args), **options)
        except Exception as err:  # whatever the app's producer raised: the publish failed, as the caller would see
            return failed(err)
        return Outcome("ok")
