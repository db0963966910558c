"""Jinja filters for the lab's playbooks."""

from __future__ import annotations

import ipaddress
from typing import Any

from ansible.errors import AnsibleFilterError


def in_subnet(address: str, subnet: str) -> bool:
    """True when ``address`` is a host address of ``subnet`` (not its network or broadcast address)."""
    try:
        network = ipaddress.ip_network(subnet, strict=False)
        host = ipaddress.ip_address(address)
    except ValueError:
        return False
    return host in network and host not in (network.network_address, network.broadcast_address)


def lab_node_specs(hostvars: Any, names: list[str]) -> list[dict[str, str]]:
    """The local lab's nodes as the lab_nodes module wants them, from the inventory."""
    keys = {"netns": "lab_netns", "nic": "lab_nic", "address": "lab_address", "host_veth": "lab_host_veth"}
    return [{"name": name, **{key: hostvars[name][var] for key, var in keys.items()}} for name in names]


def duration_seconds(value: Any, name: str = "duration") -> float:
    """Seconds in a duration with unit ("250ms", "20s"); a one-line error naming the parameter otherwise."""
    from chaoslab.units import parse_duration

    try:
        return parse_duration(value)
    except ValueError as err:
        raise AnsibleFilterError(f"{name}: {err}") from err


def fault_errors(params: dict[str, Any], fault: str, resolved: bool = True) -> str:
    """The first thing wrong with a fault's parameters (one line), or "" when they are fine. Unresolved (as a user
    gave them), the control parameters (target, report) are checked against their grammar too."""
    from chaoslab.fault_params import CONTROL_PARAMS, check, control_errors

    if not resolved and (problem := control_errors(params)):
        return problem
    try:
        check(fault, {key: value for key, value in params.items() if key not in CONTROL_PARAMS}, resolved)
    except ValueError as err:
        return str(err)
    return ""


def fault_agent_args(params: dict[str, Any]) -> list[str]:
    """name=value arguments for the fault agent; lists (peers) comma-separated."""
    return [f"{key}={','.join(map(str, value)) if isinstance(value, list) else value}"
            for key, value in params.items()]


def celery_settings_errors(settings: Any, broker: str = "redis") -> str:
    """The first thing wrong with a worker's Celery settings (one line naming the setting), or "" when they are
    fine: Celery's own names and types, the lab's rules (see chaoslab.celery_settings) and what the lab's *broker*
    takes (see chaoslab.brokers)."""
    from chaoslab.brokers import settings_errors
    from chaoslab.celery_settings import errors

    found = errors(settings)
    return found or next(iter(settings_errors(broker, dict(settings))), "")


def broker_settings(settings: dict[str, Any], broker: str) -> dict[str, Any]:
    """The settings of *settings* that *broker* takes (a role's defaults name the Redis transport's options, which a
    RabbitMQ lab drops)."""
    from chaoslab.brokers import setting_error

    return {name: value for name, value in settings.items() if not setting_error(broker, name, value)}


def broker_error(broker: Any) -> str:
    """"" for a broker the lab runs (lab_broker), else a one-line reason."""
    from chaoslab.brokers import broker_error as error

    return error(broker)


def rabbitmq_settings_error(settings: Any) -> str:
    """The first of rabbitmq_settings that rabbitmq.conf may not take from a user (one line), or ""."""
    from chaoslab.brokers import rabbitmq_setting_error

    if not isinstance(settings, dict):
        return f"rabbitmq_settings: a mapping of rabbitmq.conf keys to values, got {type(settings).__name__}"
    return next((problem for key, value in sorted(settings.items(), key=lambda item: str(item[0]))
                 if (problem := rabbitmq_setting_error(key, value))), "")


def rabbitmq_conf(settings: dict[str, Any]) -> dict[str, Any]:
    """The rabbitmq_settings that are rabbitmq.conf lines (checked by rabbitmq_settings_error first)."""
    from chaoslab.brokers import rabbitmq_conf as conf

    return conf(settings)


def rabbitmq_erl_args(settings: dict[str, Any]) -> str:
    """The rabbitmq_settings rabbitmq.conf has no key for, as ``-rabbit key value`` server arguments."""
    from chaoslab.brokers import rabbitmq_erl_args as erl_args

    return erl_args(settings)


def app_spec_errors(spec: Any) -> str:
    """The first thing wrong with the app under test's spec (celery_worker_app), one line naming the key, or ""."""
    from chaoslab.app_spec import errors

    return errors(spec)


def app_source_kind(spec: Any) -> str:
    """Where an app under test's code comes from: directory, distribution (a wheel or an sdist) or package; "" for
    none (the lab's own app)."""
    from chaoslab.app_spec import parse

    found = parse(spec)
    return found.kind if found is not None else ""


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"in_subnet": in_subnet, "lab_node_specs": lab_node_specs, "duration_seconds": duration_seconds,
                "celery_settings_errors": celery_settings_errors, "broker_error": broker_error,
                "rabbitmq_settings_error": rabbitmq_settings_error, "rabbitmq_conf": rabbitmq_conf,
                "rabbitmq_erl_args": rabbitmq_erl_args,
                "broker_settings": broker_settings, "fault_errors": fault_errors,
                "fault_agent_args": fault_agent_args, "app_spec_errors": app_spec_errors,
                "app_source_kind": app_source_kind}
