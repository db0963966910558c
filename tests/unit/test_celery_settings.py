"""Celery settings a worker may be given: Celery's own table of names and types, and the lab's rules on top."""

from __future__ import annotations

import datetime
import math

import pytest

from chaoslab import celery_settings
from chaoslab.celery_settings import CODE_OR_PATH, OWNED, celery_options, check, check_all, errors


def plain(value):
    """A Celery default as a scenario file could write it (None when it cannot: a timedelta, infinity)."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, datetime.timedelta) or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value


@pytest.mark.parametrize("name", sorted(celery_options()))
def test_every_celery_setting_is_taken_at_its_default_or_refused_with_a_reason(name):
    """Any setting of the installed Celery: no closed list of the lab's."""
    default = plain(celery_options()[name].default)
    if name in OWNED:
        assert errors({name: default}) == f"{name}: the lab sets it ({OWNED[name]})"
    elif name in CODE_OR_PATH:
        assert "names Python code to import or a file on the node" in errors({name: default})
    elif default is not None:
        assert errors({name: default}) == "", name


@pytest.mark.parametrize(("name", "value"), [
    ("worker_max_tasks_per_child", 50), ("worker_max_memory_per_child", 200_000),
    ("task_acks_on_failure_or_timeout", False), ("worker_cancel_long_running_tasks_on_connection_loss", True),
    ("broker_transport_options", {"visibility_timeout": 30, "polling_interval": 0.5}),
    ("task_default_rate_limit", "10/m"), ("task_default_priority", 5), ("task_routes", {"app.*": {"queue": "a"}}),
    ("worker_pool", "threads"), ("worker_pool", "gevent"), ("task_time_limit", None), ("task_time_limit", 2.5),
    ("visibility_timeout", 30), ("task_publish_retry_policy", {"max_retries": 0}),
    ("task_default_delivery_mode", "transient"), ("task_default_delivery_mode", 1),
    ("task_default_delivery_mode", "persistent"),
])
def test_settings_a_user_gives(name, value):
    assert check(name, value) == value


@pytest.mark.parametrize(("settings", "message"), [
    ({"task_acks_lat": True}, "task_acks_lat: unknown Celery setting (did you mean task_acks_late?)"),
    ({"frobnicate": 1}, "frobnicate: unknown Celery setting"),
    ({"CELERYD_PREFETCH_MULTIPLIER": 1}, "CELERYD_PREFETCH_MULTIPLIER: Celery's old name: use "
                                         "worker_prefetch_multiplier"),
    ({"broker_url": "redis://198.18.0.99/0"}, "broker_url: the lab sets it"),
    ({"broker_read_url": "redis://198.18.0.99/0"}, "broker_read_url: the lab sets it"),
    ({"result_extended": False}, "result_extended: the lab sets it (the lab's monitoring and checker"),
    ({"imports": ["os"]}, "imports: names Python code to import or a file on the node"),
    ({"worker_state_db": "/etc/passwd"}, "worker_state_db: names Python code to import or a file on the node"),
    ({"task_acks_late": "true"}, "task_acks_late: must be true or false, got 'true'"),
    ({"task_acks_late": 1}, "task_acks_late: must be true or false, got 1"),
    ({"worker_prefetch_multiplier": True}, "worker_prefetch_multiplier: must be a whole number, got True"),
    ({"worker_prefetch_multiplier": -1}, "worker_prefetch_multiplier: must be >= 0, got -1"),
    ({"task_default_delivery_mode": "durable"}, "task_default_delivery_mode: must be persistent or transient (2 or "
                                                "1), got 'durable'"),
    ({"task_default_delivery_mode": 3}, "task_default_delivery_mode: must be persistent or transient (2 or 1), got 3"),
    ({"worker_concurrency": 0}, "worker_concurrency: must be >= 1, got 0"),
    ({"worker_concurrency": "2"}, "worker_concurrency: must be a whole number, got '2'"),
    ({"task_time_limit": -5}, "task_time_limit: must be > 0, got -5"),
    ({"task_time_limit": float("nan")}, "task_time_limit: must be a number, got nan"),
    ({"worker_pool": "custom"}, "worker_pool: must be one of prefork, eventlet, gevent, solo, processes, threads"),
    ({"broker_transport_options": ["visibility_timeout", 30]}, "broker_transport_options: must be a mapping"),
    ({"broker_transport_options": {"global_keyprefix": "x:"}}, "broker_transport_options: global_keyprefix: the lab "
                                                               "reads the broker's keys by kombu's default names"),
    ({"broker_transport_options": {"visibility_timeout": "1h"}}, "broker_transport_options: visibility_timeout: must "
                                                                 "be a whole number, got '1h'"),
    ({"broker_transport_options": {1: 2}}, "broker_transport_options: must be a mapping, got {1: 2}"),
    ({"visibility_timeout": 30, "broker_transport_options": {"visibility_timeout": 60}},
     "visibility_timeout: given both as a setting and in broker_transport_options (give it once)"),
    ({"task_acks_late": None}, "task_acks_late: must not be null (Celery's default is False)"),
    ({3: True}, "3: a Celery setting's name is text, got 3"),
])
def test_bad_settings_get_one_line_naming_the_setting(settings, message):
    found = errors(settings)
    assert found.startswith(message) and "\n" not in found, found
    with pytest.raises(ValueError):
        check_all(settings)


