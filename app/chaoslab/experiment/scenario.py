"""Scenario files: Celery settings, load, phases, a fault, the hypothesis and a settings matrix.

``load_scenario`` checks the whole file before anything runs. Every problem is a
``ScenarioError`` whose text is one line naming the file, the key and what is allowed::

    experiments/x.yml: phases[1].duration: '20' has no unit (use ms, s, m or h)
"""

from __future__ import annotations

import inspect
import itertools
import json
import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.errors import ArgumentTypeError

from chaoslab import app_spec, brokers, celery_settings
from chaoslab.analysis.figures import KIND_FIGURES, KIND_SEPARATOR, unit_of
from chaoslab.analysis.figures import RETIRED as RETIRED_FIGURES
from chaoslab.analysis.figures import UNIT_OF as FIGURES
from chaoslab.experiment.published import PublishedFigure
from chaoslab.experiment.published import parse_figure as parse_published
from chaoslab.experiment.published import to_data as published_data
from chaoslab.fault_kinds import KINDS as FAULT_KINDS
from chaoslab.fault_kinds import FaultKind
from chaoslab.fault_params import check as fault_check
from chaoslab.fault_params import check_value
from chaoslab.inputs import is_json_data, pattern, resolve
from chaoslab.ledger import task_kind
from chaoslab.node import generated, trace
from chaoslab.node.load_mix import OPTIONS, QUEUE_NAME, SHAPES, TASK_NAME, CanvasEntry, MixEntry, MixItem
from chaoslab.node.tasks import KINDS
from chaoslab.project import find_project
from chaoslab.triggers import parse as parse_trigger
from chaoslab.units import format_duration, parse_bytes, parse_duration

TOP_KEYS = ("name", "description", "broker", "app", "celery", "redis", "rabbitmq", "nodes", "load", "phases",
            "hypothesis", "matrix", "sweep", "published")
SWEEP_KEYS = ("param", "values", "knee_p95")
SWEEP_POINTS = (2, 20)
"""How many values a sweep may have."""
SWEEP_TEXT = re.compile(r"[A-Za-z0-9_.%+-]{1,32}")
ZERO_DOSE = re.compile(r"0+(\.0+)?(%|[A-Za-z]{1,3})?")
"""A sweep value that asks for none of the quantity (0ms, 0%): that point runs without the fault, the curve's
origin."""
# A node size a scenario may set (nodes: {workers: {memory: 1000MiB, cpus: 1}}), and its bounds.
SIZE_KEYS = ("cpus", "memory")
CPUS_BOUNDS = (0.05, 64.0)
MEMORY_MIB_BOUNDS = (64, 1024 * 1024)
LOAD_KEYS = ("rate", "seed", "publish_timeout", "publisher", "mix", "replay")
PUBLISHERS = ("raw", "celery")
MIX_KEYS = ("kind", "weight", "args", "options")
APP_MIX_KEYS = ("task", "weight", "args", "kwargs", "options")
CANVAS_KEYS = (*SHAPES, "callback", "weight", "immutable")
CANVAS_SIZE = (1, 100)
"""How many tasks a canvas may hold (a chord's header; a chain's links)."""
MAX_COUNTDOWN = 7 * 86400.0
PHASE_KEYS = ("name", "duration", "fault", "faults")
FAULT_KEYS = ("playbook", "target", "params", "at", "duration", "accept_ineffective", "trigger")
PHASES = ("baseline", "fault", "recovery", "drain")
REQUIRED_PHASES = ("baseline", "drain")
NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
CELL_TEXT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:+-]{0,63}")
OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt, "==": operator.eq, "!=": operator.ne,
}
CONDITION = re.compile(r"\s*(<=|>=|==|!=|<|>)\s*(\S.*?)\s*")
REDIS_SPEC = "roles/redis/meta/argument_specs.yml"
# The matrix key that runs cells on different brokers (the runner provisions the lab with each in turn).
MATRIX_BROKER = "broker"
# Redis settings a scenario may give (the redis role's variables without their prefix).
REDIS_SETTINGS = ("aof", "appendfsync", "rdb")


class ScenarioError(ValueError):
    """One problem in a scenario: ``<file>: <key path>: <what is wrong and what is allowed>``."""

    def __init__(self, key: str, message: str, path: str = "") -> None:
        self.key, self.message, self.path = key, message, path
        super().__init__(": ".join(part for part in (path, key, message) if part))

    def within(self, prefix: str = "", path: str = "") -> ScenarioError:
        key = f"{prefix}.{self.key}" if prefix and self.key else prefix or self.key
        return ScenarioError(key, self.message, path or self.path)


@dataclass(frozen=True)
class LoadSpec:
    rate: float
    seed: int
    publish_timeout: float
    mix: list[MixItem]
    publisher: str = "raw"
    """``raw``: the lab's batched LPUSH, bounded by publish_timeout; ``celery``: the app's own apply_async."""
    replay: str = ""
    """A recorded trace to publish in its own time (absolute path; :mod:`chaoslab.node.trace`) instead of a rate and
    a mix; ``mix`` then holds one entry per task the trace names (what the workers must have)."""


@dataclass(frozen=True)
class FaultSpec:
    playbook: str
    target: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # p -> value as given, checked against the declaration
    # a fault whose node measured less effect than asked fails the verdict, unless the scenario accepts that
    accept_ineffective: bool = False
    at: float = 0.0
    """Seconds into the fault phase when it starts."""
    duration: float | None = None
    """How long it lasts; None: to the phase's end."""

    def length(self, phase_seconds: float) -> float:
        """How long it lasts in a phase of *phase_seconds*."""
        return self.duration if self.duration is not None else phase_seconds - self.at


@dataclass(frozen=True)
class PhaseSpec:
    name: str
    duration: float
    faults: tuple[FaultSpec, ...] = ()
    """The fault phase's faults, each with its target, parameters, start and length within the phase."""

    @property
    def fault(self) -> FaultSpec | None:
        """The phase's first fault (what a study and a comparison name the run by); None outside the fault phase."""
        return self.faults[0] if self.faults else None


@dataclass(frozen=True)
class Sweep:
    """One fault parameter run at several values (the dose), each a run of its own, crossed with the matrix."""

    param: str
    values: tuple[str, ...]
    """As given (``200ms``): what the fault is asked for, and the cell's label."""
    doses: tuple[float, ...]
    """The values in the parameter's base unit (seconds, a fraction, bytes), strictly increasing."""
    knee_p95: float | None = None
    """Seconds of p95 end to end (of the tasks published under the fault) beyond which a point is past the knee;
    None: only a throughput under half the lowest dose's marks it."""

    def label(self, value: str) -> str:
        return f"{self.param}={value}"

    def cell(self, configuration: str, value: str) -> str:
        """The label of the run at *value* in a matrix combination's (its configuration's) curve."""
        return ",".join(part for part in (configuration, self.label(value)) if part)


