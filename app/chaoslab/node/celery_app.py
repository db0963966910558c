"""The lab's Celery app: broker and result backend on the lab Redis, settings from the node's config.

Worker settings are any of Celery's own (task_acks_late, worker_max_tasks_per_child, ...: see
:mod:`chaoslab.celery_settings`); ``visibility_timeout``, ``unacked_restore_interval``, ``unacked_restore_throttle``
and the socket time-outs are the Redis transport's options of those names.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from chaoslab import celery_settings
from chaoslab.node import config, worker_ledger

# What the lab sets itself, whatever a worker is given (celery_settings.OWNED refuses these names).
LAB_CONF: dict[str, Any] = {
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "worker_send_task_events": True,
    "task_send_sent_event": True,
    "task_track_started": True,
    # results name the worker that stored them (the checker reads WorkerLostError's reporter and its clock)
    "result_extended": True,
    "worker_hijack_root_logger": False,
    "broker_connection_retry_on_startup": True,
    "result_expires": 3600,
}


def celery_conf(settings: dict[str, Any]) -> dict[str, Any]:
    """Celery configuration from the lab's settings: any setting Celery knows (see :mod:`chaoslab.celery_settings`;
    others are refused), the lab's transport options merged into ``broker_transport_options`` (what that gives
    explicitly wins), and null meaning Celery's default."""
    given = {name: value for name, value in settings.items() if value is not None}
    celery_settings.check_all(given, once=False)
    conf = {**LAB_CONF, **{name: value for name, value in given.items()
                           if name not in celery_settings.TRANSPORT_OPTIONS and name != "broker_transport_options"}}
    transport = {name: value for name, value in given.items() if name in celery_settings.TRANSPORT_OPTIONS}
    transport.update(given.get("broker_transport_options") or {})
    conf["broker_transport_options"] = transport
    conf["result_backend_transport_options"] = {
        key: value for key, value in transport.items() if key not in celery_settings.BROKER_ONLY
    }
    return conf


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
