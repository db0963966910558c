"""Scenario files: a valid one parses to the right values; each kind of mistake is one line naming file and key."""

import copy
import shutil

import pytest
import yaml

from chaoslab.experiment.scenario import (
    Condition,
    ScenarioError,
    check_tasks,
    fault_playbooks,
    find_root,
    load_scenario,
    node_sizes,
    to_yaml,
    validate_fault_params,
)
from tests.conftest import ROOT

FULL = {
    "name": "demo",
    "description": "free text",
    "celery": {"task_acks_late": False, "worker_prefetch_multiplier": 1, "task_time_limit": None},
    "load": {
        "rate": 20, "seed": 42, "publish_timeout": "2s",
        "mix": [{"kind": "sleep", "weight": 3, "args": {"ms": 500}}, {"kind": "noop"}],
    },
    "phases": [
        {"name": "baseline", "duration": "20s"},
        {"name": "fault", "duration": "20s",
         "fault": {"playbook": "worker-kill", "target": "workers[0]", "params": {"mode": "main", "every": "5s"}}},
        {"name": "recovery", "duration": "20s"},
        {"name": "drain", "duration": "1m"},
    ],
    "hypothesis": {"lost": 0, "success_ratio": ">= 0.99", "p95_end_to_end": "<= 5s", "recovery_time": "<=30s"},
    "matrix": {"task_acks_late": [False, True], "task_reject_on_worker_lost": [False, True]},
}
DELETE = object()


@pytest.fixture
def root(tmp_path):
    """A project root of its own: ansible.cfg, the argument specs and a worker-kill fault playbook."""
    for spec in ("roles/fault/meta/argument_specs.yml", "roles/celery_worker/meta/argument_specs.yml"):
        (tmp_path / spec).parent.mkdir(parents=True)
        shutil.copy(ROOT / spec, tmp_path / spec)
    (tmp_path / "ansible.cfg").write_text("[defaults]\n")
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "faults").mkdir()
    for playbook in ("worker-kill", "clear", "preflight", "no-spec"):
        (tmp_path / "faults" / f"{playbook}.yml").write_text(f"- name: {playbook}\n  hosts: workers\n")
    (tmp_path / "experiments").mkdir()
    return tmp_path


def changed(*changes):
    """FULL with (key path, value) changes; the value DELETE removes the key."""
    data = copy.deepcopy(FULL)
    for path, value in changes:
        *parents, last = path
        target = data
        for part in parents:
            target = target[part]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
    return data


def write(root, data, name="x.yml"):
    path = root / "experiments" / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def problem(root, data):
    """The error for a bad scenario, without the leading "<file>: " (checked to be there and one line)."""
    path = write(root, data)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message.removeprefix(f"{path}: ")


def test_full_scenario(root):
    path = write(root, FULL)
    scenario = load_scenario(path)
    assert (scenario.path, scenario.name, scenario.description) == (path, "demo", "free text")
    assert scenario.celery == {"task_acks_late": False, "worker_prefetch_multiplier": 1, "task_time_limit": None}
    load = scenario.load
    assert (load.rate, load.seed, load.publish_timeout) == (20.0, 42, 2.0)
    assert [(m.kind, m.weight, m.args) for m in load.mix] == [("sleep", 3.0, {"ms": 500}), ("noop", 1.0, {})]
    assert [(p.name, p.duration) for p in scenario.phases] == [
        ("baseline", 20.0), ("fault", 20.0), ("recovery", 20.0), ("drain", 60.0)]
    fault = scenario.fault_phase.fault
    assert scenario.fault_phase is scenario.phases[1]
    assert (fault.playbook, fault.target, fault.params) == (
        "worker-kill", "workers[0]", {"mode": "main", "every": "5s"})
    assert [(c.figure, c.op, c.value, c.text) for c in scenario.hypothesis] == [
        ("lost", "==", 0, "== 0"), ("success_ratio", ">=", 0.99, ">= 0.99"),
        ("p95_end_to_end", "<=", 5.0, "<= 5s"), ("recovery_time", "<=", 30.0, "<= 30s")]
    assert scenario.matrix == {"task_acks_late": [False, True], "task_reject_on_worker_lost": [False, True]}


def test_minimal_scenario_defaults(root):
    data = changed(*[((key,), DELETE) for key in ("description", "celery", "hypothesis", "matrix")],
                   (("load", "seed"), DELETE), (("load", "publish_timeout"), DELETE),
                   (("phases",), [{"name": "baseline", "duration": "250ms"}, {"name": "drain", "duration": "1h"}]))
    scenario = load_scenario(write(root, data))
    assert (scenario.description, scenario.celery, scenario.hypothesis, scenario.matrix) == ("", {}, [], {})
    assert (scenario.load.seed, scenario.load.publish_timeout) == (0, 2.0)
    assert [p.duration for p in scenario.phases] == [0.25, 3600.0]
    assert scenario.fault_phase is None
    assert scenario.cells() == [("", scenario)]


PHASES_AWRY = [{"name": "baseline", "duration": "1s"}, {"name": "recovery", "duration": "1s"},
               {"name": "fault", "duration": "1s", "fault": {"playbook": "worker-kill"}},
               {"name": "drain", "duration": "1s"}]


