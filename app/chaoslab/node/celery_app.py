"""The lab's Celery app: broker and result backend on the lab Redis, settings from the node's config.

Worker settings are any of Celery's own (task_acks_late, worker_max_tasks_per_child, ...: see
:mod:`chaoslab.celery_settings`); ``visibility_timeout``, ``unacked_restore_interval``, ``unacked_restore_throttle``
and the socket time-outs are the Redis transport's options of those names.
"""

from __future__ import annotations

from celery import Celery

from chaoslab.node import config, worker_ledger
from chaoslab.node.celery_conf import celery_conf


def make_app(lab: config.LabConfig | None = None) -> Celery:
    lab = lab or config.load()
    celery = Celery("chaoslab", broker=lab.broker_url, backend=lab.result_backend, include=["chaoslab.node.tasks"])
    celery.conf.update(celery_conf(lab.celery))
    celery.conf.chaoslab = lab
    # what Celery's "inspect conf" shows a runner: the settings this worker was given
    celery.conf.chaoslab_given = lab.given
    worker_ledger.install(celery)
    return celery


app = make_app()
