"""Which broker a lab runs and which settings each broker takes: one table (chaoslab.brokers) behind the inventory,
the worker role's checks and the config the nodes read."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from chaoslab import brokers
from tests.conftest import inventory, load_plugin

filters = load_plugin("plugins/filter/chaoslab.py")


def test_the_inventory_gives_every_node_the_broker_and_lab_broker_chooses_it():
    assert inventory()["_meta"]["hostvars"]["worker-1"]["lab_broker"] == "redis"
    hostvars = inventory({"LAB_BROKER": "rabbitmq"})["_meta"]["hostvars"]
    assert {host["lab_broker"] for host in hostvars.values()} == {"rabbitmq"}
    assert hostvars["redis"]["lab_rabbitmq_port"] == 5672 and hostvars["redis"]["lab_rabbitmq_vhost"] == "chaoslab"


def test_an_unknown_broker_is_refused_in_one_line():
    with pytest.raises(subprocess.CalledProcessError) as err:
        inventory({"LAB_BROKER": "kafka"})
    assert "LAB_BROKER: 'kafka' is not a broker the lab runs (redis, rabbitmq)" in err.value.stderr
    assert filters.broker_error("kafka") == "'kafka' is not a broker the lab runs (redis, rabbitmq)"
    assert filters.broker_error("rabbitmq") == ""
    with pytest.raises(ValueError, match="LAB_BROKER: 'sqs'"):
        brokers.chosen({"LAB_BROKER": "sqs"}, "redis")
    assert brokers.chosen({}, None) == "redis" and brokers.chosen({"LAB_BROKER": " rabbitmq "}, "redis") == "rabbitmq"


@pytest.mark.parametrize(("broker", "settings", "message"), [
    ("rabbitmq", {"visibility_timeout": 30},
     "visibility_timeout: an option of the Redis transport; this lab's broker is RabbitMQ"),
    ("rabbitmq", {"broker_transport_options": {"unacked_restore_interval": 2}},
     "broker_transport_options: unacked_restore_interval: an option of the Redis transport; this lab's broker is "
     "RabbitMQ"),
    ("redis", {"task_default_queue_type": "quorum"},
     "task_default_queue_type: redis has no 'quorum' queues (it has classic)"),
    ("rabbitmq", {"task_default_queue_type": "stream"},
     "task_default_queue_type: rabbitmq has no 'stream' queues (it has classic, quorum)"),
    ("redis", {"worker_detect_quorum_queues": False},
     "worker_detect_quorum_queues: a RabbitMQ setting; this lab's broker is Redis"),
])
def test_settings_of_the_other_broker_are_refused_in_one_line(broker, settings, message):
    assert brokers.settings_errors(broker, settings) == [message]
    assert filters.celery_settings_errors(settings, broker) == message


def test_each_broker_takes_its_own_settings_and_the_roles_defaults_lose_the_others():
    assert brokers.settings_errors("rabbitmq", {"task_default_queue_type": "quorum", "task_acks_late": True,
                                                "worker_detect_quorum_queues": True,
                                                "broker_transport_options": {"confirm_publish": True}}) == []
    assert brokers.settings_errors("redis", {"visibility_timeout": 30, "task_default_queue_type": "classic"}) == []
    defaults = {"task_acks_late": False, "visibility_timeout": 3600, "socket_timeout": 10, "worker_concurrency": 2}
    assert filters.broker_settings(defaults, "rabbitmq") == {"task_acks_late": False, "worker_concurrency": 2}
    assert filters.broker_settings(defaults, "redis") == defaults
    assert brokers.settings_errors("kafka", {}) == ["broker: 'kafka' is not a broker the lab runs (redis, rabbitmq)"]


def test_a_scenario_with_the_other_brokers_settings_is_refused_naming_the_setting_and_cell(tmp_path):
    from chaoslab.experiment.scenario import ScenarioError, check_broker, load_scenario

    path = tmp_path / "s.yml"
    path.write_text(yaml.safe_dump({
        "name": "s", "celery": {"task_acks_late": True},
        "matrix": {"visibility_timeout": [10, 30]},
        "load": {"rate": 5, "mix": [{"kind": "noop", "weight": 1}]},
        "phases": [{"name": "baseline", "duration": "5s"}, {"name": "drain", "duration": "5s"}]}))
    scenario = load_scenario(path)
    check_broker(scenario, "redis")
    with pytest.raises(ScenarioError) as err:
        check_broker(scenario, "rabbitmq")
    assert str(err.value) == (f"{path}: celery.visibility_timeout: an option of the Redis transport; this lab's broker "
                              "is RabbitMQ (matrix cell visibility_timeout=10)")


@pytest.mark.parametrize(("settings", "message"), [
    ({"listeners.tcp.2": "0.0.0.0:5672"}, "rabbitmq_settings: 'listeners.tcp.2' is not a setting the lab lets you "
                                          "change (one of channel_max, channel_tick_interval, "
                                          "consumer_timeout, "),
    ({"default_pass": "guest"}, "rabbitmq_settings: 'default_pass' is not a setting"),
    ({"loopback_users.guest": False}, "rabbitmq_settings: 'loopback_users.guest' is not a setting"),
    ({"consumer_timeout": "1000\nlisteners.tcp.2 = 0.0.0.0:5672"}, "rabbitmq_settings: consumer_timeout: a whole "
                                                                    "number, got '1000\\nlisteners.tcp.2"),
    ({"consumer_timeout": "{{ lookup('pipe', 'id') }}"}, "rabbitmq_settings: consumer_timeout: a whole number"),
    ({"heartbeat": [1, 2]}, "rabbitmq_settings: heartbeat: a whole number, got '[1, 2]'"),
    ({"heartbeat": ""}, "rabbitmq_settings: heartbeat: a whole number, got ''"),
    ({"consumer_timeout": "localhost"}, "rabbitmq_settings: consumer_timeout: a whole number, got 'localhost'"),
    ({"consumer_timeout": None}, "rabbitmq_settings: consumer_timeout: a whole number, got 'None'"),
    ({"consumer_timeout": 5.5}, "rabbitmq_settings: consumer_timeout: a whole number, got '5.5'"),
    ({"heartbeat": True}, "rabbitmq_settings: heartbeat: a whole number, got 'True'"),
    ({"vm_memory_high_watermark.relative": 1}, "rabbitmq_settings: vm_memory_high_watermark.relative: a number "
                                               "with a decimal point (0.4), got '1'"),
    ({"disk_free_limit.absolute": "2 GB"}, "rabbitmq_settings: disk_free_limit.absolute: a whole number of bytes, "
                                           "or with a unit (500MB, 2GiB), got '2 GB'"),
    ({"frame_max": "-"}, "rabbitmq_settings: frame_max: a whole number of bytes, or with KB, MB or GB, got '-'"),
    ({"tcp_listen_options.nodelay": "yes"}, "rabbitmq_settings: tcp_listen_options.nodelay: true or false, got "
                                            "'yes'"),
    ("consumer_timeout=1", "rabbitmq_settings: a mapping of rabbitmq.conf keys to values, got str"),
])
def test_rabbitmq_settings_take_only_the_keys_a_user_may_change_with_plain_values(settings, message):
    """rabbitmq.conf is the lab's (listeners on the lab address, its own user): a user's extra settings are flow
    control, timeouts and limits, each a plain value on its own line."""
    assert filters.rabbitmq_settings_error(settings).startswith(message), filters.rabbitmq_settings_error(settings)


def test_rabbitmq_settings_a_user_may_give():
    assert filters.rabbitmq_settings_error({"consumer_timeout": 5000, "vm_memory_high_watermark.relative": 0.4,
                                            "disk_free_limit.absolute": "2GB", "tcp_listen_options.nodelay": True,
                                            "heartbeat": 10}) == ""


def test_a_scenario_names_the_broker_it_runs_on_at_the_top_or_as_a_matrix_axis(tmp_path):
    from chaoslab.experiment.scenario import ScenarioError, check_broker, load_scenario, to_yaml

    def scenario(name: str, **extra):
        path = tmp_path / f"{name}.yml"
        path.write_text(yaml.safe_dump({
            "name": "s", "load": {"rate": 5, "mix": [{"kind": "noop", "weight": 1}]},
            "phases": [{"name": "baseline", "duration": "5s"}, {"name": "drain", "duration": "5s"}], **extra}))
        return path

    rabbit = load_scenario(scenario("top", broker="rabbitmq"))
    assert [cell.broker for _, cell in rabbit.cells()] == ["rabbitmq"]
    check_broker(rabbit, "redis")  # the runner switches the lab to it
    assert "broker: rabbitmq" in to_yaml(rabbit)
    axis = load_scenario(scenario("axis", celery={"visibility_timeout": 30},
                                  matrix={"broker": ["redis", "rabbitmq"], "task_acks_late": [False, True]}))
    assert [(label, cell.broker, cell.celery) for label, cell in axis.cells()][1:3] == [
        ("broker=redis,task_acks_late=true", "redis", {"visibility_timeout": 30, "task_acks_late": True}),
        ("broker=rabbitmq,task_acks_late=false", "rabbitmq", {"visibility_timeout": 30, "task_acks_late": False})]
    with pytest.raises(ScenarioError) as err:  # each cell's settings against its own broker
        check_broker(axis, "redis")
    assert str(err.value).endswith("celery.visibility_timeout: an option of the Redis transport; this lab's broker is "
                                   "RabbitMQ (matrix cell broker=rabbitmq,task_acks_late=false)")
    listed = load_scenario(scenario("list", matrix=[{"broker": "rabbitmq", "task_default_queue_type": "quorum"},
                                                    {"broker": "redis"}]))
    assert [(cell.broker, cell.celery) for _, cell in listed.cells()] == [
        ("rabbitmq", {"task_default_queue_type": "quorum"}), ("redis", {})]
    check_broker(listed, "redis")
    for extra, message in (
            ({"broker": "kafka"}, r"broker: 'kafka' is not a broker the lab runs \(redis, rabbitmq\)$"),
            ({"matrix": {"broker": ["redis", "kafka"]}}, r"matrix.broker\[1\]: 'kafka' is not a broker"),
            ({"matrix": {"broker": ["redis", "redis"]}}, "matrix.broker: names a broker twice"),
            ({"matrix": [{"broker": "sqs"}]}, r"matrix\[0\].broker: 'sqs' is not a broker"),
            ({"broker": "redis", "matrix": {"broker": ["redis", "rabbitmq"]}},
             r"matrix.broker: the scenario runs on redis \(broker: redis\): no broker axis")):
        with pytest.raises(ScenarioError, match=message):
            load_scenario(scenario("bad", **extra))


@pytest.mark.parametrize(("value", "message"), [
    ("1000", "rabbitmq_settings: channel_tick_interval: whole milliseconds from 100 to 3600000, got '1000'"),
    (True, "rabbitmq_settings: channel_tick_interval: whole milliseconds from 100 to 3600000, got 'True'"),
    (50, "rabbitmq_settings: channel_tick_interval: whole milliseconds from 100 to 3600000, got '50'"),
    (1.5, "rabbitmq_settings: channel_tick_interval: whole milliseconds from 100 to 3600000, got '1.5'"),
    ("1000 -eval halt()", "rabbitmq_settings: channel_tick_interval: whole milliseconds"),
])
def test_the_channel_tick_is_a_server_argument_of_whole_milliseconds(value, message):
    """channel_tick_interval has no rabbitmq.conf key: it reaches the server's command line, so only an integer in
    bounds passes (text there would be an Erlang argument of its own)."""
    assert filters.rabbitmq_settings_error({"channel_tick_interval": value}).startswith(message)


def test_the_channel_tick_goes_to_the_server_arguments_and_the_rest_to_rabbitmq_conf():
    settings = {"consumer_timeout": 5000, "channel_tick_interval": 1000}
    assert filters.rabbitmq_settings_error(settings) == ""
    assert filters.rabbitmq_conf(settings) == {"consumer_timeout": 5000}
    assert filters.rabbitmq_erl_args(settings) == "-rabbit channel_tick_interval 1000"
    assert filters.rabbitmq_erl_args({"consumer_timeout": 5000}) == ""


def test_a_scenario_gives_rabbitmq_settings_to_rabbitmq_runs_only(tmp_path):
    from chaoslab.experiment.scenario import ScenarioError, check_broker, load_scenario, to_yaml

    def scenario(**extra):
        path = tmp_path / "s.yml"
        path.write_text(yaml.safe_dump({
            "name": "s", "load": {"rate": 5, "mix": [{"kind": "noop", "weight": 1}]},
            "phases": [{"name": "baseline", "duration": "5s"}, {"name": "drain", "duration": "5s"}], **extra}))
        return path

    settings = {"consumer_timeout": 5000, "channel_tick_interval": 1000}
    rabbit = load_scenario(scenario(broker="rabbitmq", rabbitmq=settings))
    assert rabbit.rabbitmq == settings and rabbit.broker_vars == {"rabbitmq_settings": settings}
    check_broker(rabbit, "redis")
    assert "rabbitmq:\n  channel_tick_interval: 1000\n  consumer_timeout: 5000" in to_yaml(rabbit)
    assert load_scenario(scenario()).broker_vars == {}
    on_lab = load_scenario(scenario(rabbitmq=settings))  # no broker named: the lab's must be RabbitMQ
    check_broker(on_lab, "rabbitmq")
    with pytest.raises(ScenarioError) as err:
        check_broker(on_lab, "redis")
    assert str(err.value).endswith("rabbitmq: RabbitMQ settings, but the run's broker is redis")
    axis = load_scenario(scenario(rabbitmq=settings, matrix={"broker": ["rabbitmq", "redis"]}))
    with pytest.raises(ScenarioError) as err:
        check_broker(axis, "rabbitmq")
    assert str(err.value).endswith("rabbitmq: RabbitMQ settings, but the run's broker is redis (matrix cell "
                                   "broker=redis)")
    for given, message in (({"listeners.tcp.2": "0.0.0.0:5672"}, "rabbitmq.listeners.tcp.2: 'listeners.tcp.2' is "
                                                                 "not a setting the lab lets you change"),
                           ({"consumer_timeout": "5000\ndefault_pass = x"}, "rabbitmq.consumer_timeout: a whole "
                                                                            "number, got"),
                           ({"channel_tick_interval": "1s"}, "rabbitmq.channel_tick_interval: whole milliseconds"),
                           ("consumer_timeout", "rabbitmq: a mapping of RabbitMQ settings to values, got str")):
        with pytest.raises(ScenarioError) as err:
            load_scenario(scenario(broker="rabbitmq", rabbitmq=given))
        assert message in str(err.value) and "\n" not in str(err.value).replace("\\n", ""), err.value


def _hostile_payloads() -> dict[str, object]:
    import importlib.util

    from tests.conftest import ROOT

    spec = importlib.util.spec_from_file_location("hostile", ROOT / "tests" / "lab" / "hostile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._templates("x")


@pytest.mark.parametrize(("case", "value"), sorted(_hostile_payloads().items()))
@pytest.mark.parametrize("key", ["consumer_timeout", "disk_free_limit.absolute", "vm_memory_high_watermark.relative",
                                 "tcp_listen_options.nodelay", "channel_tick_interval"])
def test_no_hostile_value_reaches_rabbitmq_unless_it_is_one_of_the_keys_kind(key, case, value):
    """Every crafted value the lab's hostile-input tests send is refused as a RabbitMQ setting in one line, but a
    number that is a valid value of the key (200 ms of consumer timeout, 200 ms of tick; True for a boolean)."""
    problem = filters.rabbitmq_settings_error({key: value})
    valid = {("consumer_timeout", "wrong-type-number"), ("disk_free_limit.absolute", "wrong-type-number"),
             ("channel_tick_interval", "wrong-type-number"), ("tcp_listen_options.nodelay", "wrong-type-bool")}
    if (key, case) in valid:
        assert problem == ""
    else:
        assert problem.startswith(f"rabbitmq_settings: {key}: ") and "\n" not in problem, problem