@pytest.mark.parametrize(("changes", "expected"), [
    pytest.param([(("frobnicate",), 1)],
                 "frobnicate: unknown key (allowed: name, description, broker, app, celery, redis, rabbitmq, nodes, "
                 "load, phases, hypothesis, matrix, sweep, published)",
                 id="unknown-top-key"),
    pytest.param([(("load", "burst"), 5)],
                 "load.burst: unknown key (allowed: rate, seed, publish_timeout, publisher, mix, replay)",
                 id="unknown-load-key"),
    pytest.param([(("load",), DELETE)], "load: missing (required)", id="missing-load"),
    pytest.param([(("load", "rate"), DELETE)], "load.rate: missing (required, unless the load replays a trace)",
                 id="missing-rate"),
    pytest.param([(("load", "replay"), "no-such.jsonl")], "load.rate: a replayed trace has its own tasks and times",
                 id="replay-and-rate"),
    pytest.param([(("name",), "Demo X")], "name: must match [a-z0-9][a-z0-9_-]*, got 'Demo X'", id="bad-name"),
    pytest.param([(("phases", 1, "duration"), 20)], "phases[1].duration: '20' has no unit (use ms, s, m or h)",
                 id="duration-without-unit"),
    pytest.param([(("phases", 0, "duration"), "-5s")],
                 "phases[0].duration: '-5s' is negative (a duration must be >= 0)", id="negative-duration"),
    pytest.param([(("phases", 3, "duration"), "0s")], "phases[3].duration: must be > 0, got '0s'", id="zero-duration"),
    pytest.param([(("load", "publish_timeout"), "soon")], "load.publish_timeout: 'soon' is not a duration",
                 id="garbage-duration"),
    pytest.param([(("load", "mix", 0, "kind"), "frob")],
                 "load.mix[0].kind: unknown task kind 'frob' (allowed: noop, sleep, http_request, cpu, memory)",
                 id="unknown-task-kind"),
    pytest.param([(("load", "mix", 0, "args", "seconds"), 1)],
                 "load.mix[0].args.seconds: unknown argument of sleep (allowed: ms)", id="unknown-task-arg"),
    pytest.param([(("load", "mix", 1, "args"), {"x": 1})],
                 "load.mix[1].args.x: unknown argument of noop (allowed: none)", id="arg-of-argless-task"),
    pytest.param([(("load", "mix", 0, "args", "ms"), "500")],
                 "load.mix[0].args.ms: must be int like the default 100, got '500'", id="task-arg-type"),
    pytest.param([(("load", "rate"), -5)], "load.rate: must be > 0, got -5", id="negative-rate"),
    pytest.param([(("load", "rate"), "fast")], "load.rate: must be a number, got 'fast'", id="rate-not-a-number"),
    pytest.param([(("load", "mix", 0, "weight"), 0)], "load.mix[0].weight: must be > 0, got 0", id="zero-weight"),
    pytest.param([(("load", "mix"), [])], "load.mix: must be a non-empty list of tasks, got []", id="empty-mix"),
    pytest.param([(("load", "seed"), 1.5)], "load.seed: must be a whole number, got 1.5", id="float-seed"),
    pytest.param([(("phases",), PHASES_AWRY)],
                 "phases[2].name: 'fault' must come before 'recovery' (order: baseline, fault, recovery, drain)",
                 id="phases-out-of-order"),
    pytest.param([(("phases", 2), {"name": "baseline", "duration": "1s"})],
                 "phases[2].name: phase 'baseline' appears twice (each phase at most once)", id="duplicate-phase"),
    pytest.param([(("phases", 0), DELETE)],
                 "phases: the baseline phase is missing (required: baseline, drain)", id="missing-baseline"),
    pytest.param([(("phases", 3), DELETE)],
                 "phases: the drain phase is missing (required: baseline, drain)", id="missing-drain"),
    pytest.param([(("phases", 0, "name"), "warmup")],
                 "phases[0].name: unknown phase 'warmup' (allowed, in order: baseline, fault, recovery, drain)",
                 id="unknown-phase"),
    pytest.param([(("phases", 0, "fault"), {"playbook": "worker-kill", "params": {"mode": "all"}})],
                 "phases[0].fault: only the fault phase takes a fault", id="fault-on-baseline"),
    pytest.param([(("phases", 1, "fault"), DELETE)], "phases[1].fault: required in the fault phase",
                 id="fault-phase-without-fault"),
    pytest.param([(("phases", 1, "fault", "playbook"), "disk-fill")],
                 "phases[1].fault.playbook: unknown fault playbook 'disk-fill' (available: worker-kill)",
                 id="unknown-playbook"),
    pytest.param([(("phases", 1, "fault", "params", "signal"), 9)],
                 "phases[1].fault.params.signal: unknown parameter of worker-kill (allowed: mode, every, duration, "
                 "trigger)",
                 id="unknown-fault-param"),
    pytest.param([(("phases", 1, "fault", "params", "mode"), "sideways")],
                 "phases[1].fault.params.mode: 'sideways' is not one of main, child, all", id="bad-fault-choice"),
    pytest.param([(("phases", 1, "fault", "params", "every"), 5)],
                 "phases[1].fault.params.every: '5' has no unit (use ms, s, m or h)", id="fault-duration-unit"),
    pytest.param([(("phases", 1, "fault", "target"), ["w1"])],
                 "phases[1].fault.target: must be an Ansible host pattern string, got ['w1']", id="bad-target"),
    pytest.param([(("hypothesis", "lost_tasks"), 0)], "hypothesis.lost_tasks: unknown figure (allowed: completed, "
                 "duplicated_completed, duplicated_not_completed, failed, failed_by_worker, pending, lost, "
                 "publish_failed, duplicated, never_completed, unknown, success_ratio,", id="unknown-figure"),
    pytest.param([(("hypothesis", "stuck"), 0)], "hypothesis.stuck: is no longer a figure: use pending (still "
                 "queued, reserved or running at the end) or lost (gone)", id="retired-figure"),
    pytest.param([(("hypothesis", "success_ratio"), "=> 0.99")],
                 "hypothesis.success_ratio: must be a number or '<op> value' with op in <=, <, >=, >, ==, !=, "
                 "got '=> 0.99'", id="bad-operator"),
    pytest.param([(("hypothesis", "success_ratio"), ">= 1.5")], "hypothesis.success_ratio: must be <= 1, got 1.5",
                 id="ratio-above-one"),
    pytest.param([(("hypothesis", "lost"), "<= 0.5")],
                 "hypothesis.lost: must be a whole number for count figures, got '0.5'", id="fractional-count"),
    pytest.param([(("hypothesis", "p95_end_to_end"), "<= 5")],
                 "hypothesis.p95_end_to_end: '5' has no unit (use ms, s, m or h)", id="latency-without-unit"),
    pytest.param([(("celery", "task_ack_late"), True)],
                 "celery.task_ack_late: unknown Celery setting (did you mean task_acks_late?)",
                 id="unknown-celery-setting"),
    pytest.param([(("matrix", "prefetch"), [1, 4])], "matrix.prefetch: unknown Celery setting",
                 id="unknown-matrix-setting"),
    pytest.param([(("celery", "CELERY_ACKS_LATE"), True)],
                 "celery.CELERY_ACKS_LATE: Celery's old name: use task_acks_late", id="old-setting-name"),
    pytest.param([(("celery", "broker_url"), "redis://198.18.0.99:6379/0")],
                 "celery.broker_url: the lab sets it (the lab points every worker at its own broker)",
                 id="lab-owned-broker"),
    pytest.param([(("celery", "result_backend"), "redis://198.18.0.99:6379/1")],
                 "celery.result_backend: the lab sets it (the lab's checker reads results", id="lab-owned-backend"),
    pytest.param([(("celery", "worker_consumer"), "os:system")],
                 "celery.worker_consumer: names Python code to import or a file on the node", id="code-setting"),
    pytest.param([(("celery", "worker_max_tasks_per_child"), 0)],
                 "celery.worker_max_tasks_per_child: must be >= 1, got 0", id="zero-max-tasks-per-child"),
    pytest.param([(("celery", "worker_max_memory_per_child"), "200MB")],
                 "celery.worker_max_memory_per_child: must be a whole number, got '200MB'",
                 id="max-memory-per-child-text"),
    pytest.param([(("celery", "broker_transport_options"), "visibility_timeout=30")],
                 "celery.broker_transport_options: must be a mapping, got", id="transport-options-not-a-mapping"),
    pytest.param([(("celery", "broker_transport_options"), {"global_keyprefix": "app:"})],
                 "celery.broker_transport_options: global_keyprefix: the lab reads the broker's keys",
                 id="transport-key-prefix"),
    pytest.param([(("celery", "broker_transport_options"), {"visibility_timeout": 0})],
                 "celery.broker_transport_options: visibility_timeout: must be >= 1, got 0",
                 id="transport-option-bound"),
    pytest.param([(("celery", "visibility_timeout"), 30),
                  (("celery", "broker_transport_options"), {"visibility_timeout": 60})],
                 "celery: visibility_timeout: given both as a setting and in broker_transport_options",
                 id="transport-option-twice"),
    pytest.param([(("matrix", "task_default_queue"), ["a", "../../etc"])],
                 "matrix.task_default_queue[1]: a matrix value names a directory", id="matrix-value-path"),
    pytest.param([(("matrix", "broker_transport_options"), [{"visibility_timeout": 30}])],
                 "matrix.broker_transport_options[0]: a matrix value names a directory", id="matrix-value-mapping"),
    pytest.param([(("celery", "task_acks_on_failure_or_timeout"), "no")],
                 "celery.task_acks_on_failure_or_timeout: must be true or false, got 'no'", id="bool-as-text"),
    pytest.param([(("celery", "worker_prefetch_multiplier"), -1)],
                 "celery.worker_prefetch_multiplier: must be >= 0, got -1", id="negative-prefetch"),
    pytest.param([(("matrix", "worker_concurrency"), [2, 0])], "matrix.worker_concurrency[1]: must be >= 1, got 0",
                 id="zero-concurrency-in-matrix"),
    pytest.param([(("celery", "worker_pool"), "custom")],
                 "celery.worker_pool: must be one of prefork, eventlet, gevent, solo, processes, threads, got 'custom'",
                 id="bad-pool"),
    pytest.param([(("load", "mix"), [{"task": "shop.tasks.charge; id"}])],
                 "load.mix[0].task: must be a task's registered name", id="app-task-name"),
    pytest.param([(("load", "mix"), [{"task": "shop.tasks.charge", "args": {"amount": 3}}])],
                 "load.mix[0].args: must be a list of plain data (the task's positional arguments)",
                 id="app-task-args-mapping"),
    pytest.param([(("load", "mix"), [{"task": "shop.tasks.charge", "kwargs": [3]}])],
                 "load.mix[0].kwargs: must be a mapping of plain data", id="app-task-kwargs-list"),
    pytest.param([(("app",), {"app": "shop.celery:app", "source": "no-such-dir"})],
                 "app.source: no such directory: ", id="app-source-missing"),
    pytest.param([(("app",), {"app": "shop celery", "source": "."})],
                 "app.app: name the Celery app as celery -A takes it", id="app-path-bad"),
    pytest.param([(("app",), {"app": "shop.celery:app", "source": ".", "requirements": ["--index-url=x"]})],
                 "app.requirements[0]: a requirement such as requests==2.32.3 (no pip options)", id="app-pip-option"),
    pytest.param([(("app",), "shop")], "app: must be a mapping with keys from app, source, package, requirements",
                 id="app-not-a-mapping"),
    pytest.param([(("load", "mix"), [{"task": "shop.charge", "kwargs": {"order": {"$sequence": 1}}}])],
                 "load.mix[0].kwargs.order.$sequence: unknown generator (allowed: $seq, $id, $int, $choice)",
                 id="unknown-generator"),
    pytest.param([(("load", "mix"), [{"chain": [{"task": "a", "args": [{"$int": [9, 1]}]}]}])],
                 "load.mix[0].chain[0].args[0].$int: must be [low, high]", id="generator-in-a-canvas"),
    pytest.param([(("load", "mix"), [{"kind": "memory", "args": {"mb": {"$int": [1, 2, 3]}}}])],
                 "load.mix[0].args.mb.$int: must be [low, high]", id="generator-in-a-lab-kind"),
    pytest.param([(("load", "publisher"), "kombu")], "load.publisher: must be one of raw, celery, got 'kombu'",
                 id="unknown-publisher"),
    pytest.param([(("load", "mix"), [{"chain": [{"task": "a"}], "group": [{"task": "b"}]}])],
                 "load.mix[0]: give one canvas shape, not chain and group", id="canvas-two-shapes"),
    pytest.param([(("load", "mix"), [{"chord": [{"task": "a"}]}])],
                 "load.mix[0].callback: a chord needs a callback", id="chord-without-callback"),
    pytest.param([(("load", "mix"), [{"group": [{"task": "a"}], "callback": {"task": "b"}}])],
                 "load.mix[0].callback: only a chord has a callback, not a group", id="group-with-callback"),
    pytest.param([(("load", "mix"), [{"chain": [{"task": "a", "weight": 3}]}])],
                 "load.mix[0].chain[0].weight: a task inside a canvas has no weight", id="canvas-member-weight"),
    pytest.param([(("load", "mix"), [{"chain": [{"task": "a; rm -rf /"}]}])],
                 "load.mix[0].chain[0].task: must be a task's registered name", id="canvas-member-name"),
    pytest.param([(("load", "mix"), [{"chain": [{"task": "a"}] * 101}])],
                 "load.mix[0].chain: must hold 1 to 100 tasks, got 101", id="canvas-too-long"),
    pytest.param([(("load", "mix"), [{"task": "a", "options": {"countdown": 30}}])],
                 "load.mix[0].options.countdown: '30' has no unit", id="countdown-no-unit"),
    pytest.param([(("load", "mix"), [{"task": "a", "options": {"expires": "0s"}}])],
                 "load.mix[0].options.expires: must be between 1ms and 168h", id="expires-zero"),
    pytest.param([(("load", "mix"), [{"task": "a", "options": {"routing_key": "x"}}])],
                 "load.mix[0].options.routing_key: unknown publish option (allowed: countdown, eta, expires, queue, "
                 "priority)", id="unknown-publish-option"),
    pytest.param([(("load", "mix"), [{"task": "a", "options": {"priority": 3}}])],
                 "load.mix[0].options.priority: needs load.publisher: celery", id="priority-with-raw"),
    pytest.param([(("load", "mix"), [{"task": "a", "options": {"priority": 300}}]), (("load", "publisher"), "celery")],
                 "load.mix[0].options.priority: must be <= 255", id="priority-too-high"),
    pytest.param([(("load", "mix"), [{"task": "a", "options": {"queue": "a b; rm"}}])],
                 "load.mix[0].options.queue: must be a queue's name", id="queue-name"),
    pytest.param([(("load", "mix"), [{"task": "a", "options": {"countdown": "5s", "eta": "5s"}}])],
                 "load.mix[0].options.eta: give a countdown or an eta, not both", id="countdown-and-eta"),
    pytest.param([(("load", "mix"), [{"task": "shop.tasks.charge", "kind": "noop"}])],
                 "load.mix[0].kind: unknown key (allowed: task, weight, args, kwargs, options)",
                 id="app-task-and-kind"),
    pytest.param([(("celery", "task_acks_late"), "maybe")], "celery.task_acks_late: must be true or false, got 'maybe'",
                 id="bad-bool"),
    pytest.param([(("celery", "task_acks_late"), None)],
                 "celery.task_acks_late: must not be null (Celery's default is False)",
                 id="null-setting"),
    pytest.param([(("matrix", "task_acks_late"), True)],
                 "matrix.task_acks_late: must be a non-empty list of values, got True", id="matrix-not-a-list"),
])
def test_bad_scenario(root, changes, expected):
    assert problem(root, changed(*changes)).startswith(expected)


