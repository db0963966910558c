"""The runner's handle on a lab: everything it does to nodes goes through the project's playbooks."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import tarfile
import tempfile
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import redis
import yaml

from chaoslab import brokers, clock
from chaoslab.broker_state import BrokerState, TaskMeta
from chaoslab.experiment import lab_broker, redis_snapshot, series
from chaoslab.experiment.ansible_runner import (
    AnsibleError,
    PlaybookFailed,
    adhoc_json,
    ansible_env,
    playbook,
    project_root,
    run_fault,
    tool,
    unwrap_unsafe,
)
from chaoslab.experiment.lab_broker import SNAPSHOT_TIMEOUT_S
from chaoslab.experiment.labs import wrong_lab
from chaoslab.inputs import groups_of

HELD_BY = ("active", "reserved", "scheduled")
"""Celery's inspect commands whose answers name the task messages a worker holds unacknowledged."""


@dataclass(frozen=True)
class LabInfo:
    name: str
    redis_address: str
    redis_port: int
    monitor_address: str
    loadgen_metrics_port: int
    workers: list[str]
    password: str
    prometheus_port: int = 9090
    secrets_file: str = ""
    broker: str = "redis"
    """The task broker (chaoslab.brokers): redis, or rabbitmq on the same node (Redis stays the result backend)."""
    rabbitmq: dict[str, Any] = field(default_factory=dict)
    """Where the lab's RabbitMQ is (port, management_port, user, password, vhost), on a RabbitMQ lab."""
    groups: dict[str, list[str]] = field(default_factory=dict)
    """Every inventory group with its hosts, in order (targets and peers resolve against it)."""
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Every node's address, size (cpus, memory_mib) and, on a local lab, its cgroup."""

    @property
    def prometheus_url(self) -> str:
        return f"http://{self.monitor_address}:{self.prometheus_port}"

    @property
    def worker_hostnames(self) -> list[str]:
        """The Celery hostnames of the lab's workers (``celery@<node>``)."""
        return [f"celery@{worker}" for worker in self.workers]

    def broker_url(self) -> str:
        """The task broker's URL, as the lab's workers have it."""
        if self.broker == "rabbitmq":
            rabbit = self.rabbitmq
            return (f"amqp://{rabbit['user']}:{rabbit['password']}@{self.redis_address}:{rabbit['port']}/"
                    f"{rabbit['vhost']}")
        return self.redis_url(0)

    def redis_url(self, db: int = 0) -> str:
        """The lab's Redis: the broker's database (0, on a Redis lab) or the result backend's (1)."""
        return f"redis://:{self.password}@{self.redis_address}:{self.redis_port}/{db}"

    def redis(self, db: int = 0, timeout: float = 5.0) -> redis.Redis:
        return redis.Redis(host=self.redis_address, port=self.redis_port, db=db, password=self.password,
                           socket_timeout=timeout, socket_connect_timeout=timeout)


def client_app(info: LabInfo, name: str) -> Any:
    """A Celery app of the controller's on the lab's broker (remote control, events), its waits bounded to 3 s."""
    from celery import Celery

    app = Celery(name, broker=info.broker_url())
    app.conf.broker_connection_timeout = 3
    app.conf.broker_transport_options = brokers.bounded_transport(info.broker, 3.0)
    return app


