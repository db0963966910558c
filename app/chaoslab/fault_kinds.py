"""Every fault kind, declared once: its parameters (value kind, default, description), where it acts by
default, the node code that applies and reverts it, and its checks across parameters.

Everything else is made from these declarations: the fault playbooks ``faults/<kind>.yml``, the fault role's
entry points and argument specs, and the parameter table of ``docs/faults.md`` (``tools/fault_files.py``
writes them; CI fails when one is stale), the API's schema, and the checks the playbooks, the scenario
loader and the node's agent make (:mod:`chaoslab.fault_params`).

Adding a fault kind: its declaration here, its node code (a function ``(values, node) -> Fault`` in a module
of :mod:`chaoslab.node`, named by ``apply``), its test; then ``python tools/fault_files.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from chaoslab.fault_values import (
    MAX_DELAY,
    MIN_MEMORY_LIMIT,
    Value,
    addresses,
    choice,
    duration,
    name,
    percent,
    rate,
    signed_duration,
    signed_percent,
    size,
    size_or_share,
    trigger,
    whole,
)

ENGINES = ("auto", "netem", "nfqueue")
REDIS_POLICIES = ("allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru", "volatile-lfu", "volatile-random",
                  "volatile-ttl", "noeviction")
MIN_REDIS_MAXMEMORY = 2**20
DISTRIBUTIONS = ("uniform", "normal", "pareto", "paretonormal")


@dataclass(frozen=True)
class Param:
    """One parameter of a fault, by the name a user gives it (``-e delay=200ms``, ``params.delay``)."""

    name: str
    value: Value
    default: Any
    """None: the parameter is required."""
    description: str

    @property
    def required(self) -> bool:
        return self.default is None


DURATION = Param("duration", duration(), "", "How long the fault stays active; without one, until faults/clear.yml "
                 "(in a scenario: the fault phase's length).")
TRIGGER = Param("trigger", trigger(), "", "Arm the fault and bring it into force when this holds on the target "
                "(running>=2, reserved>=1, started=KIND on a worker; unacked>=N, read from Redis); needs a "
                "duration, which counts from arming. None: at once.")
ENGINE = Param("engine", choice(*ENGINES), "auto", "auto = tc netem where the kernel has sch_netem, else the "
               "fallback; netem or nfqueue to insist on one.")

PEERS_DESCRIPTION = ("Inventory pattern of the nodes whose traffic with the target is affected; the target itself "
                     "is left out.")

# Filled in by the fault role on the node, never given by users: the node's lab NIC, and the peers' addresses
# (a user gives peers as an inventory pattern).
NODE_VALUES: dict[str, Value] = {"nic": name(), "peers": addresses()}


def _no_check(_values: dict[str, Any]) -> None:
    return None


def _duration_of(values: dict[str, Any]) -> float:
    return float(values.get("duration") or 0.0)


@dataclass(frozen=True)
class FaultKind:
    """One kind of fault."""

    name: str
    """As a user says it, and the name of its playbook: faults/<name>.yml."""
    summary: str
    target: str
    """The inventory pattern it acts on unless a user gives a target."""
    params: tuple[Param, ...]
    apply: str
    """The node code that builds it: ``module:function`` (a module of chaoslab.node unless dotted), called with
    (values, node) and returning a chaoslab.node.fault_record.Fault."""
    revert: str = ""
    """How clear undoes it from its state file when no agent holds it (``module:function``); "" for nothing."""
    measure: str = ""
    """What measures its effect while it acts (``module:function`` of chaoslab.node, called with (values, node)
    before it is applied, returning the function that measures it: chaoslab.node.fault_effect); "" for none yet."""
    details: tuple[str, ...] = ()
    peers: str | None = None
    """Network faults: the default inventory pattern of the nodes whose traffic with the target is affected."""
    node_params: tuple[str, ...] = ()
    """What the role fills in on the node (of NODE_VALUES), besides peers."""
    check: Callable[[dict[str, Any]], None] = field(default=_no_check)
    """Checks across parameters; raises ValueError naming them."""
    lasts: Callable[[dict[str, Any]], float] = field(default=_duration_of)
    """How long the node's agent holds it (0: applied at once, held until clear)."""

    @property
    def entry(self) -> str:
        """The fault role's entry point (tasks_from) for this kind."""
        return self.name.replace("-", "_")

    def param(self, wanted: str) -> Param:
        return next(param for param in self.params if param.name == wanted)

    def user_params(self) -> list[str]:
        """What a user may give (-e name=value), besides target."""
        return [param.name for param in self.params] + (["peers"] if self.peers is not None else [])

    def schema(self) -> dict[str, Any]:
        """The fault as the API describes it: what it does, where, and each parameter's type, default, value."""
        parameters: dict[str, dict[str, Any]] = {}
        for param in self.params:
            described: dict[str, Any] = {"type": param.value.spec_type, "required": param.required,
                                         "value": param.value.describe(), "description": param.description}
            if not param.required:
                described["default"] = param.default
            if param.value.choices:
                described["choices"] = list(param.value.choices)
            parameters[param.name] = described
        if self.peers is not None:
            parameters["peers"] = {"type": "str", "required": False, "value": "inventory pattern",
                                   "default": self.peers, "description": PEERS_DESCRIPTION}
        return {"name": self.name, "description": self.summary, "details": list(self.details),
                "target": self.target, "parameters": parameters}

    def node_values(self) -> dict[str, Value]:
        """The values the node's agent takes besides the user's: the NIC and the peers' addresses."""
        wanted = [*(["peers"] if self.peers is not None else []), *self.node_params]
        return {wanted_name: NODE_VALUES[wanted_name] for wanted_name in wanted}