@pytest.mark.parametrize(("text", "expected"), [
    ("- a\n- b\n", "must be a mapping with keys from name, description, broker, app, celery, redis, rabbitmq, nodes, "
                 "load, phases, hypothesis, matrix"),
    ("", "must be a mapping"),
    ("name: [demo\n", "invalid YAML at line 2, column 1: expected ',' or ']'"),
])
def test_bad_file(root, text, expected):
    assert problem(root, text).startswith(expected)


def test_missing_file(root):
    path = root / "experiments" / "absent.yml"
    with pytest.raises(ScenarioError, match=f"^{path}: cannot read: No such file or directory$"):
        load_scenario(path)


def test_error_names_the_path_as_given(root, monkeypatch):
    write(root, changed((("load", "rate"), -5)))
    monkeypatch.chdir(root)
    with pytest.raises(ScenarioError) as info:
        load_scenario("experiments/x.yml")
    assert str(info.value) == "experiments/x.yml: load.rate: must be > 0, got -5"
    assert (info.value.key, info.value.message) == ("load.rate", "must be > 0, got -5")
    assert isinstance(info.value, ValueError)


def test_root_is_found_above_the_scenario_or_given(root, tmp_path_factory):
    assert find_root(root / "experiments" / "x.yml") == root
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    assert find_root(elsewhere / "x.yml") == ROOT  # no ansible.cfg above: the package's project
    path = write(root, FULL)
    moved = shutil.copy(path, elsewhere / "x.yml")
    assert load_scenario(moved, root=root).fault_phase.fault.playbook == "worker-kill"


