"""The Celery settings a lab worker may be given: any setting Celery itself knows.

Names and types come from Celery's own table of settings (``celery.app.defaults``) in the version installed, so a
setting a newer Celery adds is accepted with no change here, and a typo is refused with the nearest real name. On top
of Celery's table the lab adds what it cannot say:

* the settings the lab owns (where the broker and the result backend are, the events and results its monitoring and
  checker read) are refused with the reason;
* settings whose value names Python code to import or a file on the node are refused: a scenario is data, the app's
  own code is the place for them;
* lower bounds (a concurrency of 0 is no worker) and the pools Celery has.

The lab's own names for options of the Redis transport (``visibility_timeout``, ...) are kept as settings of their
own; they go into ``broker_transport_options`` beside what a scenario gives there. ``celery_version`` and
``kombu_version`` choose the Celery and kombu the worker runs (installed on its node).
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Mapping
from functools import cache
from typing import Any

from celery.app.defaults import NAMESPACES, Option, flatten
from celery.concurrency import ALIASES

from chaoslab.inputs import is_json_data

# The lab's names for options of kombu's Redis transport, with their bounds; they become keys of
# broker_transport_options.
TRANSPORT_OPTIONS: dict[str, tuple[type, str, float]] = {
    "visibility_timeout": (int, ">=", 1),
    "unacked_restore_interval": (int, ">=", 1),
    "unacked_restore_throttle": (int, ">=", 1),
    "socket_timeout": (float, ">", 0),
    "socket_connect_timeout": (float, ">", 0),
}
# The versions of Celery and kombu a worker runs, installed on its node for the run (a matrix axis: did the upgrade
# change what a worker kill loses?); not settings Celery knows. Name -> the package.
VERSIONS: dict[str, str] = {"celery_version": "celery", "kombu_version": "kombu"}
VERSION = re.compile(r"\d{1,4}(\.\d{1,4}){1,3}((a|b|rc)\d{1,3})?(\.post\d{1,3})?")
"""A release as PyPI names it (5.4.0, 5.5.0rc1): no ranges, no URLs."""
# Transport options that only the broker connection knows (not the result backend's).
BROKER_ONLY = frozenset({"visibility_timeout", "unacked_restore_interval", "unacked_restore_throttle"})
# Options of the Redis transport that rename the broker's keys: the lab reads queues and unacknowledged messages by
# kombu's default names, and would take a message under another name for a lost one.
TRANSPORT_KEYS = frozenset({"global_keyprefix", "sep", "priority_steps", "unacked_key", "unacked_index_key",
                            "unacked_mutex_key", "fanout_prefix", "fanout_patterns"})
RENAMED_KEYS = "the lab reads the broker's keys by kombu's default names (a renamed key would hide messages from its " \
               "checker)"

_BROKER = "the lab points every worker at its own broker"
_BACKEND = "the lab's checker reads results from its own result backend"
_MONITORING = "the lab's monitoring and checker read the events and results it turns on"
OWNED: dict[str, str] = {
    **dict.fromkeys(("broker_url", "broker_read_url", "broker_write_url", "broker_transport", "broker_host",
                     "broker_port", "broker_user", "broker_password", "broker_vhost", "broker_login_method",
                     "broker_use_ssl", "broker_failover_strategy"), _BROKER),
    **dict.fromkeys(("result_backend", "result_backend_transport_options", "redis_host", "redis_port", "redis_db",
                     "redis_username", "redis_password", "redis_backend_use_ssl", "result_serializer",
                     "result_accept_content"), _BACKEND),
    **dict.fromkeys(("result_extended", "worker_send_task_events", "task_send_sent_event", "task_track_started",
                     "worker_enable_remote_control", "task_always_eager", "task_ignore_result"), _MONITORING),
}
_CODE = "names Python code to import or a file on the node: set it in the app's own code"
CODE_OR_PATH = frozenset({
    "imports", "include", "worker_consumer", "worker_autoscaler", "worker_agent", "worker_timer", "worker_state_db",
    "worker_log_format", "worker_task_log_format", "beat_scheduler", "beat_schedule_filename", "beat_schedule",
    "database_engine_callback", "task_annotations", "security_certificate", "security_cert_store", "security_key",
    "security_key_password",
})
# Lower bounds Celery's table cannot express: name -> (operator, bound).
BOUNDS: dict[str, tuple[str, float]] = {
    "worker_prefetch_multiplier": (">=", 0), "worker_concurrency": (">=", 1), "worker_max_tasks_per_child": (">=", 1),
    "worker_max_memory_per_child": (">=", 1), "task_soft_time_limit": (">", 0), "task_time_limit": (">", 0),
    "broker_connection_timeout": (">", 0), "broker_pool_limit": (">=", 0), "result_expires": (">", 0),
    "worker_lost_wait": (">", 0), "worker_proc_alive_timeout": (">", 0), "worker_soft_shutdown_timeout": (">=", 0),
    "broker_heartbeat": (">=", 0),
}
# Settings whose type Celery's table gets too loose or wrong for what Celery does with them.
TYPES: dict[str, str] = {
    "worker_concurrency": "int", "task_default_priority": "int", "task_default_delivery_mode": "int_or_string",
    "task_default_rate_limit": "int_or_string", "broker_heartbeat_checkrate": "float", "task_routes": "dict",
    "result_expires": "float",
}
POOLS = tuple(name for name, target in ALIASES.items() if target)
# task_default_delivery_mode's values, as the AMQP property each means: RabbitMQ keeps a persistent message of a
# durable classic queue across a restart and drops a transient one; a quorum queue keeps both; Redis has no such
# property (what it keeps is its persistence's).
DELIVERY_MODES: dict[str, int] = {"persistent": 2, "transient": 1}
_OPS = {">=": operator.ge, ">": operator.gt}


@cache
def celery_options() -> dict[str, Option]:
    """Every setting Celery knows, by its (lower-case) name."""
    return dict(flatten(NAMESPACES))


@cache
def _old_names() -> dict[str, str]:
    return {old.lower(): name for name, option in celery_options().items() for old in option.old}


def check_name(name: Any) -> None:
    """ValueError unless a worker may be given the setting *name*."""
    if not isinstance(name, str):
        raise ValueError(f"a Celery setting's name is text, got {name!r}")
    if name in TRANSPORT_OPTIONS or name in VERSIONS:
        return
    if name in OWNED:
        raise ValueError(f"the lab sets it ({OWNED[name]})")
    if name in CODE_OR_PATH:
        raise ValueError(_CODE)
    if name in celery_options():
        return
    if name.lower() in _old_names():
        raise ValueError(f"Celery's old name: use {_old_names()[name.lower()]}")
    near = difflib.get_close_matches(name, [*celery_options(), *TRANSPORT_OPTIONS, *VERSIONS], n=1)
    hint = f" (did you mean {near[0]}?)" if near else ""
    raise ValueError(f"unknown Celery setting{hint}")


def check(name: Any, value: Any) -> Any:
    """*value* for the setting *name*, checked against Celery's type for it and the lab's rules (ValueError with a
    one-line message otherwise, which the caller prefixes with where the setting was given). Returns the value as
    the worker will be given it."""
    check_name(name)
    if name in VERSIONS:
        if value is not None and not (isinstance(value, str) and VERSION.fullmatch(value)):
            raise ValueError(f"must be a release of {VERSIONS[name]} such as 5.4.0 (quoted, in YAML), got {value!r}")
        return value
    if name in TRANSPORT_OPTIONS:
        kind, op, bound = TRANSPORT_OPTIONS[name]
        return _bounded(_typed("int" if kind is int else "float", value), op, bound)
    option = celery_options()[name]
    if value is None:
        if option.default is None:
            return None
        raise ValueError(f"must not be null (Celery's default is {option.default!r})")
    kind = TYPES.get(name, option.type if isinstance(option.type, str) else "int")
    checked = _typed(kind, value)
    if name == "worker_pool" and checked not in POOLS:
        raise ValueError(f"must be one of {', '.join(POOLS)}, got {checked!r}")
    if name == "broker_transport_options":
        _check_transport(checked)
    if name == "task_default_delivery_mode":
        delivery_mode(checked)
    if name in BOUNDS:
        checked = _bounded(checked, *BOUNDS[name])
    return checked


def delivery_mode(value: Any) -> int:
    """The AMQP delivery mode a ``task_default_delivery_mode`` of *value* means (None: Celery's default,
    persistent); ValueError with a one-line reason for anything else."""
    if value is None:
        return DELIVERY_MODES["persistent"]
    if isinstance(value, str) and value in DELIVERY_MODES:
        return DELIVERY_MODES[value]
    if isinstance(value, int) and not isinstance(value, bool) and value in DELIVERY_MODES.values():
        return value
    raise ValueError(f"must be persistent or transient (2 or 1), got {value!r}")


def _check_transport(options: dict[str, Any]) -> None:
    for key, value in options.items():
        if key in TRANSPORT_KEYS:
            raise ValueError(f"{key}: {RENAMED_KEYS}")
        if key in TRANSPORT_OPTIONS:
            try:
                check(key, value)
            except ValueError as err:
                raise ValueError(f"{key}: {err}") from None


def check_all(settings: Mapping[Any, Any], once: bool = True) -> dict[str, Any]:
    """Every setting of *settings* checked (see :func:`check`; a message names the setting), and, with *once*, no
    transport option given twice (settings combined with the lab's defaults may hold a transport option twice: the
    one in broker_transport_options wins)."""
    checked = {}
    for name, value in settings.items():
        try:
            checked[name] = check(name, value)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
    if once:
        check_given_once(checked)
    return checked


def check_given_once(settings: Mapping[str, Any]) -> None:
    """ValueError when a transport option is given both as a setting and in broker_transport_options."""
    twice = sorted(set(settings.get("broker_transport_options") or {}) & set(settings) & set(TRANSPORT_OPTIONS))
    if twice:
        raise ValueError(f"{twice[0]}: given both as a setting and in broker_transport_options (give it once)")


def errors(settings: Any, once: bool = True) -> str:
    """The first thing wrong with *settings* (one line), or "" when a worker may be given them (see
    :func:`check_all`)."""
    if not isinstance(settings, Mapping):
        return f"Celery settings must be a mapping of setting names to values, got {settings!r}"
    try:
        check_all(settings, once)
    except ValueError as err:
        return str(err)
    return ""


def _typed(kind: str, value: Any) -> Any:
    ok = _TYPE_CHECKS.get(kind, is_json_data)(value)
    if not ok:
        raise ValueError(f"must be {_TYPE_WORDS.get(kind, 'plain data')}, got {value!r}")
    if kind in ("list", "tuple"):
        return list(value)
    return value


def _bounded(value: Any, op: str, bound: float) -> Any:
    if value is not None and not _OPS[op](value, bound):
        raise ValueError(f"must be {op} {bound:g}, got {value!r}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_TYPE_CHECKS = {
    "bool": lambda value: isinstance(value, bool),
    "int": _is_int,
    "float": _is_number,
    "string": lambda value: isinstance(value, str),
    "str": lambda value: isinstance(value, str),
    "bytes": lambda value: isinstance(value, str),
    "int_or_string": lambda value: _is_int(value) or isinstance(value, str),
    "dict": lambda value: isinstance(value, dict) and is_json_data(value),
    "list": lambda value: isinstance(value, list | tuple) and is_json_data(list(value)),
    "tuple": lambda value: isinstance(value, list | tuple) and is_json_data(list(value)),
}
_TYPE_WORDS = {
    "bool": "true or false", "int": "a whole number", "float": "a number", "string": "text", "str": "text",
    "bytes": "text", "int_or_string": "a whole number or text", "dict": "a mapping", "list": "a list",
    "tuple": "a list",
}