def _worker_kill(values: dict[str, Any]) -> None:
    if values["every"] and not values["duration"]:
        raise ValueError("worker-kill: every needs a duration (kill every 5s for 60s: every=5s duration=60s)")


def _network_delay(values: dict[str, Any]) -> None:
    if values["distribution"] != "uniform" and not values["jitter"]:
        raise ValueError(f"network-delay: distribution {values['distribution']} needs a jitter, e.g. jitter=5ms")


def _network_loss(values: dict[str, Any]) -> None:
    if not any(values[param] for param in ("loss", "duplicate", "corrupt", "reorder")):
        raise ValueError("network-loss: give at least one of loss, duplicate, corrupt, reorder above 0%")
    if values["reorder"] and not values["delay"]:
        raise ValueError("network-loss: reorder needs a delay (packets not reordered are delayed), e.g. delay=10ms")
    if values["correlation"] and values["side"] != "egress":
        raise ValueError("network-loss: correlation needs netem on the node's own packets (side=egress); "
                         f"side={values['side']} loses what the peers send at random")


def _clock_skew(values: dict[str, Any]) -> None:
    if not values["step"] and not values["drift"]:
        raise ValueError("clock-skew: give a step (e.g. step=30s, step=-2m) or a drift (e.g. drift=5%), or both")


def _redis_restart_lasts(values: dict[str, Any]) -> float:
    """Always detached, so that the service is started again even when the controller dies."""
    return max(float(values["duration"]), float(values["down_for"]), 0.001)


def _restart_params(what: str) -> tuple[Param, ...]:
    """The parameters of a service restart: how it stops, how long *what* stays down, how long the fault lasts."""
    return (Param("mode", choice("graceful", "kill"), "graceful",
                  "graceful = stop through the service manager; kill = SIGKILL."),
            Param("down_for", duration(), "0s", f"How long {what} stays down."),
            DURATION)


def _percent(param: str, description: str) -> Param:
    return Param(param, percent(), "0", description)