def test_matrix_cells(root):
    data = changed((("matrix", "worker_prefetch_multiplier"), [0, 1, 4]))
    scenario = load_scenario(write(root, data))
    cells = scenario.cells()
    assert len(cells) == 2 * 2 * 3
    assert [label for label, _ in cells[:4]] == [
        "task_acks_late=false,task_reject_on_worker_lost=false,worker_prefetch_multiplier=0",
        "task_acks_late=false,task_reject_on_worker_lost=false,worker_prefetch_multiplier=1",
        "task_acks_late=false,task_reject_on_worker_lost=false,worker_prefetch_multiplier=4",
        "task_acks_late=false,task_reject_on_worker_lost=true,worker_prefetch_multiplier=0",
    ]
    label, last = cells[-1]
    assert label == "task_acks_late=true,task_reject_on_worker_lost=true,worker_prefetch_multiplier=4"
    assert last.celery == {"task_acks_late": True, "worker_prefetch_multiplier": 4, "task_time_limit": None,
                           "task_reject_on_worker_lost": True}
    assert last.matrix == {} and last.cells() == [("", last)]
    assert (last.name, last.phases, last.load) == (scenario.name, scenario.phases, scenario.load)
    assert scenario.celery["task_acks_late"] is False  # the base scenario is untouched
    assert len({label for label, _ in cells}) == len(cells)