def test_settings_must_be_a_mapping():
    assert errors(["task_acks_late"]).startswith("Celery settings must be a mapping")


def test_lab_shorthands_are_options_of_the_redis_transport():
    assert set(celery_settings.BROKER_ONLY) <= set(celery_settings.TRANSPORT_OPTIONS)
    assert not set(celery_settings.TRANSPORT_OPTIONS) & set(celery_options())


def test_the_lab_defaults_and_a_transport_option_given_whole_may_meet_on_a_node():
    settings = {"visibility_timeout": 3600, "broker_transport_options": {"visibility_timeout": 30}}
    assert errors(settings, once=False) == ""
    assert errors(settings).startswith("visibility_timeout: given both")


def test_a_node_refuses_a_pool_whose_package_it_lacks():
    from chaoslab.node.settings_check import problem

    for pool in ("gevent", "eventlet"):
        try:
            __import__(pool)
        except ImportError:
            assert problem({"worker_pool": pool}).startswith(f"worker_pool: {pool} cannot run on this node (")
    assert problem({"worker_pool": "threads", "task_acks_late": True}) == ""
    assert problem({"task_acks_late": "yes"}) == "task_acks_late: must be true or false, got 'yes'"


@pytest.mark.parametrize("value", ["5.4.0", "5.5.0rc1", "5.3.6.post1", None])
def test_a_celery_or_kombu_release_is_a_setting(value):
    assert check("celery_version", value) == value and check("kombu_version", value) == value


@pytest.mark.parametrize("value", [5.4, "5", ">=5.4", "5.4.0; rm -rf /", "latest", "5.4.0 --pre", "../5.4.0"])
def test_a_release_is_a_plain_version_nothing_pip_would_read_as_more(value):
    with pytest.raises(ValueError, match=r"must be a release of celery such as 5\.4\.0"):
        check("celery_version", value)


def test_a_release_is_no_configuration_of_celery():
    from chaoslab.node.celery_conf import celery_conf

    conf = celery_conf({"celery_version": "5.4.0", "kombu_version": "5.4.2", "task_acks_late": True})
    assert "celery_version" not in conf and "kombu_version" not in conf and conf["task_acks_late"] is True


def test_a_node_refuses_to_run_a_release_it_does_not_have():
    import celery

    from chaoslab.node.settings_check import problem

    assert problem({"celery_version": celery.__version__}) == ""
    assert problem({"celery_version": "5.0.0"}) == (f"celery_version: asked for celery 5.0.0, this node's worker has "
                                                    f"{celery.__version__}")
