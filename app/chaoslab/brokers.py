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


# The rabbitmq.conf keys a lab's user may set (rabbitmq_settings): flow control, timeouts and limits, each with the
# kind of value RabbitMQ's config schema takes for it (rabbit.schema's datatypes). The rest of rabbitmq.conf is the
# lab's own (listeners on the lab address only, the lab's user, its statistics interval): a key such as
# listeners.tcp.2 would open the broker to every address. A value of the wrong kind would stop RabbitMQ from starting
# after its files changed, so it is refused before.
RABBITMQ_CONF: Final = {
    "consumer_timeout": "integer", "heartbeat": "integer", "channel_max": "integer", "max_message_size": "integer",
    "handshake_timeout": "integer", "tcp_listen_options.backlog": "integer",
    "frame_max": "bytesize", "queue_index_embed_msgs_below": "bytesize",
    "vm_memory_high_watermark.relative": "float", "vm_memory_high_watermark_paging_ratio": "float",
    "disk_free_limit.relative": "float",
    "vm_memory_high_watermark.absolute": "size", "disk_free_limit.absolute": "size",
    "tcp_listen_options.nodelay": "boolean", "tcp_listen_options.keepalive": "boolean",
}
# What each kind takes, as text (a number is checked as its digits), and how a refusal says it.
_CONF_VALUES: Final = {
    "integer": (re.compile(r"[0-9]{1,12}"), "a whole number"),
    "bytesize": (re.compile(r"[0-9]{1,12}(KB|MB|GB)?"), "a whole number of bytes, or with KB, MB or GB"),
    "float": (re.compile(r"[0-9]{1,6}\.[0-9]{1,6}"), "a number with a decimal point (0.4)"),
    "size": (re.compile(r"[0-9]{1,15}(k|kB|KB|kiB|KiB|M|MB|MiB|G|GB|GiB)?"),
             "a whole number of bytes, or with a unit (500MB, 2GiB)"),
    "boolean": (re.compile(r"true|false"), "true or false"),
}
# Settings of the rabbit application that rabbitmq.conf has no key for, given to the server as ``-rabbit key value``
# (whole milliseconds): channel_tick_interval is how often each channel checks its oldest unacknowledged delivery
# against consumer_timeout (60000 by default, so a consumer timeout fires up to a minute late; rabbit_channel).
RABBITMQ_ERL_ARGS: Final = {"channel_tick_interval": (100, 3_600_000)}


def _conf_text(kind: str, value: object) -> str | None:
    """*value* as rabbitmq.conf would read it for a key of *kind*, or None when it is not of that kind."""
    if kind == "boolean":
        return str(value).lower() if isinstance(value, bool) else None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    if kind == "float" and not isinstance(value, float):
        return None
    if kind in ("integer", "bytesize", "size") and isinstance(value, float):
        return None
    return str(value)


def rabbitmq_setting_error(key: object, value: object) -> str:
    """'' when a user may set ``key`` to ``value`` (a rabbitmq.conf line or a ``-rabbit`` argument), else a one-line
    reason naming the key."""
    if isinstance(key, str) and key in RABBITMQ_ERL_ARGS:
        low, high = RABBITMQ_ERL_ARGS[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return f"rabbitmq_settings: {key}: whole milliseconds from {low} to {high}, got {str(value)[:40]!r}"
        return ""
    if not isinstance(key, str) or key not in RABBITMQ_CONF:
        return (f"rabbitmq_settings: {str(key)[:60]!r} is not a setting the lab lets you change (one of "
                f"{', '.join(sorted([*RABBITMQ_CONF, *RABBITMQ_ERL_ARGS]))})")
    pattern, wanted = _CONF_VALUES[RABBITMQ_CONF[key]]
    text = _conf_text(RABBITMQ_CONF[key], value)
    if text is None or not pattern.fullmatch(text):
        return f"rabbitmq_settings: {key}: {wanted}, got {str(value)[:40]!r}"
    return ""


def rabbitmq_conf(settings: dict[str, object]) -> dict[str, object]:
    """The settings that are rabbitmq.conf lines (the rest are ``-rabbit`` arguments: rabbitmq_erl_args)."""
    return {key: value for key, value in settings.items() if key not in RABBITMQ_ERL_ARGS}


def rabbitmq_erl_args(settings: dict[str, object]) -> str:
    """The settings rabbitmq.conf has no key for, as the server's ``-rabbit key value`` arguments ("" for none)."""
    return " ".join(f"-rabbit {key} {int(str(settings[key]))}" for key in sorted(RABBITMQ_ERL_ARGS) if key in settings)


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