def test_matrix_as_a_list_runs_each_entry_as_given(root):
    entries = [{"task_acks_late": False}, {"task_acks_late": True, "task_reject_on_worker_lost": False},
               {"task_acks_late": True, "task_reject_on_worker_lost": True}]
    scenario = load_scenario(write(root, changed((("matrix",), entries))))
    assert [label for label, _ in scenario.cells()] == [
        "task_acks_late=false", "task_acks_late=true,task_reject_on_worker_lost=false",
        "task_acks_late=true,task_reject_on_worker_lost=true"]
    assert scenario.cells()[1][1].celery["task_reject_on_worker_lost"] is False


def test_a_list_entry_changes_the_hypothesis_of_its_run(root):
    entries = [{"task_acks_late": False, "hypothesis": {"lost": ">= 1", "failed": 0}}, {"task_acks_late": True}]
    scenario = load_scenario(write(root, changed((("matrix",), entries))))
    (_, early), (_, late) = scenario.cells()
    assert {c.figure: c.text for c in early.hypothesis} == {
        "success_ratio": ">= 0.99", "p95_end_to_end": "<= 5s", "recovery_time": "<= 30s", "lost": ">= 1",
        "failed": "== 0"}
    assert late.hypothesis == scenario.hypothesis
    assert early.cell_hypotheses == [] and early.matrix == {}
    bad = [{"task_acks_late": False, "hypothesis": {"lost": "lots"}}]
    assert problem(root, yaml.safe_dump({**FULL, "matrix": bad})).endswith(
        "matrix[0].hypothesis.lost: must be a number or '<op> value' with op in <=, <, >=, >, ==, !=, got 'lots'")


@pytest.mark.parametrize(("matrix", "expected"), [
    ([{"task_acks_late": True}, {"task_acks_late": True}], "matrix[1]: repeats an earlier entry"),
    ([{"acks": True}], "matrix[0].acks: unknown Celery setting"),
    ([{"worker_prefetch_multiplier": -1}], "matrix[0].worker_prefetch_multiplier: must be >= 0, got -1"),
    (["task_acks_late"], "matrix[0]: must be a mapping"),
])
def test_bad_matrix_list(root, matrix, expected):
    assert expected in problem(root, yaml.safe_dump({**FULL, "matrix": matrix}))


def test_redis_settings(root):
    shutil.copytree(ROOT / "roles" / "redis" / "meta", root / "roles" / "redis" / "meta")
    scenario = load_scenario(write(root, {**FULL, "redis": {"aof": True, "appendfsync": "everysec"}}))
    assert scenario.redis == {"redis_aof": True, "redis_appendfsync": "everysec"}
    assert scenario.cells()[0][1].redis == scenario.redis
    assert load_scenario(write(root, FULL)).redis == {}
    assert problem(root, yaml.safe_dump({**FULL, "redis": {"appendfsync": "sometimes"}})).endswith(
        "redis.appendfsync: must be one of always, everysec, no, got 'sometimes'")
    assert problem(root, yaml.safe_dump({**FULL, "redis": {"maxmemory": 5}})).endswith(
        "redis.maxmemory: unknown Redis setting (allowed: aof, appendfsync, rdb)")