KINDS: dict[str, FaultKind] = {kind.name: kind for kind in (
    FaultKind(
        "worker-kill", "SIGKILL the Celery worker's main process, one pool child, or all of its processes",
        target="workers[0]",
        details=("The node's service manager restarts the worker, as systemd would.",
                 "With every and duration, the agent on the node kills again every interval until the duration "
                 "ends."),
        params=(Param("mode", choice("main", "child", "all"), "main",
                      "main = the worker's main process, child = one pool child, all = every worker process."),
                Param("every", duration(positive=True), "",
                      "Kill again at this interval until duration ends (needs a duration); none: one kill."),
                DURATION),
        apply="fault_process:worker_kill", check=_worker_kill,
        measure="fault_effect:worker_kill"),
    FaultKind(
        "worker-pause", "Freeze the Celery worker's processes (SIGSTOP), thaw them (SIGCONT) at the end",
        target="workers[0]", params=(DURATION,),
        apply="fault_process:worker_pause", revert="fault_process:thaw_workers",
        measure="fault_effect:worker_pause"),
    FaultKind(
        "cpu-exhaustion", "Saturate the node's CPU with stress-ng workers inside the node's cgroup",
        target="workers[0]",
        params=(Param("workers", whole(0, 256), 0, "stress-ng CPU workers; 0 = one per CPU."),
                Param("load", whole(1, 100), 100, "Load of each worker, percent."),
                DURATION),
        apply="fault_process:cpu_exhaustion", revert="fault_process:stop_stress",
        measure="fault_effect:cpu_exhaustion"),
    FaultKind(
        "memory-exhaustion",
        "Put the node under memory pressure with stress-ng VM workers holding memory inside the node's cgroup",
        target="workers[0]",
        params=(Param("bytes", size_or_share(), "80%",
                      "Memory to hold: a size (512MiB) or a share of the node's memory (80%: of its cgroup's limit "
                      "where one is set, else of the machine's memory); at most the node's memory."),
                Param("workers", whole(1, 64), 1, "stress-ng VM workers sharing it."),
                Param("oom", choice("stressor", "largest"), "stressor",
                      "Whom the kernel's OOM killer takes when the node runs out: stressor = the stress-ng workers "
                      "first (stress-ng's own choice, oom_score_adj 1000; they restart), largest = the process "
                      "holding most (the stressors kept at oom_score_adj 0, as `stress` leaves them: a large task "
                      "goes first)."),
                DURATION),
        apply="fault_process:memory_exhaustion", revert="fault_process:stop_stress",
        measure="fault_effect:memory_exhaustion"),
    FaultKind(
        "memory-limit", "Lower the Celery worker's memory cap at run time",
        target="workers[0]",
        details=("cgroup v1 memory.limit_in_bytes, cgroup v2 memory.max, or MemoryMax through systemctl "
                 "set-property where systemd runs the worker.",
                 "Pool children are OOM-killed when tasks need more; a cap below what the worker's main process "
                 "and the node's services use is refused."),
        params=(Param("limit", size(MIN_MEMORY_LIMIT), None, "The memory cap (e.g. 256MiB); not below what the "
                      "node needs without the pool children (checked on the node)."),
                DURATION),
        apply="fault_memory:memory_limit", revert="fault_memory:revert_memory_limit",
        measure="fault_effect:memory_limit"),
    FaultKind(
        "network-delay", "Delay the node's packets to its peers (with jitter and distribution)",
        target="redis", peers="redis:workers", node_params=("nic",),
        details=("tc netem on the node's lab NIC where the kernel has sch_netem; elsewhere an NFQUEUE engine on "
                 "the node holds the packets for the delay.",
                 "Only traffic to the peers is delayed: the controller's connection and metric scrapes stay "
                 "clean."),
        params=(Param("delay", duration(MAX_DELAY, positive=True), None, "Added delay."),
                Param("jitter", duration(MAX_DELAY), "0ms", "Jitter around the delay."),
                Param("distribution", choice(*DISTRIBUTIONS), "uniform",
                      "Jitter distribution; all but uniform need a jitter."),
                _percent("correlation", "Correlation of successive delays (netem only, and netem applies it only with "
                         "a jitter)."),
                ENGINE, DURATION),
        apply="fault_network:network_delay", revert="fault_network:revert_network", check=_network_delay,
        measure="fault_effect:network_delay"),
    FaultKind(
        "network-loss", "Lose, duplicate, corrupt or reorder the node's packets to its peers",
        target="redis", peers="redis:workers", node_params=("nic",),
        details=("loss as on a wire (side=ingress, the default): the packets the peers send the node are dropped "
                 "as they arrive (iptables' statistic match on its INPUT), so the senders' TCP sees them lost and "
                 "resends after its timeout; side=egress loses the node's own packets (tc netem, or iptables on its "
                 "OUTPUT without netem), which its TCP stack is told of at once and may resend at once.",
                 "duplicate, corrupt and reorder act on the node's own packets with tc netem; where the kernel "
                 "lacks sch_netem, with the NFQUEUE engine (a duplicate is sent again as it leaves, a corrupted "
                 "packet has one bit flipped past its IP header, a reordered one goes at once while the rest wait "
                 "for delay).",),
        params=(_percent("loss", "Packets lost (at least one of loss, duplicate, corrupt, reorder above 0)."),
                Param("side", choice("ingress", "egress", "both"), "ingress",
                      "Which packets are lost: ingress = those the peers send the node (as on a wire), egress = the "
                      "node's own, both = either way."),
                _percent("correlation", "Correlation of successive losses (netem only)."),
                _percent("duplicate", "The node's packets sent twice."),
                _percent("corrupt", "The node's packets with a bit flipped (the peer's checksum refuses them)."),
                _percent("reorder", "The node's packets sent at once while the others wait for delay (needs "
                         "delay)."),
                Param("delay", duration(MAX_DELAY), "0ms", "Delay of the node's packets not reordered."),
                ENGINE, DURATION),
        apply="fault_network:network_loss", revert="fault_network:revert_network", check=_network_loss,
        measure="fault_effect:network_loss"),
    FaultKind(
        "network-bandwidth", "Limit the rate of the node's packets to its peers (tc tbf)",
        target="redis", peers="redis:workers", node_params=("nic",),
        params=(Param("rate", rate(), None, "The rate, as tc writes it (8mbit, 512kbit, 1mbps)."),
                Param("burst", size(optional=True), "",
                      "Bucket size (default: 10 ms at the rate, at least 16 frames of 1514 bytes)."),
                Param("latency", duration(MAX_DELAY, positive=True), "100ms",
                      "Longest a packet waits in the bucket before it is dropped."),
                DURATION),
        apply="fault_network:network_bandwidth", revert="fault_network:revert_network",
        measure="fault_effect:network_bandwidth"),
    FaultKind(
        "network-partition", "Cut the node off from its peers, both directions",
        target="workers[0]", peers="redis",
        details=("iptables rules in the lab's own chain CHAOSLAB-PARTITION drop the node's packets from and to "
                 "the peers.",),
        params=(DURATION,),
        apply="fault_network:network_partition", revert="fault_network:revert_partition",
        measure="fault_effect:network_partition"),
    FaultKind(
        "redis-restart", "Restart Redis gracefully, or SIGKILL it and start it after down_for",
        target="redis",
        details=("graceful: the service manager stops it (Redis persists what its configuration says) and starts "
                 "it after down_for.",
                 "kill: SIGKILL, so that what Redis had not persisted is gone; the service manager starts it "
                 "after down_for."),
        params=_restart_params("Redis"),
        apply="fault_service:redis_restart", lasts=_redis_restart_lasts, measure="fault_effect:redis_restart"),
    FaultKind(
        "broker-restart", "Restart the lab's broker (Redis, or RabbitMQ on a RabbitMQ lab) gracefully, or SIGKILL it "
        "and start it after down_for",
        target="redis",
        details=("One name for either broker: on a Redis lab it is redis-restart; on a RabbitMQ lab it restarts "
                 "RabbitMQ (Redis, the result backend, stays up).",
                 "graceful: the service manager stops it (RabbitMQ closes its connections and stops its queues) and "
                 "starts it after down_for.",
                 "kill: SIGKILL, so that what it had not persisted is gone (RabbitMQ keeps the persistent messages "
                 "of durable queues it had confirmed); the service manager starts it after down_for."),
        params=_restart_params("the broker"),
        apply="fault_service:broker_restart", lasts=_redis_restart_lasts, measure="fault_effect:broker_restart"),
    FaultKind(
        "rabbitmq-alarm", "Raise RabbitMQ's memory or disk alarm: every publishing connection is blocked",
        target="redis",
        details=("memory: the memory high watermark set far below what the node uses; disk: the free disk limit "
                 "set far above what the disk has. RabbitMQ raises the alarm and blocks every connection that "
                 "publishes (consumers go on) until the limit in force before is put back at the end.",
                 "A RabbitMQ lab's only (LAB_BROKER=rabbitmq); the load generator's publishes time out while it "
                 "lasts."),
        params=(Param("alarm", choice("memory", "disk"), "memory", "Which resource alarm RabbitMQ raises."),
                DURATION),
        apply="fault_rabbitmq:rabbitmq_alarm", revert="fault_rabbitmq:revert_rabbitmq_alarm",
        measure="fault_effect:rabbitmq_alarm"),
    FaultKind(
        "redis-maxmemory",
        "Lower Redis's memory limit with an eviction policy: allkeys-* evicts the queues, noeviction refuses writes",
        target="redis",
        details=("CONFIG SET maxmemory and maxmemory-policy on the node's Redis; the previous values are put back "
                 "at the end (a Redis restarted meanwhile has its configured values again).",
                 "allkeys-lru and the other allkeys-* policies may evict Celery's queue lists and kombu's bindings: "
                 "queued tasks are lost. volatile-* evicts only keys with a TTL (results); noeviction makes Redis "
                 "refuse writes once it is full, so publishes fail."),
        params=(Param("maxmemory", size(MIN_REDIS_MAXMEMORY), None, "Redis's memory limit (e.g. 4MiB), counted as "
                      "Redis counts its used_memory."),
                Param("policy", choice(*REDIS_POLICIES), "allkeys-lru", "maxmemory-policy while the fault lasts."),
                DURATION),
        apply="fault_redis:redis_maxmemory", revert="fault_redis:revert_redis_maxmemory",
        measure="fault_effect:redis_maxmemory"),
    FaultKind(
        "redis-disk-full", "Fill the filesystem of Redis's data directory, so that writing its AOF or RDB fails",
        target="redis",
        details=("A file of the lab's takes all but free bytes of the filesystem Redis's dir is on, which must be "
                 "Redis's own (the redis role mounts an ext4 image of redis_data_size_mib there); the end of the fault "
                 "removes it.",
                 "With appendonly yes Redis refuses every write (MISCONF) once writing its AOF fails, until a "
                 "write succeeds again; with RDB save points, once a background save is due and fails; with no "
                 "persistence a full disk does not reach it, and the measurement says the fault was not "
                 "effective."),
        params=(Param("free", size(optional=True), "", "Bytes left free on the filesystem (none by default; e.g. "
                      "64KiB)."), DURATION),
        apply="fault_redis_disk:redis_disk_full", revert="fault_redis_disk:revert_redis_disk_full",
        measure="fault_redis_disk:disk_full_effect"),
    FaultKind(
        "redis-slow-fsync", "Cap the disk under Redis's data directory at iops writes a second: its fsyncs wait",
        target="redis",
        details=("The kernel's block I/O throttle lets iops writes a second reach the device Redis's dir is "
                 "on, as a cloud disk out of IOPS credits does (cgroup v1: blkio.throttle.write_iops_device of "
                 "Redis's cgroup; under systemd the unit's IOWriteIOPSMax; io.max in v2). Writes queue behind "
                 "the cap, and an fsync on ext4 takes a few (data and journal); below 10 a second even a single "
                 "write waits about 1/iops s (the kernel grants the budget per 100 ms). It must be a block device "
                 "of Redis's own (the redis role mounts an ext4 image of redis_data_size_mib there); the end of "
                 "the fault lifts the throttle.",
                 "With appendfsync always every write command waits for an fsync; with everysec Redis's "
                 "background fsync falls behind, and writes wait once one is pending for 2 s (aof_delayed_fsync); "
                 "with no persistence the disk does not reach Redis, and the measurement says the fault was not "
                 "effective."),
        params=(Param("iops", whole(1, 100000), 5, "Writes a second the disk takes (5: a write waits about "
                      "200 ms; an fsync, a few of them)."), DURATION),
        apply="fault_redis_fsync:redis_slow_fsync", revert="fault_redis_fsync:revert_redis_slow_fsync",
        measure="fault_redis_fsync:slow_fsync_effect"),
    FaultKind(
        "clock-skew", "Step the node's wall clock and make it run fast or slow (VMs and hosts)",
        target="workers[0]",
        details=("step: clock_settime(CLOCK_REALTIME) moves the wall clock at once; drift: the kernel's tick "
                 "(adjtimex ADJ_TICK) makes it run up to 10 % fast or slow. Celery's ETA and countdown tasks and "
                 "kombu's visibility timeout read this clock.",
                 "At the end the tick is put back and the clock set to what it would read had nothing happened. "
                 "A time-sync daemon on the node (chrony, systemd-timesyncd) may pull the clock back meanwhile: "
                 "the measurement shows what the clock did.",
                 "A run's verdict notes the window: the times the node recorded then are on its skewed clock, "
                 "which the run's clock offsets (measured at its start and end) do not correct.",
                 "Refused on the local lab, whose nodes share the host's one kernel clock."),
        params=(Param("step", signed_duration(), "", "How far the clock jumps at the start (30s ahead, -2m "
                      "back)."),
                Param("drift", signed_percent(10), "0%", "How much faster the clock runs (5%; -5% slower), at "
                      "most 10 % either way."),
                DURATION),
        apply="fault_clock:clock_skew", revert="fault_clock:revert_clock_skew", check=_clock_skew,
        measure="fault_clock:clock_skew_effect"),
)}
# Every fault may wait for a condition on the task state (chaoslab.triggers) instead of applying at once.
KINDS = {name: replace(declared, params=(*declared.params, TRIGGER)) for name, declared in KINDS.items()}



def _known_fault(value: Any) -> str:
    """A fault's name, for clearing that fault alone ("" for all)."""
    if value in ("", None):
        return ""
    if value not in KINDS:
        raise ValueError(f"'{value}' is not a fault (known: {', '.join(KINDS)})")
    return str(value)


CLEAR = FaultKind(
    "clear", "Revert every fault on the node, idempotently", target="all",
    params=(Param("only", Value("fault", _known_fault), "",
                  "Revert only this fault (e.g. network-delay); empty for every fault and the sweep."),),
    apply="")
"""Not a fault: what faults/clear.yml takes (hand-written, like the role's clear entry point)."""
