"""The lab's Celery app: broker and result backend on the lab Redis, settings from the node's config.

Worker settings use Celery's own names (task_acks_late, worker_prefetch_multiplier, ...);
``visibility_timeout``, ``unacked_restore_interval`` and ``unacked_restore_throttle`` are the Redis transport's
options of those names.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from chaoslab.node import config, worker_ledger

# Settings the lab passes through to Celery under their own names.
CELERY_SETTINGS = (
    "task_acks_late",
    "task_reject_on_worker_lost",
    "worker_prefetch_multiplier",
    "worker_concurrency",
    "worker_pool",
    "task_soft_time_limit",
    "task_time_limit",
    "broker_connection_timeout",
    "broker_connection_retry_on_startup",
    "broker_pool_limit",
    "result_expires",
)
# Settings that are options of the Redis transport.
TRANSPORT_SETTINGS = (
    "visibility_timeout", "unacked_restore_interval", "unacked_restore_throttle", "socket_timeout",
    "socket_connect_timeout",
)
# Transport options that only the broker connection knows (not the result backend's).
BROKER_ONLY = frozenset({"visibility_timeout", "unacked_restore_interval", "unacked_restore_throttle"})


def celery_conf(settings: dict[str, Any]) -> dict[str, Any]:
    """Celery configuration from the lab's settings (unknown names are rejected)."""
    unknown = sorted(set(settings) - set(CELERY_SETTINGS) - set(TRANSPORT_SETTINGS))
    if unknown:
        raise ValueError(f"unknown Celery setting {unknown[0]!r}")
    conf: dict[str, Any] = {
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
    conf.update({key: value for key, value in settings.items() if key in CELERY_SETTINGS and value is not None})
    transport = {key: value for key, value in settings.items() if key in TRANSPORT_SETTINGS and value is not None}
    conf["broker_transport_options"] = transport
    conf["result_backend_transport_options"] = {
        key: value for key, value in transport.items() if key not in BROKER_ONLY
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