def test_node_sizes_for_a_run(root):
    scenario = load_scenario(write(root, {**FULL, "nodes": {"workers": {"memory": "1000MiB", "cpus": 1},
                                                             "worker-2": {"cpus": 0.5}, "redis": {"memory": "1GiB"}}}))
    assert scenario.nodes == {"workers": {"memory_mib": 1000, "cpus": 1.0}, "worker-2": {"cpus": 0.5},
                              "redis": {"memory_mib": 1024}}
    groups = {"all": ["redis", "worker-1", "worker-2"], "workers": ["worker-1", "worker-2"], "redis": ["redis"]}
    # a later pattern's size wins for the hosts it names, key by key
    assert node_sizes(scenario, groups) == {"worker-1": {"memory_mib": 1000, "cpus": 1.0},
                                            "worker-2": {"memory_mib": 1000, "cpus": 0.5},
                                            "redis": {"memory_mib": 1024}}
    assert scenario.cells()[0][1].nodes == scenario.nodes
    assert load_scenario(write(root, FULL)).nodes == {}
    with pytest.raises(ScenarioError, match=r"nodes\.monitor: node: 'monitor' matches no node of the inventory"):
        node_sizes(load_scenario(write(root, {**FULL, "nodes": {"monitor": {"cpus": 1}}})), groups)


@pytest.mark.parametrize(("nodes", "expected"), [
    ({"workers": {"memory": "1000"}}, "nodes.workers.memory: '1000' has no unit"),
    ({"workers": {"memory": "1000.5MiB"}}, "nodes.workers.memory: must be a whole number of MiB"),
    ({"workers": {"memory": "32MiB"}}, "nodes.workers.memory: must be >= 64, got 32"),
    ({"workers": {"cpus": 0}}, "nodes.workers.cpus: must be >= 0.05, got 0"),
    ({"workers": {"cpus": "two"}}, "nodes.workers.cpus: must be a number, got 'two'"),
    ({"workers": {"disk": "1GiB"}}, "nodes.workers.disk: unknown size (allowed: cpus, memory)"),
    ({"workers": {}}, "nodes.workers: needs cpus, memory or both"),
    ({"workers;reboot": {"cpus": 1}}, "nodes.workers;reboot: "),
    (["workers"], "nodes: must map node patterns to sizes"),
])
def test_bad_node_sizes(root, nodes, expected):
    assert problem(root, yaml.safe_dump({**FULL, "nodes": nodes})).startswith(expected)


def test_validate_fault_params(root):
    assert validate_fault_params(root, "worker-kill", {"mode": "child", "every": "5s", "duration": "30s"}) == {
        "mode": "child", "every": "5s", "duration": "30s"}
    assert validate_fault_params(root, "worker-kill", {}) == {}
    with pytest.raises(ScenarioError) as info:
        validate_fault_params(root, "worker-kill", {"mode": "sideways"})
    assert str(info.value) == "mode: 'sideways' is not one of main, child, all"
    with pytest.raises(ScenarioError, match=r"^duration: '-1s' is negative"):
        validate_fault_params(root, "worker-kill", {"duration": "-1s"})
    for playbook in ("nope", "clear", "preflight", "no-spec"):  # helpers and playbooks without an entry point
        with pytest.raises(ScenarioError, match=rf"^unknown fault playbook '{playbook}' \(available: worker-kill\)$"):
            validate_fault_params(root, playbook, {})


@pytest.mark.skipif(not (ROOT / "faults" / "worker-kill.yml").is_file(), reason="no faults/worker-kill.yml yet")
def test_real_project_root(tmp_path):
    path = tmp_path / "x.yml"
    path.write_text(yaml.safe_dump(FULL))
    assert "worker-kill" in fault_playbooks(ROOT) and "clear" not in fault_playbooks(ROOT)
    assert load_scenario(path).fault_phase.fault.params == {"mode": "main", "every": "5s"}


def condition(op, value):
    return Condition("figure", op, value, f"{op} {value}")


@pytest.mark.parametrize(("op", "value", "actual", "holds"), [
    ("==", 0, 0, True), ("==", 0, 0.0, True), ("==", 0, 1, False),
    ("!=", 0, 0, False), ("!=", 0, 1e-9, True),
    ("<=", 5.0, 5.0, True), ("<=", 5.0, 5.000001, False), ("<", 5.0, 5.0, False), ("<", 5.0, 4.999, True),
    (">=", 0.99, 0.99, True), (">=", 0.99, 0.9899, False), (">", 0.99, 0.99, False), (">", 0.99, 1.0, True),
    ("==", 0, None, False), ("!=", 0, None, False), ("<=", 5.0, None, False), (">=", 0, None, False),
])
def test_condition_holds(op, value, actual, holds):
    assert condition(op, value).holds(actual) is holds


PROJECT_SCENARIOS = sorted(path for path in (ROOT / "experiments").rglob("*.yml") if "reference" not in path.parts)


@pytest.mark.parametrize("path", PROJECT_SCENARIOS, ids=lambda path: str(path.relative_to(ROOT)))
def test_each_cell_written_as_a_scenario_file_loads_back_as_the_same_run(path, tmp_path):
    """The scenario.yml a run keeps can be run again as it is."""
    for label, cell in load_scenario(path).cells():
        copy = tmp_path / "scenario.yml"
        copy.write_text(to_yaml(cell, f"run r1, cell {label}\nfrom {path}"))
        back = load_scenario(copy, ROOT)
        assert (back.name, back.celery, back.redis, back.load, back.phases) == (
            cell.name, cell.celery, cell.redis, cell.load, cell.phases)
        assert back.hypothesis == cell.hypothesis
        assert not back.matrix
        assert copy.read_text().startswith("# run r1, cell ")