def lab_info() -> LabInfo:
    """Read the inventory and the lab's secrets; a one-line error when the lab is not provisioned."""
    proc = subprocess.run([tool("ansible-inventory"), "--list"], cwd=project_root(), env=ansible_env(),
                          capture_output=True, text=True, check=False, timeout=120)
    if proc.returncode != 0:
        raise AnsibleError(f"cannot read the inventory: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    data = json.loads(proc.stdout, object_hook=unwrap_unsafe)
    hostvars = data["_meta"]["hostvars"]
    redis_host = hostvars[data["redis"]["hosts"][0]]
    problem = wrong_lab(str(redis_host.get("lab_backend", "")), project_root())
    if problem:
        raise AnsibleError(problem)
    monitor = hostvars[data["monitor"]["hosts"][0]]
    # Relative to the project directory where an inventory gives it so (inventory/hosts.example.yml).
    secrets_file = project_root() / (redis_host.get("lab_secrets_file") or ".lab/local/secrets.yml")
    if not secrets_file.exists():
        raise AnsibleError(f"no secrets at {secrets_file}: provision the lab first (make lab)")
    secrets = yaml.safe_load(secrets_file.read_text(encoding="utf-8"))
    broker = str(redis_host.get("lab_broker", "redis"))
    rabbitmq = {"port": int(redis_host.get("lab_rabbitmq_port", 5672)),
                "management_port": int(redis_host.get("lab_rabbitmq_management_port", 15672)),
                "user": str(redis_host.get("lab_rabbitmq_user", "chaoslab")),
                "vhost": str(redis_host.get("lab_rabbitmq_vhost", "chaoslab")),
                "password": str(secrets.get("lab_rabbitmq_password", ""))} if broker == "rabbitmq" else {}
    return LabInfo(
        name=str(redis_host.get("lab_name", "local")),
        redis_address=redis_host["lab_address"],
        redis_port=int(redis_host.get("lab_redis_port", 6379)),
        monitor_address=monitor["lab_address"],
        loadgen_metrics_port=int(monitor.get("lab_loadgen_metrics_port", 9808)),
        workers=list(data["workers"]["hosts"]),
        password=secrets["lab_redis_password"],
        prometheus_port=int(monitor.get("lab_prometheus_port", 9090)),
        secrets_file=str(secrets_file),
        broker=broker,
        rabbitmq=rabbitmq,
        groups=groups_of(data),
        nodes={name: {"address": host.get("lab_address"), "cpus": host.get("lab_cpus"),
                      "memory_mib": host.get("lab_memory_mib"), "cgroup": host.get("lab_cgroup")}
               for name, host in hostvars.items()},
    )


class TaskCounter(Protocol):
    """Counts the workers' task events (``started``, ``succeeded``, ``failed``, ...) between start and stop."""

    counts: Counter[str]

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Lab(Protocol):
    """What the experiment runner does to a lab: :class:`LabControl`'s methods (the tests give it a fake)."""

    info: LabInfo
    load_on: bool | None

    def apply_broker_settings(self, settings: dict[str, Any]) -> None: ...
    def apply_broker(self, broker: str) -> None: ...
    def size(self, sizes: dict[str, dict[str, Any]]) -> None: ...
    def apply_app(self, app: dict[str, Any]) -> None: ...
    def registered(self) -> set[str] | None: ...
    def set_load(self, enabled: bool, profile: dict[str, Any] | None = None) -> None: ...
    def background_load(self) -> None: ...
    def prepare(self, celery: dict[str, Any]) -> None: ...
    def fault(self, playbook_name: str, target: str | None, params: dict[str, Any], duration: float,
              report_dir: Path | None = None) -> list[dict[str, Any]]: ...
    def clear(self) -> None: ...
    def collect(self, dest: Path, background_load: bool = False) -> list[Path]: ...
    def store_metrics(self, start: float, end: float, directory: Path) -> Path: ...
    def idle(self) -> bool: ...
    def broker_info(self) -> redis_snapshot.BrokerInfo: ...
    def snapshot_broker(self, before: redis_snapshot.BrokerInfo | None) -> BrokerState: ...
    def task_results(self, ids: Iterable[str]) -> dict[str, TaskMeta]: ...
    def controller_clock(self) -> clock.Offset: ...
    def task_events(self) -> TaskCounter: ...
    def published(self) -> Counter[str]: ...


def unpack_ledgers(dest: Path) -> None:
    """Unpack each node's archive of ledgers that ledgers.yml fetched (<node>.ledgers.tar) into dest, then remove
    it. Only regular files with plain names are taken (chaoslab.node.ledgers makes no other); a member with a path
    or of another type is refused."""
    for archive in sorted(dest.glob("*.ledgers.tar")):
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                if not member.isfile() or Path(member.name).name != member.name or member.name.startswith("."):
                    raise ValueError(f"{archive.name}: {member.name!r} is not a plain ledger file")
                source = tar.extractfile(member)
                if source is not None:
                    (dest / member.name).write_bytes(source.read())
        archive.unlink()


def node_events() -> list[dict[str, Any]]:
    """Every lab node's event ledger as it is now (fault applied, measured, reverted; clocks), in one ad-hoc call."""
    found = adhoc_json("all", "ansible.builtin.slurp", "src={{ lab_ledger_dir }}/events.jsonl")
    unreachable = {node: str(result.get("msg", "")) for node, result in found.items() if result.get("unreachable")}
    if unreachable:
        why = unreachable[min(unreachable)]
        raise AnsibleError(f"cannot read the event ledger of {', '.join(sorted(unreachable))}: {why}")
    records = []
    for result in found.values():
        if result.get("failed") or "content" not in result:  # no event ledger yet on that node
            continue
        for line in base64.b64decode(result["content"]).decode("utf-8", "replace").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)
    return records


