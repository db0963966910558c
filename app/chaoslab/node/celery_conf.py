"""The Celery configuration a lab worker runs with: what the lab sets on any app, and the run's settings.

Settings are any of Celery's own (see :mod:`chaoslab.celery_settings`); ``visibility_timeout``,
``unacked_restore_interval``, ``unacked_restore_throttle`` and the socket time-outs are the Redis transport's options
of those names, merged into ``broker_transport_options``; ``celery_version`` and ``kombu_version`` say which Celery
the node installed, and are no configuration.
"""

from __future__ import annotations

from typing import Any

from chaoslab import celery_settings

# What the lab sets on any app a worker runs, its own or an app under test (celery_settings.OWNED refuses these names
# in a scenario): the events its monitoring reads, and results that name the worker that stored them (the checker
# reads WorkerLostError's reporter and its clock).
LAB_OWNED_CONF: dict[str, Any] = {
    "worker_send_task_events": True,
    "task_send_sent_event": True,
    "task_track_started": True,
    "result_extended": True,
}
# The lab's own app besides: JSON throughout, its logging left alone, results kept an hour.
LAB_CONF: dict[str, Any] = {
    **LAB_OWNED_CONF,
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
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
                           if name not in celery_settings.TRANSPORT_OPTIONS and name not in celery_settings.VERSIONS
                           and name != "broker_transport_options"}}
    transport = {name: value for name, value in given.items() if name in celery_settings.TRANSPORT_OPTIONS}
    transport.update(given.get("broker_transport_options") or {})
    conf["broker_transport_options"] = transport
    conf["result_backend_transport_options"] = {
        key: value for key, value in transport.items() if key not in celery_settings.BROKER_ONLY
    }
    return conf