def test_several_faults_in_one_phase_each_with_its_window(root):
    faults = [{"playbook": "worker-kill", "target": "workers[0]"},
              {"playbook": "worker-kill", "target": "workers[1]", "at": "2s", "duration": "3s",
               "params": {"mode": "child"}}]
    data = changed((("phases", 1, "fault"), DELETE), (("phases", 1, "faults"), faults))
    scenario = load_scenario(write(root, data))
    phase = scenario.phases[1]
    assert [(f.target, f.at, f.duration, f.length(phase.duration)) for f in phase.faults] == [
        ("workers[0]", 0.0, None, phase.duration), ("workers[1]", 2.0, 3.0, 3.0)]
    assert phase.fault == phase.faults[0]
    again = load_scenario(write(root, to_yaml(scenario), "again.yml"))
    assert again.phases == scenario.phases


@pytest.mark.parametrize(("faults", "expected"), [
    ([{"playbook": "worker-kill", "at": "-1s"}], "phases[1].faults[0].at: "),
    ([{"playbook": "worker-kill", "at": "60s"}], "phases[1].faults[0].at: must be within the phase"),
    ([{"playbook": "worker-kill", "at": "5s", "duration": "20s"}],
     "phases[1].faults[0].duration: at + duration (25s) must be within the phase"),
    ([{"playbook": "worker-kill", "duration": "0s"}], "phases[1].faults[0].duration: must be > 0"),
    ([{"playbook": "worker-kill", "target": "workers[0]"}, {"playbook": "worker-kill", "target": "workers[0]",
                                                           "at": "3s"}],
     "phases[1].faults[1]: worker-kill on workers[0] overlaps faults[0] (one at a time on a node)"),
    ("worker-kill", "phases[1].faults: must be a non-empty list of faults"),
])
def test_bad_several_faults(root, faults, expected):
    data = changed((("phases", 1, "fault"), DELETE), (("phases", 1, "faults"), faults))
    assert problem(root, data).startswith(expected)


def test_an_empty_faults_list_is_a_control_run_and_how_one_is_kept(root):
    """faults: [] runs the fault phase without a fault: how a run's scenario.yml keeps a null control or a sweep's
    zero dose, so that it runs again as it ran."""
    path = root / "control.yml"
    path.write_text(yaml.safe_dump(changed((("phases", 1, "fault"), DELETE), (("phases", 1, "faults"), []))))
    control = load_scenario(path, root)
    assert control.phases[1].name == "fault" and control.phases[1].faults == () and control.fault_phase is None
    written = root / "written.yml"
    written.write_text(to_yaml(control))
    assert "faults: []" in written.read_text() and load_scenario(written, root).phases == control.phases


def test_fault_and_faults_together_are_refused(root):
    data = changed((("phases", 1, "faults"), [{"playbook": "worker-kill"}]))
    assert problem(root, data).startswith("phases[1].faults: give fault (one) or faults (a list), not both")


PUBLISHED = {"source": "the prototype", "figures": {"mean_run_time.cpu": {"baseline": "1.41s", "fault": "4.35s"}}}


def test_published_figures_load_with_their_units_and_write_back(root):
    scenario = load_scenario(write(root, changed((("published",), PUBLISHED))), root)
    (figure,) = scenario.published
    assert (figure.name, figure.baseline, figure.fault, scenario.published_source) == (
        "mean_run_time.cpu", 1.41, 4.35, "the prototype")
    assert figure.figures == ("mean_run_time_baseline.cpu", "mean_run_time_fault.cpu")
    assert scenario.published_settings == {}
    given = {**PUBLISHED, "settings": {"task_acks_late": False}}
    scenario = load_scenario(write(root, changed((("published",), given))), root)
    assert scenario.published_settings == {"task_acks_late": False}
    again = load_scenario(write(root, yaml.safe_load(to_yaml(scenario))), root)
    assert again.published_settings == {"task_acks_late": False} and again.published == scenario.published


@pytest.mark.parametrize(("published", "message"), [
    ({"figures": PUBLISHED["figures"]}, "published.source: missing (required)"),
    ({**PUBLISHED, "source": " "}, "published.source: must say where the figures come from"),
    ({**PUBLISHED, "figures": {}}, "published.figures: must map figures to their baseline and fault"),
    ({**PUBLISHED, "figures": {"lost": {"baseline": 1, "fault": 2}}}, "published.figures.lost: unknown published"),
    ({**PUBLISHED, "figures": {"mean_run_time.gpu": {"baseline": "1s", "fault": "2s"}}}, "unknown published figure"),
    ({**PUBLISHED, "figures": {"mean_run_time": {"baseline": 1.41, "fault": "4s"}}}, "has no unit"),
    ({**PUBLISHED, "figures": {"success_ratio": {"baseline": 1, "fault": 1.5}}}, "a ratio must be <= 1"),
    ({**PUBLISHED, "figures": {"throughput.cpu": {"baseline": 1}}}, "exactly baseline and fault"),
    ({**PUBLISHED, "settings": {"task_acks_lately": True}}, "published.settings.task_acks_lately: unknown"),
    ({**PUBLISHED, "settings": {"task_acks_late": 3}},
     "published.settings.task_acks_late: must be true or false, got 3"),
])
def test_bad_published_figures_are_one_line(root, published, message):
    assert message in problem(root, changed((("published",), published)))


def test_a_mix_of_an_apps_tasks_beside_the_labs_and_its_round_trip(root):
    mix = [{"task": "shop.tasks.charge", "weight": 3, "args": [7, "EUR"], "kwargs": {"note": None}},
           {"kind": "noop"}]
    scenario = load_scenario(write(root, changed((("load", "mix"), mix))))
    charge, noop = scenario.load.mix
    assert (charge.kind, charge.task_name, charge.positional, charge.args) == (
        "shop.tasks.charge", "shop.tasks.charge", (7, "EUR"), {"note": None})
    assert noop.task_name == "chaoslab.noop"
    again = load_scenario(write(root, to_yaml(scenario), "again.yml"))
    assert again.load == scenario.load