@dataclass(frozen=True)
class Condition:
    figure: str
    op: str
    value: float
    text: str

    def holds(self, actual: float | None) -> bool:
        """Whether a measured figure meets the condition; a figure that could not be measured never does."""
        return actual is not None and OPS[self.op](actual, self.value)


@dataclass(frozen=True)
class Scenario:
    path: Path
    name: str
    description: str
    celery: dict[str, Any]
    load: LoadSpec
    phases: list[PhaseSpec]
    hypothesis: list[Condition]
    matrix: dict[str, list[Any]] | list[dict[str, Any]]
    redis: dict[str, Any] = field(default_factory=dict)  # redis role variables (redis_aof, ...) for this run
    # node pattern (as a fault's target) -> its size for this run: {"cpus": float, "memory_mib": int}, either or both
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    # conditions a list matrix's entries add to (or change in) the hypothesis, one list per entry
    cell_hypotheses: list[list[Condition]] = field(default_factory=list)
    # what another system published for the same experiment (chaoslab.experiment.published), and where from
    published: tuple[PublishedFigure, ...] = ()
    published_source: str = ""
    published_settings: dict[str, Any] = field(default_factory=dict)
    """The Celery settings the published figures were measured with ({}: any configuration)."""
    broker: str = ""
    """The task broker the run needs (redis, rabbitmq; a matrix cell's own with ``matrix: {broker: [...]}``): the
    runner provisions the lab with it for the run and gives the lab its own back after; "" for the lab's."""
    app: dict[str, Any] = field(default_factory=dict)
    """The app under test the workers run for this scenario, as the inventory's ``celery_worker_app`` takes it (its
    source an absolute path); {}: the inventory's."""
    rabbitmq: dict[str, Any] = field(default_factory=dict)
    """RabbitMQ's settings for the run, as the rabbitmq role's ``rabbitmq_settings`` takes them (consumer_timeout,
    channel_tick_interval, ...: chaoslab.brokers); {}: the inventory's. Every cell must run on RabbitMQ."""
    sweep: Sweep | None = None
    """A fault parameter run at each of several values, for every matrix combination (each point a cell)."""

    @property
    def broker_vars(self) -> dict[str, Any]:
        """The broker node's role variables for the run: Redis's (redis_aof, ...) and rabbitmq_settings."""
        return {**self.redis, **({"rabbitmq_settings": dict(self.rabbitmq)} if self.rabbitmq else {})}

    @property
    def fault_phase(self) -> PhaseSpec | None:
        return next((phase for phase in self.phases if phase.fault is not None), None)

    def combinations(self) -> list[dict[str, Any]]:
        """The matrix's settings combinations: every combination of a mapping's values (in key order), or a
        list's entries as given; ``[]`` without a matrix."""
        if isinstance(self.matrix, list):
            return [dict(entry) for entry in self.matrix]
        return [dict(zip(self.matrix, values, strict=True)) for values in itertools.product(*self.matrix.values())]

    def null_control(self) -> Scenario:
        """The same run with every fault removed (the phases keep their names and lengths): a hypothesis that says
        what the fault does must not hold on it."""
        return replace(self, phases=[replace(phase, faults=()) for phase in self.phases])

    def shortened(self, seconds: float) -> Scenario:
        """The same run with every phase but the fault phase and the drain at most *seconds* long: the fault and its
        timing stay as written, the time around it shrinks (a quick look, not a measurement to publish)."""
        return replace(self, phases=[phase if phase.faults or phase.name == "drain"
                                     else replace(phase, duration=min(phase.duration, seconds))
                                     for phase in self.phases])

    def with_dose(self, value: str) -> Scenario:
        """The scenario with the sweep's parameter at *value* in every fault of the fault phase that takes it; at a
        zero dose (0ms, 0%), without the faults (the phases keep their names and lengths)."""
        if self.sweep is None:
            return self
        if ZERO_DOSE.fullmatch(value):
            return replace(self.null_control(), sweep=None)
        param = self.sweep.param
        phases = [replace(phase, faults=tuple(replace(fault, params={**fault.params, param: value})
                                              if param in FAULT_KINDS[fault.playbook].user_params()
                                              else fault for fault in phase.faults))
                  for phase in self.phases]
        return replace(self, phases=phases, sweep=None)

    def cells(self) -> list[tuple[str, Scenario]]:
        """One (label, scenario) per run: per matrix combination, and within it per sweep value (the points of a
        configuration in a row, lowest dose first); ``[("", self)]`` without either."""
        if self.sweep is None:
            return self._combinations()
        sweep = self.sweep
        return [(sweep.cell(label, value), cell.with_dose(value))
                for label, cell in self._combinations() for value in sweep.values]

    def sweep_points(self) -> list[dict[str, Any]]:
        """Each run of the sweep: its cell label, its configuration's (the matrix combination), the value and the
        dose; [] without a sweep."""
        if self.sweep is None:
            return []
        sweep = self.sweep
        return [{"cell": sweep.cell(label, value), "configuration": label,
                 "value": value, "dose": dose}
                for label, _ in self._combinations() for value, dose in zip(sweep.values, sweep.doses, strict=True)]

    def _combinations(self) -> list[tuple[str, Scenario]]:
        if not self.matrix:
            return [("", self)]
        cells = []
        for i, combination in enumerate(self.combinations()):
            label = ",".join(f"{name}={_label(value)}" for name, value in combination.items())
            extra = self.cell_hypotheses[i] if i < len(self.cell_hypotheses) else []
            hypothesis = [*(c for c in self.hypothesis if c.figure not in {e.figure for e in extra}), *extra]
            settings = dict(combination)
            broker = settings.pop(MATRIX_BROKER, self.broker)
            cells.append((label, replace(self, celery={**self.celery, **settings}, broker=broker, matrix={},
                                         cell_hypotheses=[], hypothesis=hypothesis)))
        return cells


def check_targets(scenario: Scenario, groups: dict[str, list[str]]) -> None:
    """Every cell's fault target and peers name nodes of the lab's inventory (ScenarioError otherwise): checked when
    a run starts, before anything changes."""
    for index, phase in enumerate(scenario.phases):
        for number, fault in enumerate(phase.faults):
            key = f"phases[{index}].fault" if len(phase.faults) == 1 else f"phases[{index}].faults[{number}]"
            for name, value in (("target", fault.target), ("params.peers", fault.params.get("peers"))):
                if value not in (None, ""):
                    try:
                        resolve(value, groups, name.removeprefix("params."))
                    except ValueError as error:
                        raise ScenarioError(key, str(error), str(scenario.path)) from None
    node_sizes(scenario, groups)


