"""The task brokers a lab can run, and which Celery settings and queue types belong to which.

The result backend is Redis whatever the broker, so that what Celery reports about a task is read the same way.
One table here serves the inventory plugin, the worker role's checks and scenarios.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from chaoslab.celery_settings import TRANSPORT_OPTIONS

BROKERS: Final = ("redis", "rabbitmq")
DEFAULT: Final = "redis"

# Queue types each broker offers Celery (task_default_queue_type): Redis has lists only.
QUEUE_TYPES: Final = {"redis": ("classic",), "rabbitmq": ("classic", "quorum")}

# The lab's names for the Redis transport's options (merged into broker_transport_options): a RabbitMQ lab refuses
# them (py-amqp has no visibility timeout: an unacknowledged message comes back when its channel closes).
REDIS_ONLY: Final = frozenset(TRANSPORT_OPTIONS)
# Celery settings that mean something with RabbitMQ only (quorum queues and what Celery does about them).
RABBITMQ_ONLY: Final = frozenset({"worker_detect_quorum_queues", "broker_native_delayed_delivery_queue_type"})


# The rabbitmq.conf keys a lab's user may set (rabbitmq_settings): flow control, timeouts and limits. The rest of
# rabbitmq.conf is the lab's own (listeners on the lab address only, the lab's user, its statistics interval): a key
# such as listeners.tcp.2 would open the broker to every address.
RABBITMQ_CONF: Final = frozenset({
    "consumer_timeout", "heartbeat", "channel_max", "frame_max", "max_message_size", "handshake_timeout",
    "vm_memory_high_watermark.relative", "vm_memory_high_watermark.absolute", "vm_memory_high_watermark_paging_ratio",
    "disk_free_limit.relative", "disk_free_limit.absolute", "queue_index_embed_msgs_below",
    "tcp_listen_options.backlog", "tcp_listen_options.nodelay", "tcp_listen_options.keepalive",
})
PLAIN_CONF_VALUE: Final = re.compile(r"[A-Za-z0-9_.:+-]{1,64}")


def rabbitmq_setting_error(key: object, value: object) -> str:
    """'' when rabbitmq.conf may take ``key = value`` from a user, else a one-line reason naming the key."""
    if key not in RABBITMQ_CONF:
        return (f"rabbitmq_settings: {str(key)[:60]!r} is not a setting the lab lets you change (one of "
                f"{', '.join(sorted(RABBITMQ_CONF))})")
    text = str(value).lower() if isinstance(value, bool) else value
    if not isinstance(text, (str, int, float)) or not PLAIN_CONF_VALUE.fullmatch(str(text)):
        return f"rabbitmq_settings: {key}: a plain word or number, got {str(value)[:40]!r}"
    return ""


def broker_error(broker: object) -> str:
    """'' for a broker the lab runs, else a one-line reason."""
    if broker in BROKERS:
        return ""
    return f"{broker!r} is not a broker the lab runs ({', '.join(BROKERS)})"


def setting_error(broker: str, name: str, value: object) -> str:
    """'' when *name* (a Celery setting or one of the lab's transport option names) may be given with *broker*, else
    a one-line reason."""
    if broker == "rabbitmq" and name in REDIS_ONLY:
        return f"{name}: an option of the Redis transport; this lab's broker is RabbitMQ"
    if broker == "rabbitmq" and name == "broker_transport_options" and isinstance(value, dict):
        for key in sorted(set(value) & REDIS_ONLY):
            return f"broker_transport_options: {key}: an option of the Redis transport; this lab's broker is RabbitMQ"
    if broker == "redis" and name in RABBITMQ_ONLY and value is not None:
        return f"{name}: a RabbitMQ setting; this lab's broker is Redis"
    if name == "task_default_queue_type" and value is not None and value not in QUEUE_TYPES.get(broker, ()):
        kinds = ", ".join(QUEUE_TYPES.get(broker, ()))
        return f"task_default_queue_type: {broker} has no {value!r} queues (it has {kinds})"
    return ""


def settings_errors(broker: str, settings: dict[str, object]) -> list[str]:
    """Each setting *broker* cannot take, one line each (a broker the lab does not run is one error)."""
    problem = broker_error(broker)
    if problem:
        return [f"broker: {problem}"]
    found = (setting_error(broker, name, value) for name, value in settings.items())
    return [problem for problem in found if problem]


def chosen(environ: dict[str, str], configured: object, kept: Path | None = None) -> str:
    """The broker an inventory plugin gives its lab: LAB_BROKER from the environment, else the one the lab was last
    provisioned with (*kept*: the file the common role writes beside the lab's secrets, so that a lab brought up with
    LAB_BROKER=rabbitmq stays one for every later command), else the inventory's ``broker``; ValueError with a
    one-line reason for one the lab does not run."""
    given = environ.get("LAB_BROKER", "").strip()
    if given:
        broker, where, fix = given, "LAB_BROKER", ""
    elif kept is not None and kept.is_file():
        broker, where, fix = kept.read_text(encoding="utf-8", errors="replace").strip(), str(kept), \
            " (remove the file, or set LAB_BROKER)"
    else:
        broker, where, fix = configured or DEFAULT, "broker", ""
    problem = broker_error(broker)
    if problem:
        raise ValueError(f"{where}: {problem}{fix}")
    return str(broker)


def kept_file(secrets_file: str) -> Path:
    """Where the lab's provisioned broker is kept: beside its secrets (``.lab/<lab>/broker``)."""
    return Path(secrets_file).parent / "broker"


def of_url(broker_url: str) -> str:
    """The broker a Celery broker URL names: rabbitmq for ``amqp://`` (and ``pyamqp://``), else redis."""
    return "rabbitmq" if broker_url.startswith(("amqp://", "pyamqp://")) else "redis"


def bounded_transport(broker: str, timeout: float) -> dict[str, object]:
    """broker_transport_options that bound every wait on *broker* to *timeout* seconds, with no retries: the Redis
    transport's socket time-outs, or py-amqp's read and write time-outs with publisher confirms (a publish returns
    once RabbitMQ has the message, or fails)."""
    if broker == "rabbitmq":
        return {"read_timeout": timeout, "write_timeout": timeout, "confirm_publish": True, "max_retries": 0}
    return {"socket_timeout": timeout, "socket_connect_timeout": timeout, "max_retries": 0}