def test_every_task_of_a_canvas_must_be_the_workers(root):
    mix = [{"chord": [{"task": "shop.line"}], "callback": {"task": "shop.total"}}]
    scenario = load_scenario(write(root, changed((("load", "mix"), mix))))
    check_tasks(scenario, {"shop.line", "shop.total"})
    with pytest.raises(ScenarioError, match=r"load.mix\[0\].callback.task: the workers' app has no task 'shop.total'"):
        check_tasks(scenario, {"shop.line"})


def test_a_canvas_and_publish_options_survive_the_scenarios_own_dump(root):
    mix = [{"chain": [{"task": "shop.reserve", "args": [1], "options": {"countdown": "90s"}}, {"kind": "noop"}],
            "weight": 2, "immutable": True}]
    scenario = load_scenario(write(root, changed((("load", "mix"), mix))))
    (canvas,) = scenario.load.mix
    assert canvas.members[0].options == {"countdown": 90.0} and canvas.immutable
    assert canvas.to_data() == {"weight": 2.0, "chain": [{"task": "shop.reserve", "args": [1],
                                                          "options": {"countdown": "90s"}}, {"kind": "noop"}],
                                "immutable": True}


def test_the_loads_tasks_must_be_the_workers(root):
    scenario = load_scenario(write(root, changed((("load", "mix"), [{"task": "shop.tasks.charge"}, {"kind": "noop"}]))))
    check_tasks(scenario, {"shop.tasks.charge", "chaoslab.noop"})
    with pytest.raises(ScenarioError, match=r"load.mix\[1\].kind: the workers' app has no task 'chaoslab.noop' "
                                            r"\(it has: shop.tasks.charge\)"):
        check_tasks(scenario, {"shop.tasks.charge"})


def test_a_hypothesis_may_name_the_apps_tasks_the_load_publishes(root):
    mix = [{"task": "shop.charge"}, {"chord": [{"task": "shop.line"}], "callback": {"task": "shop.total"}}]
    hypothesis = {"success_ratio.shop.total": ">= 0.99", "p95_run_time_ratio.shop.charge": "< 2", "lost": 0}
    scenario = load_scenario(write(root, changed((("load", "mix"), mix), (("hypothesis",), hypothesis))))
    assert [condition.figure for condition in scenario.hypothesis] == list(hypothesis)
    with pytest.raises(ScenarioError, match=r"hypothesis.success_ratio.shop.refund: unknown figure .* kind one of "
                                            r"noop, .*, shop.charge, shop.line, shop.total\)"):
        load_scenario(write(root, changed((("load", "mix"), mix),
                                          (("hypothesis",), {"success_ratio.shop.refund": ">= 0.99"}))))


def test_the_celery_publisher_takes_the_scenarios_app_to_the_load_node(root):
    from chaoslab.experiment.runner import load_profile

    source = str(ROOT / "examples" / "shop")
    scenario = load_scenario(write(root, changed((("load", "publisher"), "celery"),
                                                 (("app",), {"app": "shop.celery:app", "source": source}))))
    profile = load_profile(scenario)
    assert profile["publisher"] == "celery" and profile["app"]["source"] == source
    assert to_yaml(scenario).count("publisher: celery") == 1
    assert load_profile(load_scenario(write(root, FULL)))["app"] == {}


def test_the_runs_delivery_mode_reaches_the_load_and_a_bad_one_is_refused(root):
    from chaoslab.experiment.runner import load_profile

    assert load_profile(load_scenario(write(root, FULL)))["delivery_mode"] == 2
    transient = changed((("celery", "task_default_delivery_mode"), "transient"))
    assert load_profile(load_scenario(write(root, transient)))["delivery_mode"] == 1
    with pytest.raises(ScenarioError, match="task_default_delivery_mode: must be persistent or transient"):
        load_scenario(write(root, changed((("celery", "task_default_delivery_mode"), "sometimes"))))


def test_a_load_replays_a_trace_checked_line_by_line_before_the_run(root):
    from chaoslab.experiment.runner import load_profile

    trace = root / "experiments" / "orders.jsonl"
    trace.write_text('{"offset": 0.5, "task": "shop.charge", "args": [1]}\n'
                     '{"offset": 0.1, "kind": "noop"}\n\n'
                     '{"offset": 1, "task": "shop.charge", "kwargs": {"order": 2}}\n', encoding="utf-8")
    load = {"replay": "orders.jsonl", "publisher": "celery"}
    scenario = load_scenario(write(root, changed((("load",), load))))
    assert scenario.load.replay == str(trace) and scenario.load.rate == 0
    assert [entry.task_name for entry in scenario.load.mix] == ["chaoslab.noop", "shop.charge"]
    check_tasks(scenario, {"chaoslab.noop", "shop.charge"})
    assert load_profile(scenario)["replay"] == str(trace)
    assert yaml.safe_load(to_yaml(scenario))["load"] == {"seed": 0, "publish_timeout": "2s", "publisher": "celery",
                                                          "replay": str(trace)}
    trace.write_text('{"offset": 0.5, "task": "shop.charge"}\n{"offset": -1, "task": "shop.charge"}\n',
                     encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"load.replay: .*orders.jsonl: line 2: offset: must be seconds >= 0"):
        load_scenario(write(root, changed((("load",), load))))
    with pytest.raises(ScenarioError, match=r"load.replay: .*nothing.jsonl: \[Errno 2\] No such file"):
        load_scenario(write(root, changed((("load",), {"replay": "nothing.jsonl"}))))