def check_triggers(scenario: Scenario, groups: dict[str, list[str]], broker: str) -> None:
    """Every armed fault's condition can be read where it runs (ScenarioError otherwise): a condition on the task
    state of a worker needs workers as the target; the unacknowledged set is read from Redis."""
    workers = set(groups.get("workers", ()))
    for label, cell in scenario.cells():
        where = f" (matrix cell {label})" if label else ""
        for index, phase in enumerate(cell.phases):
            for number, fault in enumerate(phase.faults):
                if not fault.params.get("trigger"):
                    continue
                trigger, key = parse_trigger(fault.params["trigger"]), f"phases[{index}].faults[{number}].trigger"
                target = fault.target or FAULT_KINDS[fault.playbook].target
                try:
                    hosts = resolve(target, groups, "target")
                except ValueError as error:
                    raise ScenarioError(key, str(error), str(scenario.path)) from None
                if trigger.on_worker and not set(hosts) <= workers:
                    others = ", ".join(sorted(set(hosts) - workers))
                    raise ScenarioError(key, f"{trigger} reads a worker's task ledger: {others} runs no worker{where}",
                                        str(scenario.path))
                if not trigger.on_worker and (cell.broker or broker) != "redis":
                    raise ScenarioError(key, f"{trigger} reads Redis's unacknowledged set: the run's broker is "
                                             f"{cell.broker or broker}{where}", str(scenario.path))


def check_broker(scenario: Scenario, broker: str) -> None:
    """Every cell's Celery settings are ones its broker (the cell's own, else the lab's *broker*) takes
    (ScenarioError naming the setting otherwise: a Redis transport option on a RabbitMQ run, quorum queues on Redis):
    checked when a run starts, before anything changes."""
    for label, cell in scenario.cells():
        where = f" (matrix cell {label})" if label else ""
        for problem in brokers.settings_errors(cell.broker or broker, cell.celery):
            name, _, why = problem.partition(": ")
            raise ScenarioError(f"celery.{name}", why + where, str(scenario.path))
        if scenario.rabbitmq and (cell.broker or broker) != "rabbitmq":
            raise ScenarioError("rabbitmq", f"RabbitMQ settings, but the run's broker is {cell.broker or broker}"
                                f"{where}", str(scenario.path))


def check_tasks(scenario: Scenario, registered: set[str]) -> None:
    """Every task of the load is one the workers' app registers (ScenarioError naming the mix entry otherwise):
    checked when a run starts, against what the running workers say they have."""
    have = ", ".join(sorted(registered)[:12]) + (", ..." if len(registered) > 12 else "")
    for key, entry in _mix_tasks(scenario.load.mix):
        if entry.task_name not in registered:
            raise ScenarioError(f"{key}.{'task' if entry.task else 'kind'}",
                                f"the workers' app has no task {entry.task_name!r} (it has: {have or 'none'})",
                                str(scenario.path))


def _mix_tasks(mix: list[MixItem]) -> Iterator[tuple[str, MixEntry]]:
    """Every task of a mix with its key (load.mix[2].chain[1]), those inside canvases too."""
    for index, item in enumerate(mix):
        key = f"load.mix[{index}]"
        if isinstance(item, MixEntry):
            yield key, item
            continue
        for position, member in enumerate(item.members):
            yield f"{key}.{item.shape}[{position}]", member
        if item.callback is not None:
            yield f"{key}.callback", item.callback


def node_sizes(scenario: Scenario, groups: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """The scenario's node sizes by inventory host (a later pattern's size wins for a host two patterns name);
    ScenarioError when a pattern names no node of the lab."""
    sizes: dict[str, dict[str, Any]] = {}
    for selector, size in scenario.nodes.items():
        try:
            hosts = resolve(selector, groups, "node")
        except ValueError as error:
            raise ScenarioError(f"nodes.{selector}", str(error), str(scenario.path)) from None
        for host in hosts:
            sizes[host] = {**sizes.get(host, {}), **size}
    return sizes


def _label(value: Any) -> str:
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)


def to_yaml(scenario: Scenario, header: str = "") -> str:
    """The scenario (one cell: no matrix) as a scenario file that loads back to the same scenario; *header* becomes
    comment lines at the top."""
    load = scenario.load
    data: dict[str, Any] = {"name": scenario.name}
    if scenario.description:
        data["description"] = scenario.description
    if scenario.broker:
        data["broker"] = scenario.broker
    if scenario.app:
        data["app"] = dict(scenario.app)
    if scenario.celery:
        data["celery"] = dict(scenario.celery)
    if scenario.redis:
        data["redis"] = {key.removeprefix("redis_"): value for key, value in scenario.redis.items()}
    if scenario.rabbitmq:
        data["rabbitmq"] = dict(scenario.rabbitmq)
    if scenario.sweep is not None:
        data["sweep"] = {"param": scenario.sweep.param, "values": list(scenario.sweep.values),
                         **({"knee_p95": format_duration(scenario.sweep.knee_p95)}
                            if scenario.sweep.knee_p95 is not None else {})}
    if scenario.nodes:
        data["nodes"] = {selector: {**({"cpus": size["cpus"]} if "cpus" in size else {}),
                                    **({"memory": f"{size['memory_mib']}MiB"} if "memory_mib" in size else {})}
                         for selector, size in scenario.nodes.items()}
    data["load"] = {"seed": load.seed, "publish_timeout": format_duration(load.publish_timeout),
                    **({"publisher": load.publisher} if load.publisher != "raw" else {}),
                    **({"replay": load.replay} if load.replay else
                       {"rate": load.rate, "mix": [entry.to_data() for entry in load.mix]})}
    data["phases"] = [_phase_data(phase) for phase in scenario.phases]
    if scenario.hypothesis:
        data["hypothesis"] = {condition.figure: condition.text for condition in scenario.hypothesis}
    if scenario.published:
        data["published"] = published_data(scenario.published, scenario.published_source, KINDS,
                                           settings=scenario.published_settings)
    comments = "".join(f"# {line}\n" for line in header.splitlines())
    return comments + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def _phase_data(phase: PhaseSpec) -> dict[str, Any]:
    data: dict[str, Any] = {"name": phase.name, "duration": format_duration(phase.duration)}
    timed = any(fault.at or fault.duration is not None for fault in phase.faults)
    if len(phase.faults) == 1 and not timed:
        data["fault"] = _fault_data(phase.faults[0])
    elif phase.faults or phase.name == "fault":  # none: a control (a null control, a sweep's zero dose)
        data["faults"] = [_fault_data(fault) for fault in phase.faults]
    return data


def _fault_data(spec: FaultSpec) -> dict[str, Any]:
    fault: dict[str, Any] = {"playbook": spec.playbook}
    if spec.target is not None:
        fault["target"] = spec.target
    if spec.params:
        fault["params"] = dict(spec.params)
    if spec.at:
        fault["at"] = format_duration(spec.at)
    if spec.duration is not None:
        fault["duration"] = format_duration(spec.duration)
    if spec.accept_ineffective:
        fault["accept_ineffective"] = True
    return fault


def find_root(start: Path | None = None) -> Path:
    """The project above ``start`` (see :func:`chaoslab.project.find_project`)."""
    root = find_project(start)
    if root is None:
        raise ScenarioError("", f"no project root (a directory holding ansible.cfg and playbooks/) above {start}")
    return root