class LabControl:
    """Settings, load, faults and ledgers of a lab, through the same playbooks a user runs."""

    def __init__(self, info: LabInfo, quiet: bool = True) -> None:
        self.info = info
        self.quiet = quiet
        # Whether the load is on as this handle last set it (None: not known).
        self.load_on: bool | None = None
        self._control_app: Any = None
        # The app under test this handle put on the workers ({}: the inventory's); every later run of the worker
        # role is given it, so that applying a run's settings keeps the app.
        self.app: dict[str, Any] = {}
        self.broker = lab_broker.for_lab(info)

    def _play(self, path: str, extra: dict[str, Any] | None = None, tags: str | None = None) -> None:
        proc = playbook(path, extra, quiet=self.quiet, tags=tags, check=False)
        if proc.returncode != 0:
            raise PlaybookFailed(path, proc)

    def apply_broker_settings(self, settings: dict[str, Any]) -> None:
        """The broker node's servers as their roles make them with these variables (Redis's, e.g. redis_aof, and on
        a RabbitMQ lab rabbitmq_settings); {} for the inventory's own. A changed setting restarts its server."""
        tags = "redis,rabbitmq" if self.info.broker == "rabbitmq" else "redis"
        self._play("playbooks/site.yml", settings, tags=tags)

    def apply_broker(self, broker: str) -> None:
        """The lab provisioned again (site.yml) with *broker* as its task broker, and this handle on it from now on:
        the workers, the load generator and Flower restart on it, and the lab keeps it (``.lab/<lab>/broker``) until
        provisioned with another. LAB_BROKER is set for this process too, so that every later playbook and inventory
        read of the run names the same broker (one given by the user would name the other)."""
        self.load_on, self.app = None, {}
        os.environ["LAB_BROKER"] = broker
        self._play("playbooks/site.yml")
        self.info = lab_info()
        self.broker = lab_broker.for_lab(self.info)
        self._control_app = None
        self.load_on = True  # site.yml starts the lab's background load

    def size(self, sizes: dict[str, dict[str, Any]]) -> None:
        """Each node at its size for a run (host -> cpus and/or memory_mib); every other node, or every node
        with {}, at the inventory's."""
        self._play("playbooks/size.yml", {"lab_node_sizes": sizes})

    def apply_app(self, app: dict[str, Any]) -> None:
        """The workers running *app* (``celery_worker_app``: app, source, requirements); {}: the inventory's."""
        self.app = {}
        self._play("playbooks/site.yml", {"celery_worker_app": app} if app else None, tags="celery_worker")
        self.app = dict(app)

    def set_load(self, enabled: bool, profile: dict[str, Any] | None = None) -> None:
        if not enabled and self.load_on is False:
            return
        extra: dict[str, Any] = {"loadgen_enabled": enabled}
        for key, value in (profile or {}).items():
            extra[f"loadgen_{key}"] = value
        self.load_on = None
        self._play("playbooks/load.yml", extra)
        self.load_on = enabled

    def background_load(self) -> None:
        self.load_on = None
        self._play("playbooks/load.yml")
        self.load_on = True

    def prepare(self, celery: dict[str, Any]) -> None:
        """The start of a run in one playbook: the load stopped, the Celery settings applied (unless every worker
        runs with them already, as the workers themselves say; the workers restarted when one does not answer, which
        also declares their queues again after a broker lost them), the ledgers emptied and every node's clock
        measured."""
        extra: dict[str, Any] = {}
        given = self.workers_given()
        if given != {worker: celery for worker in self.info.worker_hostnames}:
            extra["celery_worker_settings"] = celery
        if given is None:  # a worker that does not answer is gone or deaf (its control bindings lost): restart
            extra["celery_worker_restart"] = True
        if self.app and "celery_worker_settings" in extra:
            extra["celery_worker_app"] = self.app
        self.load_on = None
        self._play("playbooks/prepare.yml", extra)
        self.load_on = False
        self._flush_broker()

    def _flush_broker(self) -> None:
        """Empty the task queues, the unacknowledged messages (where the broker lets go of them) and the results
        (kombu's bindings stay)."""
        self.broker.flush()
        self.info.redis(1).flushdb()

    def fault(self, playbook_name: str, target: str | None, params: dict[str, Any], duration: float,
              report_dir: Path | None = None) -> list[dict[str, Any]]:
        """Apply the fault; each target node's report (start, deadline, engine, ...) when report_dir is given.

        The parameters are parsed and passed on in canonical form, target and peers as the inventory's host names.
        """
        given = {**params, "duration": params.get("duration") or f"{duration:g}s"}
        if report_dir is not None:
            report_dir.mkdir(parents=True, exist_ok=True)
            return run_fault(playbook_name, target, given, self.info.groups, report_dir, quiet=self.quiet)
        with tempfile.TemporaryDirectory(prefix="chaoslab-fault-") as reports:
            run_fault(playbook_name, target, given, self.info.groups, Path(reports), quiet=self.quiet)
        return []

    def clear(self) -> None:
        self._play("faults/clear.yml")

    def collect(self, dest: Path, background_load: bool = False) -> list[Path]:
        """Every node's ledgers into *dest*; then, with *background_load*, the background load starts."""
        dest.mkdir(parents=True, exist_ok=True)
        extra = {"ledgers_action": "collect", "ledgers_dest": str(dest), "ledgers_background_load": background_load}
        if background_load:
            self.load_on = None
        try:
            self._play("playbooks/ledgers.yml", extra)
        finally:  # what was fetched is kept, whatever failed after it
            unpack_ledgers(dest)
        if background_load:
            self.load_on = True
        return sorted(dest.glob("*.jsonl"))

    def store_metrics(self, start: float, end: float, directory: Path) -> Path:
        """The run's Prometheus series into the run directory (metrics.json)."""
        return series.store(self.info.prometheus_url, start, end, directory)

    def queues(self) -> list[str]:
        """The task queues kombu has declared in the broker."""
        return self.broker.queues()

    def backlog(self) -> tuple[int, int]:
        """(messages waiting in the task queues, messages delivered to a worker and not acknowledged)."""
        return self.broker.backlog()

    def _control(self) -> Any:
        """The Celery app this handle asks the workers with (made once)."""
        if self._control_app is None:
            self._control_app = client_app(self.info, "chaoslab-control")
        return self._control_app

    def _inspect(self, method: str, every: bool = True) -> dict[str, Any] | None:
        """Every worker's reply to one of Celery's inspect commands; None unless every worker answered (with
        *every*), else the replies there were."""
        workers = self.info.worker_hostnames
        inspect = self._control().control.inspect(timeout=1.0, limit=len(workers))
        replies = getattr(inspect, method)() or {}
        return None if every and set(workers) - set(replies) else replies

    def active(self) -> dict[str, int] | None:
        """Tasks each worker is running now (Celery's ``inspect active``); None unless every worker answered."""
        replies = self._inspect("active")
        return None if replies is None else {name: len(tasks or []) for name, tasks in replies.items()}

    def registered(self) -> set[str] | None:
        """The tasks every worker's app registers (Celery's ``inspect registered``); None unless every worker
        answered."""
        try:
            replies = self._inspect("registered")
        except Exception:  # a broker that does not answer
            return None
        if replies is None:
            return None
        # Celery's answer names each task with its notable options: "shop.sync [rate_limit=5/s]"
        names = [{task.split(" [", 1)[0] for task in tasks or []} for tasks in replies.values()]
        return set.intersection(*names) if names else set()

    def workers_given(self) -> dict[str, Any] | None:
        """The Celery settings each running worker was given (celery_worker_settings, as ``inspect conf`` shows
        them); None unless every worker answered."""
        try:
            replies = self._inspect("conf")
        except Exception:  # a broker that does not answer: the settings are applied
            return None
        return None if replies is None else {name: conf.get("chaoslab_given") for name, conf in replies.items()}

    def idle(self) -> bool:
        """Whether the broker holds no task message (queued or unacknowledged) and no worker runs a task; on RabbitMQ,
        whose count of unacknowledged messages lags, also no worker holds a prefetched one (``inspect reserved``)."""
        queued, unacked = self.backlog()
        if queued or unacked:
            return False
        active = self.active()
        if active is None or any(active.values()):
            return False
        if self.info.broker == "rabbitmq":
            reserved = self._inspect("reserved")
            return reserved is not None and not any(reserved.values())
        return True

    def broker_info(self) -> redis_snapshot.BrokerInfo:
        return self.broker.info()

    def snapshot_broker(self, before: redis_snapshot.BrokerInfo | None) -> BrokerState:
        """Every task message the broker holds now (queued or unacknowledged)."""
        return self.broker.snapshot(before, self.held_unacked)

    def held_unacked(self) -> dict[str, str]:
        """Id -> queue of every task message a worker holds and has not acknowledged, as the workers say (active,
        reserved and scheduled); {} from workers that do not answer. The three are asked at once: each waits a
        second for a worker that does not answer (one restarting), and RabbitMQ's snapshot holds the broker's ready
        messages until they have answered, a hold the broker's consumer timeout may cut short."""
        self._control()  # made before the threads share it
        with ThreadPoolExecutor(len(HELD_BY)) as pool:
            answers = list(pool.map(self._held_by, HELD_BY))
        held: dict[str, str] = {}
        for replies in answers:
            for tasks in replies.values():
                for task in tasks or []:
                    request = task.get("request", task) if isinstance(task, dict) else {}
                    if isinstance(request, dict) and request.get("id") and not request.get("acknowledged"):
                        held[str(request["id"])] = str((request.get("delivery_info") or {}).get("routing_key") or "")
        return held

    def _held_by(self, method: str) -> dict[str, Any]:
        """The workers' replies to one of HELD_BY; {} when the broker does not answer."""
        try:
            return self._inspect(method, every=False) or {}
        except Exception:  # a broker that does not answer
            return {}

    def task_results(self, ids: Iterable[str]) -> dict[str, TaskMeta]:
        """The result backend's record of each of *ids* that has one."""
        return redis_snapshot.task_results(self.info.redis(1, timeout=SNAPSHOT_TIMEOUT_S), ids)[0]

    def controller_clock(self) -> clock.Offset:
        """The controller's clock offset to the broker's."""
        return clock.measure(self.info.redis(0))

    def task_events(self) -> TaskCounter:
        """A thread that counts the workers' task events once started (the live display's figures)."""
        from chaoslab.experiment.progress import TaskEvents

        return TaskEvents(self.info)

    def published(self) -> Counter[str]:
        """Tasks the load generator tried to publish so far, by outcome (empty when it cannot be reached)."""
        from chaoslab.experiment.progress import published

        return published(self.info)