@cache
def _specs(path: Path) -> dict[str, Any]:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))["argument_specs"]
    except OSError as error:
        raise ScenarioError("", f"cannot read {path}: {error.strerror}") from None


def fault_playbooks(root: Path) -> list[str]:
    """The fault kinds (app/chaoslab/fault_kinds.py) whose playbook faults/<kind>.yml the project holds."""
    return [name for name in FAULT_KINDS if (root / "faults" / f"{name}.yml").is_file()]


def fault_kind(root: Path, playbook: str) -> FaultKind:
    """The declaration of a fault playbook faults/<playbook>.yml."""
    playbooks = fault_playbooks(root)
    if not isinstance(playbook, str) or playbook not in playbooks:
        raise ScenarioError("", f"unknown fault playbook {playbook!r} (available: {', '.join(playbooks) or 'none'})")
    return FAULT_KINDS[playbook]


def _check_option(name: str, spec: dict[str, Any], value: Any, nullable: bool = False) -> Any:
    """``value`` checked against and converted by its argument spec (type, choices), as Ansible would."""
    kind = spec.get("type", "str")
    if value is None and nullable:
        return None
    wrong_shape = isinstance(value, dict | list) and kind not in ("dict", "list")
    result = ArgumentSpecValidator({name: spec}).validate({name: value})
    if value is None or wrong_shape or any(isinstance(error, ArgumentTypeError) for error in result.errors):
        raise ScenarioError("", f"must be {kind}, got {value!r}")
    if result.error_messages:
        choices = ", ".join(map(str, spec.get("choices") or ()))
        raise ScenarioError("", f"must be one of {choices}, got {value!r}" if choices else result.error_messages[0])
    return result.validated_parameters[name]


def validate_fault_params(root: Path, playbook: str, params: dict[str, Any],
                          phase_seconds: float | None = None) -> dict[str, Any]:
    """A fault's parameters (p -> value, the names a user gives the playbook), each checked against the fault's
    declaration; errors name p. The runner gives the fault the fault phase's length as its duration unless the
    scenario gives one: the checks across parameters count with it.
    """
    declared = fault_kind(root, playbook)
    allowed = declared.user_params()
    for param, value in params.items():
        if param not in allowed:
            raise ScenarioError(str(param),
                                f"unknown parameter of {playbook} (allowed: {', '.join(allowed) or 'none'})")
        _at(str(param), check_value, playbook, str(param), value)
    implied = {"duration": format_duration(phase_seconds)} if phase_seconds and not params.get("duration") else {}
    _at("", fault_check, playbook, {**params, **implied}, False)
    return dict(params)


def load_scenario(path: str | Path, root: Path | None = None) -> Scenario:
    """Read and check a scenario file; ``root`` defaults to the project root above the file."""
    try:
        root = root or find_root(Path(path))
        data = _read(Path(path))
        return _scenario(Path(path), root, data)
    except ScenarioError as error:
        raise error.within(path=str(path)) from None


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ScenarioError("", f"cannot read: {error.strerror}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ScenarioError("", f"invalid YAML{where}: {getattr(error, 'problem', None) or error}") from None
    return _mapping(data, "", TOP_KEYS, required=("name", "load", "phases"))


def _at(key: str, check: Callable[..., Any], *args: Any) -> Any:
    """``check(*args)``, its ValueError or ScenarioError reported at ``key``."""
    try:
        return check(*args)
    except ScenarioError as error:
        raise error.within(key) from None
    except ValueError as error:
        raise ScenarioError(key, str(error)) from None


def _join(key: str, name: object) -> str:
    return f"{key}.{name}" if key else str(name)


def _mapping(
    value: Any, key: str, allowed: tuple[str, ...], required: tuple[str, ...] = (), what: str = "key"
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ScenarioError(key, f"must be a mapping with keys from {', '.join(allowed) or 'none'}, got {value!r}")
    for name in value:
        if name not in allowed:
            raise ScenarioError(_join(key, name), f"unknown {what} (allowed: {', '.join(allowed) or 'none'})")
    for name in required:
        if name not in value:
            raise ScenarioError(_join(key, name), "missing (required)")
    return value


def _list(value: Any, key: str, what: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise ScenarioError(key, f"must be a non-empty list of {what}, got {value!r}")
    return value


def _number(value: Any, key: str, op: str = ">", bound: float = 0, whole: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, int if whole else int | float):
        raise ScenarioError(key, f"must be {'a whole number' if whole else 'a number'}, got {value!r}")
    if not OPS[op](value, bound):
        raise ScenarioError(key, f"must be {op} {bound}, got {value}")
    return value


def _duration(value: Any, key: str) -> float:
    seconds = _at(key, parse_duration, value)
    if seconds <= 0:
        raise ScenarioError(key, f"must be > 0, got {value!r}")
    return seconds


def _scenario(path: Path, root: Path, data: dict[str, Any]) -> Scenario:
    name = data["name"]
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ScenarioError("name", f"must match {NAME.pattern}, got {name!r}")
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise ScenarioError("description", f"must be text, got {description!r}")
    broker = _broker(data["broker"], "broker") if data.get("broker") is not None else ""
    celery = _celery(data.get("celery") or {}, "celery")
    load = _load(data["load"], path)
    kinds = task_kinds(load.mix)
    matrix, cell_hypotheses = _matrix(data.get("matrix") or {}, kinds)
    if broker and any(MATRIX_BROKER in combination for combination in
                      (matrix if isinstance(matrix, list) else [matrix])):
        raise ScenarioError("matrix.broker", f"the scenario runs on {broker} (broker: {broker}): no broker axis")
    published, source, published_settings = _published(root, data.get("published"))
    phases = _phases(root, data["phases"])
    _trigger_kinds(phases, kinds)
    return Scenario(path=path, name=name, description=description, celery=celery, load=load,
                    phases=phases,
                    hypothesis=_hypothesis(data.get("hypothesis"), "hypothesis", kinds),
                    matrix=matrix, redis=_redis(root, data.get("redis") or {}), cell_hypotheses=cell_hypotheses,
                    nodes=_nodes(data.get("nodes") or {}), published=published, published_source=source,
                    published_settings=published_settings, app=_app(path, data.get("app")), broker=broker,
                    rabbitmq=_rabbitmq(data.get("rabbitmq") or {}), sweep=_sweep(root, data.get("sweep"), phases))


def _app(path: Path, value: Any) -> dict[str, Any]:
    """The scenario's app under test (``app: {app, source | package, requirements}``, a source relative to the
    scenario's own directory), checked as the inventory's would be; {} without one."""
    try:
        spec = app_spec.parse(value)
        if spec is None:
            return {}
        found: dict[str, Any] = {"app": spec.app, "requirements": list(spec.requirements)}
        if spec.package:
            return {**found, "package": spec.package}
        source = (path.parent / spec.source).resolve()
        distribution = spec.kind == "distribution"
        if not (source.is_file() if distribution else source.is_dir()):
            raise ValueError(f"source: no such {'file' if distribution else 'directory'}: {source}")
        app_spec.parse({"app": spec.app, "source": str(source)})  # the resolved path in the grammar too
    except ValueError as err:
        key, _sep, message = str(err).partition(": ")
        raise ScenarioError(f"app.{key}" if message else "app", message or str(err)) from None
    return {**found, "source": str(source)}


def _published(root: Path, value: Any) -> tuple[tuple[PublishedFigure, ...], str, dict[str, Any]]:
    """``published``: where the figures come from, the Celery settings they were measured with (optional), and each
    figure's baseline and fault values."""
    if value is None:
        return (), "", {}
    data = _mapping(value, "published", ("source", "settings", "figures"), required=("source", "figures"))
    settings = _celery(data.get("settings") or {}, "published.settings")
    if not isinstance(data["source"], str) or not data["source"].strip():
        raise ScenarioError("published.source", f"must say where the figures come from, got {data['source']!r}")
    figures = data["figures"]
    if not isinstance(figures, dict) or not figures:
        raise ScenarioError("published.figures", f"must map figures to their baseline and fault, got {figures!r}")
    return (tuple(_at(f"published.figures.{name}", parse_published, name, given, KINDS)
                  for name, given in figures.items()), data["source"].strip(), settings)


def _nodes(value: Any) -> dict[str, dict[str, Any]]:
    """Node sizes for the run: a node pattern (a group, a node, workers[0], ...) -> cpus and/or memory."""
    if not isinstance(value, dict):
        raise ScenarioError("nodes", f"must map node patterns to sizes, got {value!r}")
    sizes = {}
    for selector, given in value.items():
        key = f"nodes.{selector}"
        _at(key, pattern, selector, "node")
        size = _mapping(given, key, SIZE_KEYS, what="size")
        if not size:
            raise ScenarioError(key, "needs cpus, memory or both")
        found: dict[str, Any] = {}
        if "cpus" in size:
            found["cpus"] = float(_number(size["cpus"], f"{key}.cpus", ">=", CPUS_BOUNDS[0]))
            _number(found["cpus"], f"{key}.cpus", "<=", CPUS_BOUNDS[1])
        if "memory" in size:
            memory = _at(f"{key}.memory", parse_bytes, size["memory"])
            if memory % 2**20:
                raise ScenarioError(f"{key}.memory", f"must be a whole number of MiB, got {size['memory']!r}")
            found["memory_mib"] = _number(memory // 2**20, f"{key}.memory", ">=", MEMORY_MIB_BOUNDS[0])
            _number(found["memory_mib"], f"{key}.memory", "<=", MEMORY_MIB_BOUNDS[1])
        sizes[str(selector)] = found
    return sizes


def task_kinds(mix: list[MixItem]) -> tuple[str, ...]:
    """The task kinds a hypothesis may name per kind (``success_ratio.<kind>``): the lab's, and the app's tasks the
    load publishes (those in canvases too)."""
    found = dict.fromkeys(KINDS)
    found.update(dict.fromkeys(entry.kind for _key, entry in _mix_tasks(mix)))
    return tuple(found)


def _hypothesis(value: Any, key: str, kinds: tuple[str, ...] = tuple(KINDS)) -> list[Condition]:
    for figure in value or {} if isinstance(value, dict) else ():
        if figure in RETIRED_FIGURES:
            raise ScenarioError(_join(key, figure), f"is no longer a figure: {RETIRED_FIGURES[figure]}")
    if not isinstance(value or {}, dict):
        _mapping(value, key, tuple(FIGURES), what="figure")
    for figure in value or {}:
        if not isinstance(figure, str) or unit_of(figure, kinds) is None:
            per_kind = f"; per task kind: <figure>{KIND_SEPARATOR}<kind>, figure one of {', '.join(KIND_FIGURES)}"
            raise ScenarioError(_join(key, str(figure)),
                                f"unknown figure (allowed: {', '.join(FIGURES)}{per_kind}, kind one of "
                                f"{', '.join(kinds)})")
    return [condition(figure, given, key, kinds) for figure, given in (value or {}).items()]


def _matrix(value: Any, kinds: tuple[str, ...]) -> tuple[dict[str, list[Any]] | list[dict[str, Any]],
                                                       list[list[Condition]]]:
    """A mapping setting -> values (every combination runs), or a list of mappings setting -> value (each entry
    runs, and its optional ``hypothesis`` adds to or changes the scenario's for that run)."""
    if isinstance(value, list):
        cells, hypotheses = [], []
        for i, entry in enumerate(_list(value, "matrix", "mappings of Celery settings")):
            if not isinstance(entry, dict):
                raise ScenarioError(f"matrix[{i}]", f"must be a mapping of Celery settings to values, got {entry!r}")
            given = dict(entry)
            hypotheses.append(_hypothesis(given.pop("hypothesis", None), f"matrix[{i}].hypothesis", kinds))
            broker = ({MATRIX_BROKER: _broker(given.pop(MATRIX_BROKER), f"matrix[{i}].{MATRIX_BROKER}")}
                      if MATRIX_BROKER in given else {})
            cell = {**broker, **_celery(given, f"matrix[{i}]", cell=True)}
            if cell in cells:
                raise ScenarioError(f"matrix[{i}]", "repeats an earlier entry (each combination once)")
            cells.append(cell)
        return cells, hypotheses
    if not isinstance(value, dict):
        raise ScenarioError("matrix", f"must be a mapping of Celery settings to lists of values, got {value!r}")
    cells = {}
    for setting, values in value.items():
        given = enumerate(_list(values, f"matrix.{setting}", "values"))
        if setting == MATRIX_BROKER:
            cells[setting] = [_broker(broker, f"matrix.{setting}[{i}]") for i, broker in given]
            if len(set(cells[setting])) < len(cells[setting]):
                raise ScenarioError(f"matrix.{setting}", "names a broker twice (each combination once)")
            continue
        _at(f"matrix.{setting}", celery_settings.check_name, setting)
        cells[setting] = [_cell_value(setting, value_given, f"matrix.{setting}[{i}]") for i, value_given in given]
    return cells, []


def _broker(value: Any, key: str) -> str:
    """A task broker the lab runs (chaoslab.brokers.BROKERS)."""
    problem = brokers.broker_error(value)
    if problem:
        raise ScenarioError(key, problem)
    return str(value)


def _celery(value: Any, key: str, cell: bool = False) -> dict[str, Any]:
    """Celery settings (any Celery knows, see chaoslab.celery_settings), each checked where it was given; in a
    matrix cell each value also names the cell's directory."""
    if not isinstance(value, dict):
        raise ScenarioError(key, f"must be a mapping of Celery settings to values, got {value!r}")
    checked = {name: (_cell_value if cell else _setting)(name, given, _join(key, str(name)))
               for name, given in value.items()}
    _at(key, celery_settings.check_given_once, checked)
    return checked


def _setting(name: Any, value: Any, key: str) -> Any:
    return _at(key, celery_settings.check, name, value)


def _cell_value(name: Any, value: Any, key: str) -> Any:
    """A matrix value: a setting's value that also names the cell's directory (``task_acks_late=true``), so a
    scalar, and text of letters, digits and ``._:+-`` only."""
    checked = _setting(name, value, key)
    if isinstance(checked, dict | list) or (isinstance(checked, str) and not CELL_TEXT.fullmatch(checked)):
        raise ScenarioError(key, f"a matrix value names a directory: give a number, true/false, null or text of "
                                 f"letters, digits and ._:+- (other values go in celery:), got {value!r}")
    return checked


def _redis(root: Path, value: Any) -> dict[str, Any]:
    """Redis persistence for the run, as the redis role's variables (aof -> redis_aof, ...)."""
    if not value:
        return {}
    options = _specs(root / REDIS_SPEC)["main"]["options"]
    return {f"redis_{name}": _at(f"redis.{name}", _check_option, f"redis_{name}", options[f"redis_{name}"], given)
            for name, given in _mapping(value, "redis", REDIS_SETTINGS, what="Redis setting").items()}


def _sweep(root: Path, value: Any, phases: list[PhaseSpec]) -> Sweep | None:
    """A fault parameter and the values to run it at: a parameter of a fault of the fault phase, each value one that
    fault takes (checked as its own parameters are), all of one quantity and strictly increasing."""
    if value is None:
        return None
    sweep = _mapping(value, "sweep", SWEEP_KEYS, required=("param", "values"))
    param = sweep["param"]
    faults = [fault for phase in phases for fault in phase.faults]
    if not faults:
        raise ScenarioError("sweep", "a sweep varies a fault's parameter: the scenario has no fault phase")
    phase_seconds = next(phase.duration for phase in phases if phase.faults)
    taking = [fault for fault in faults if isinstance(param, str) and param in fault_kind(root, fault.playbook)
              .user_params()]
    if not taking:
        offered = sorted({name for fault in faults for name in fault_kind(root, fault.playbook).user_params()})
        raise ScenarioError("sweep.param", f"no fault of the fault phase takes {str(param)[:40]!r} (they take: "
                                           f"{', '.join(offered) or 'nothing'})")
    given = _list(sweep["values"], "sweep.values", "values of the parameter")
    if not SWEEP_POINTS[0] <= len(given) <= SWEEP_POINTS[1]:
        raise ScenarioError("sweep.values", f"{SWEEP_POINTS[0]} to {SWEEP_POINTS[1]} values, got {len(given)}")
    values, doses = [], []
    for i, item in enumerate(given):
        key = f"sweep.values[{i}]"
        text = item if isinstance(item, str) else None
        if text is None or not SWEEP_TEXT.fullmatch(text):
            raise ScenarioError(key, f"a value as the fault takes it, as text (e.g. 200ms, 10%), got {item!r}")
        if ZERO_DOSE.fullmatch(text):
            dose: Any = 0.0  # the point without the fault
        else:
            for fault in taking:
                _at(key, validate_fault_params, root, fault.playbook, {**fault.params, param: text},
                    fault.length(phase_seconds))
            dose = _at(key, check_value, taking[0].playbook, param, text)
        if isinstance(dose, bool) or not isinstance(dose, (int, float)):
            raise ScenarioError("sweep.param", f"{param} is not a quantity (got {dose!r} for {text!r}): a sweep "
                                               "needs values it can order")
        if doses and dose <= doses[-1]:
            raise ScenarioError(key, f"{text} is not above {values[-1]}: give the values from the lowest dose up, "
                                     "each once")
        values.append(text)
        doses.append(float(dose))
    knee = _duration(sweep["knee_p95"], "sweep.knee_p95") if "knee_p95" in sweep else None
    return Sweep(param, tuple(values), tuple(doses), knee)


def _rabbitmq(value: Any) -> dict[str, Any]:
    """RabbitMQ's settings for the run (the rabbitmq role's rabbitmq_settings): keys and values the lab lets a user
    set (chaoslab.brokers.rabbitmq_setting_error)."""
    if not isinstance(value, dict):
        raise ScenarioError("rabbitmq", f"a mapping of RabbitMQ settings to values, got {type(value).__name__}")
    for key, given in value.items():
        problem = brokers.rabbitmq_setting_error(key, given)
        if problem:
            raise ScenarioError(f"rabbitmq.{str(key)[:60]}",
                                problem.removeprefix("rabbitmq_settings: ").removeprefix(f"{key}: "))
    return dict(value)


def _load(value: Any, path: Path) -> LoadSpec:
    load = _mapping(value, "load", LOAD_KEYS)
    publisher = load.get("publisher", "raw")
    if publisher not in PUBLISHERS:
        raise ScenarioError("load.publisher", f"must be one of {', '.join(PUBLISHERS)}, got {publisher!r}")
    if "replay" in load:
        both = next((key for key in ("rate", "mix") if key in load), None)
        if both:
            raise ScenarioError(f"load.{both}", "a replayed trace has its own tasks and times: no rate or mix")
        replay, mix = _replay(load["replay"], path)
        return LoadSpec(rate=0.0, mix=mix, publisher=publisher, replay=replay,
                        seed=_number(load.get("seed", 0), "load.seed", ">=", 0, whole=True),
                        publish_timeout=_duration(load.get("publish_timeout", "2s"), "load.publish_timeout"))
    for key in ("rate", "mix"):
        if key not in load:
            raise ScenarioError(f"load.{key}", "missing (required, unless the load replays a trace)")
    mix = [_mix_item(entry, f"load.mix[{i}]") for i, entry in enumerate(_list(load["mix"], "load.mix", "tasks"))]
    # canvases always go out through Celery; a single task's priority needs the celery publisher
    prioritised = next((f"load.mix[{index}]" for index, entry in enumerate(mix)
                        if isinstance(entry, MixEntry) and "priority" in entry.options), None)
    if prioritised and publisher != "celery":
        raise ScenarioError(f"{prioritised}.options.priority", "needs load.publisher: celery (the raw publisher "
                                                               "writes every message to its queue's one list)")
    return LoadSpec(rate=float(_number(load["rate"], "load.rate")), mix=mix, publisher=publisher,
                    seed=_number(load.get("seed", 0), "load.seed", ">=", 0, whole=True),
                    publish_timeout=_duration(load.get("publish_timeout", "2s"), "load.publish_timeout"))


def _replay(value: Any, path: Path) -> tuple[str, list[MixItem]]:
    """A trace file (relative to the scenario's directory), read whole as the load generator will; one mix entry per
    task it names."""
    if not isinstance(value, str) or not value or value.startswith("-"):
        raise ScenarioError("load.replay", f"must be a trace file's path, got {value!r}")
    file = (path.parent / value).resolve()
    try:
        found = trace.read(file)
    except (OSError, ValueError) as err:
        raise ScenarioError("load.replay", f"{file}: {err}") from None
    distinct = {entry.task_name: replace(entry, args={}, positional=()) for _offset, entry in found}
    return str(file), list(distinct.values())


def _mix_item(value: Any, key: str) -> MixItem:
    """One entry of the load's mix: a task (``kind`` of the lab's, or ``task`` of the app under test) or a canvas
    of tasks (``chain``, ``group``, ``chord`` with its ``callback``)."""
    if isinstance(value, dict) and any(shape in value for shape in SHAPES):
        return _canvas(value, key)
    return _mix_entry(value, key)


def _canvas(value: dict[str, Any], key: str) -> CanvasEntry:
    entry = _mapping(value, key, CANVAS_KEYS)
    shapes = [shape for shape in SHAPES if shape in entry]
    if len(shapes) > 1:
        raise ScenarioError(key, f"give one canvas shape, not {' and '.join(shapes)}")
    shape = shapes[0]
    tasks = _list(entry[shape], f"{key}.{shape}", "tasks")
    if not CANVAS_SIZE[0] <= len(tasks) <= CANVAS_SIZE[1]:
        raise ScenarioError(f"{key}.{shape}", f"must hold {CANVAS_SIZE[0]} to {CANVAS_SIZE[1]} tasks, "
                                              f"got {len(tasks)}")
    immutable = entry.get("immutable", False)
    if not isinstance(immutable, bool):
        raise ScenarioError(f"{key}.immutable", f"must be true or false, got {immutable!r}")
    members = tuple(_member(task, f"{key}.{shape}[{i}]") for i, task in enumerate(tasks))
    callback = None
    if shape == "chord":
        if "callback" not in entry:
            raise ScenarioError(f"{key}.callback", "a chord needs a callback: the task run once its header is done")
        callback = _member(entry["callback"], f"{key}.callback")
    elif "callback" in entry:
        raise ScenarioError(f"{key}.callback", f"only a chord has a callback, not a {shape}")
    return CanvasEntry(shape, members, callback, float(_number(entry.get("weight", 1), f"{key}.weight")), immutable)


def _member(value: Any, key: str) -> MixEntry:
    """A task inside a canvas (its weight is the canvas's)."""
    if isinstance(value, dict) and "weight" in value:
        raise ScenarioError(f"{key}.weight", "a task inside a canvas has no weight of its own: weigh the canvas")
    return _mix_entry(value, key)


def _options(value: Any, key: str) -> dict[str, Any]:
    """Publish options: ``countdown`` and ``eta`` (>= 0) and ``expires`` (> 0) as durations (30s, 2m), ``queue`` a
    queue's name, ``priority`` 0 to 255 (checked against the publisher in :func:`_load`)."""
    options = _mapping(value, key, OPTIONS, what="publish option")
    found: dict[str, Any] = {}
    for name, given in options.items():
        if name == "queue":
            if not isinstance(given, str) or not QUEUE_NAME.fullmatch(given):
                raise ScenarioError(f"{key}.queue", f"must be a queue's name (letters, digits, _.:-), got {given!r}")
            found[name] = given
            continue
        if name == "priority":
            found[name] = _number(_number(given, f"{key}.priority", ">=", 0, whole=True), f"{key}.priority", "<=",
                                  255, whole=True)
            continue
        seconds = _at(f"{key}.{name}", parse_duration, given)
        low = 1e-3 if name == "expires" else 0.0
        if not low <= seconds <= MAX_COUNTDOWN:
            raise ScenarioError(f"{key}.{name}", f"must be between {format_duration(low)} and "
                                                 f"{format_duration(MAX_COUNTDOWN)}, got {given!r}")
        found[name] = seconds
    if "countdown" in found and "eta" in found:
        raise ScenarioError(f"{key}.eta", "give a countdown or an eta, not both")
    return found


def _mix_entry(value: Any, key: str) -> MixEntry:
    if isinstance(value, dict) and "task" in value:
        return _app_mix_entry(value, key)
    entry = _mapping(value, key, MIX_KEYS, required=("kind",))
    kind = entry["kind"]
    if not isinstance(kind, str) or kind not in KINDS:
        raise ScenarioError(f"{key}.kind", f"unknown task kind {kind!r} (allowed: {', '.join(KINDS)})")
    parameters = inspect.signature(KINDS[kind].run).parameters
    args = _mapping(entry.get("args") or {}, f"{key}.args", tuple(parameters), what=f"argument of {kind}")
    _generated(args, f"{key}.args")
    for arg, given in args.items():
        if generated.has_generators(given):
            continue
        default = parameters[arg].default
        expected = type(default)
        if default not in (None, inspect.Parameter.empty) and not _is_type(given, expected):
            raise ScenarioError(f"{key}.args.{arg}", f"must be {expected.__name__} like the default {default!r}, "
                                                     f"got {given!r}")
    return MixEntry(kind=kind, weight=float(_number(entry.get("weight", 1), f"{key}.weight")), args=dict(args),
                    options=_options(entry.get("options") or {}, f"{key}.options"))


def _app_mix_entry(value: dict[str, Any], key: str) -> MixEntry:
    """A task of the app under test: its name, positional ``args`` (a list) and ``kwargs`` (a mapping), plain data
    the broker carries as JSON, generated values among them (:mod:`chaoslab.node.generated`). Whether the app has
    the task is checked on a worker node when the run starts."""
    entry = _mapping(value, key, APP_MIX_KEYS)
    task = entry["task"]
    if not isinstance(task, str) or len(task) > 200 or not TASK_NAME.fullmatch(task):
        raise ScenarioError(f"{key}.task", f"must be a task's registered name (letters, digits, _ and .:- between "
                                           f"them), got {task!r}")
    args, kwargs = entry.get("args") or [], entry.get("kwargs") or {}
    if not isinstance(args, list) or not is_json_data(args):
        raise ScenarioError(f"{key}.args", f"must be a list of plain data (the task's positional arguments), "
                                           f"got {args!r}")
    if not isinstance(kwargs, dict) or not is_json_data(kwargs):
        raise ScenarioError(f"{key}.kwargs", f"must be a mapping of plain data (the task's keyword arguments), "
                                             f"got {kwargs!r}")
    _generated(args, f"{key}.args")
    _generated(kwargs, f"{key}.kwargs")
    return MixEntry(kind=task_kind(task), weight=float(_number(entry.get("weight", 1), f"{key}.weight")),
                    args=dict(kwargs), task=task, positional=tuple(args),
                    options=_options(entry.get("options") or {}, f"{key}.options"))


def _generated(value: Any, key: str) -> None:
    """The generators in *value* (:mod:`chaoslab.node.generated`) are ones, given right (ScenarioError otherwise)."""
    try:
        generated.check(value, key)
    except ValueError as err:
        where, _sep, message = str(err).partition(": ")
        raise ScenarioError(where, message) from None


def _is_type(value: Any, expected: type) -> bool:
    """Like isinstance, but a bool is no number and an int will do for a float."""
    if isinstance(value, bool):
        return expected is bool
    return isinstance(value, int | float) if expected is float else isinstance(value, expected)


def _phases(root: Path, value: Any) -> list[PhaseSpec]:
    phases = []
    for i, item in enumerate(_list(value, "phases", f"phases ({', '.join(PHASES)})")):
        key = f"phases[{i}]"
        phase = _mapping(item, key, PHASE_KEYS, required=("name", "duration"))
        name = phase["name"]
        if name not in PHASES:
            raise ScenarioError(f"{key}.name", f"unknown phase {name!r} (allowed, in order: {', '.join(PHASES)})")
        if any(earlier.name == name for earlier in phases):
            raise ScenarioError(f"{key}.name", f"phase {name!r} appears twice (each phase at most once)")
        if phases and PHASES.index(name) < PHASES.index(phases[-1].name):
            raise ScenarioError(f"{key}.name", f"{name!r} must come before {phases[-1].name!r} "
                                               f"(order: {', '.join(PHASES)})")
        given = [key for key in ("fault", "faults") if key in phase]
        if len(given) > 1:
            raise ScenarioError(f"{key}.faults", "give fault (one) or faults (a list), not both")
        if (name == "fault") != bool(given):
            message = "required in the fault phase" if name == "fault" else "only the fault phase takes a fault"
            raise ScenarioError(f"{key}.fault", message)
        seconds = _duration(phase["duration"], f"{key}.duration")
        faults: tuple[FaultSpec, ...] = ()
        if "fault" in phase:
            faults = (_fault(root, phase["fault"], f"{key}.fault", seconds),)
        elif "faults" in phase and phase["faults"] == []:
            faults = ()  # the fault phase run without a fault: a control (as a null control or a zero dose is kept)
        elif "faults" in phase:
            faults = tuple(_fault(root, item, f"{key}.faults[{j}]", seconds)
                           for j, item in enumerate(_list(phase["faults"], f"{key}.faults", "faults")))
            _no_clash(faults, f"{key}.faults")
        phases.append(PhaseSpec(name=name, duration=seconds, faults=faults))
    for name in REQUIRED_PHASES:
        if all(phase.name != name for phase in phases):
            raise ScenarioError("phases", f"the {name} phase is missing (required: {', '.join(REQUIRED_PHASES)})")
    return phases


def _fault(root: Path, value: Any, key: str, seconds: float) -> FaultSpec:
    fault = _mapping(value, key, FAULT_KEYS, required=("playbook",))
    playbook, target = fault["playbook"], fault.get("target")
    _at(f"{key}.playbook", fault_kind, root, playbook)
    if target is not None and not isinstance(target, str):
        raise ScenarioError(f"{key}.target", f"must be an Ansible host pattern string, got {target!r}")
    if target is not None:
        _at(f"{key}.target", pattern, target, "target")
    params = fault.get("params") or {}
    if not isinstance(params, dict):
        raise ScenarioError(f"{key}.params", f"must be a mapping of parameter -> value, got {params!r}")
    if "trigger" in fault:  # a fault's own key in a scenario, a parameter for the node's agent
        if "trigger" in params:
            raise ScenarioError(f"{key}.trigger", "give trigger once (as the fault's key or in params, not both)")
        params = {**params, "trigger": fault["trigger"]}
    accept = fault.get("accept_ineffective", False)
    if not isinstance(accept, bool):
        raise ScenarioError(f"{key}.accept_ineffective", f"must be true or false, got {accept!r}")
    at = _at(f"{key}.at", parse_duration, fault.get("at", "0s"))
    if not 0 <= at < seconds:
        raise ScenarioError(f"{key}.at", f"must be within the phase (0s to below {format_duration(seconds)}), got "
                                         f"{fault.get('at')!r}")
    duration = _duration(fault["duration"], f"{key}.duration") if "duration" in fault else None
    if duration is not None and at + duration > seconds + 1e-9:
        raise ScenarioError(f"{key}.duration", f"at + duration ({format_duration(at + duration)}) must be within the "
                                               f"phase ({format_duration(seconds)})")
    spec = FaultSpec(playbook=playbook, target=target, params={}, accept_ineffective=accept, at=at, duration=duration)
    checked = _at(f"{key}.params", validate_fault_params, root, playbook, params, spec.length(seconds))
    return replace(spec, params=checked)


def _trigger_kinds(phases: list[PhaseSpec], kinds: tuple[str, ...]) -> None:
    """A trigger on a task kind names one the load publishes (else it could never fire)."""
    for index, phase in enumerate(phases):
        for number, fault in enumerate(phase.faults):
            trigger = parse_trigger(fault.params["trigger"]) if fault.params.get("trigger") else None
            if trigger is not None and trigger.what == "started" and trigger.kind not in kinds:
                raise ScenarioError(f"phases[{index}].faults[{number}].trigger",
                                    f"started={trigger.kind}: the load publishes no task of that kind (its kinds: "
                                    f"{', '.join(kinds)})")


def _no_clash(faults: tuple[FaultSpec, ...], key: str) -> None:
    """Two faults of one kind on one target at once: the node's agent would refuse the second."""
    for i, first in enumerate(faults):
        for j, second in enumerate(faults[i + 1:], i + 1):
            same = (first.playbook, first.target) == (second.playbook, second.target)
            if same and first.at < second.at + second.length(1e18) and second.at < first.at + first.length(1e18):
                raise ScenarioError(f"{key}[{j}]", f"{second.playbook} on {second.target or 'its default target'} "
                                                   f"overlaps faults[{i}] (one at a time on a node)")


def condition(figure: str, value: Any, prefix: str = "hypothesis", kinds: tuple[str, ...] = tuple(KINDS)) -> Condition:
    """A hypothesis's condition on *figure* as written (a number, or ``"<op> value"``); ScenarioError if bad."""
    key, kind = f"{prefix}.{figure}", unit_of(figure, kinds) or ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        op, text = "==", str(value)
    else:
        match = CONDITION.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise ScenarioError(key, f"must be a number or '<op> value' with op in {', '.join(OPS)}, got {value!r}")
        op, text = match[1], match[2]
    return Condition(figure=figure, op=op, value=_figure_value(text, kind, key), text=f"{op} {text}")


def _figure_value(text: str, kind: str, key: str) -> float:
    if kind == "duration":
        return _at(key, parse_duration, text)
    try:
        number = int(text) if kind == "count" else float(text)
    except ValueError:
        what = "a whole number" if kind == "count" else "a number"
        raise ScenarioError(key, f"must be {what} for {kind} figures, got {text!r}") from None
    _number(number, key, ">=", 0)
    return _number(number, key, "<=", 1) if kind == "ratio" else number
