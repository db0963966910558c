"""The runner's view of a lab's task broker, Redis or RabbitMQ: its queues, its backlog, emptying it between runs,
its identity (a restart changes it) and the snapshot the checker reads."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import amqp

from chaoslab.broker_state import BrokerState
from chaoslab.experiment import rabbitmq_snapshot, redis_snapshot
from chaoslab.experiment.ansible_runner import AnsibleError, adhoc_json
from chaoslab.experiment.redis_snapshot import BrokerInfo
from chaoslab.node.amqp_publisher import connection_params

if TYPE_CHECKING:
    from chaoslab.experiment.lab import LabInfo

# The snapshot reads every message in one server-side step: a long backlog takes seconds.
SNAPSHOT_TIMEOUT_S = 120.0
CUT_ATTEMPTS = 3
"""How many times RabbitMQ's snapshot is taken when the broker closes its channel before the cut ends: its consumer
timeout closes a channel whose oldest unacknowledged delivery is older than it, and the cut holds the ready messages
unacknowledged while it counts and asks the workers (seconds)."""

Held = Callable[[], dict[str, str]]
"""The task messages the workers hold unacknowledged (id -> queue), as they name them; {} when they do not answer."""


class LabBroker(Protocol):
    def queues(self) -> list[str]: ...
    def backlog(self) -> tuple[int, int]: ...
    def flush(self) -> None: ...
    def info(self) -> BrokerInfo: ...
    def snapshot(self, before: BrokerInfo | None, held: Held) -> BrokerState: ...
    def version(self) -> str: ...


def for_lab(info: LabInfo, unacked: Callable[[], int] | None = None) -> LabBroker:
    """The lab's broker as its inventory names it (*unacked*: how RabbitMQ's unacknowledged messages are counted on
    its node)."""
    if info.broker == "rabbitmq":
        return RabbitBroker(info.broker_url(), int(info.rabbitmq["management_port"]), unacked or rabbitmqctl_unacked)
    return RedisBroker(info.redis)


def rabbitmqctl_unacked() -> int:
    """RabbitMQ's unacknowledged task messages as its queues count them: the node's rabbitmqctl (the rabbitmq role
    writes it) through Ansible on the broker node."""
    found = adhoc_json("redis", "ansible.builtin.command", "{{ lab_etc_dir }}/rabbitmqctl -q list_queues -p "
                       "{{ lab_rabbitmq_vhost }} name messages_unacknowledged --formatter json", timeout=120)
    result = next(iter(found.values()))
    if result.get("failed") or result.get("unreachable"):
        raise AnsibleError(f"rabbitmqctl list_queues: {result.get('stderr') or result.get('msg')}")
    return rabbitmq_snapshot.unacked_of(str(result.get("stdout", "")))


class RedisBroker:
    """Kombu's Redis transport: queues are lists, unacknowledged messages a hash (see redis_snapshot)."""

    def __init__(self, client: Callable[..., object]) -> None:
        self._client = client  # LabInfo.redis: (db, timeout) -> redis.Redis

    def _redis(self, timeout: float = 5.0):  # noqa: ANN202 (redis.Redis)
        return self._client(0, timeout=timeout)

    def queues(self) -> list[str]:
        return redis_snapshot.queue_names(self._redis())

    def backlog(self) -> tuple[int, int]:
        client = self._redis(2.0)
        return redis_snapshot.backlog(client, redis_snapshot.queue_names(client))

    def flush(self) -> None:
        client = self._redis()
        client.delete(*redis_snapshot.queue_keys(redis_snapshot.queue_names(client)), redis_snapshot.UNACKED,
                      redis_snapshot.UNACKED_INDEX, "unacked_mutex")

    def info(self) -> BrokerInfo:
        return BrokerInfo.read(self._redis())

    def version(self) -> str:
        return str(self._redis().info("server").get("redis_version"))

    def snapshot(self, before: BrokerInfo | None, held: Held) -> BrokerState:
        """Every message in one atomic read (Redis names the unacknowledged ones itself: *held* is not asked)."""
        client = self._redis(SNAPSHOT_TIMEOUT_S)
        return redis_snapshot.take(client, redis_snapshot.queue_names(client), time.time(), before)


class RabbitBroker:
    """RabbitMQ through its management API and AMQP (see rabbitmq_snapshot)."""

    def __init__(self, broker_url: str, management_port: int, unacked: Callable[[], int]) -> None:
        """RabbitMQ at *broker_url* (``amqp://user:password@host:port/vhost``), its management API on the same host
        at *management_port*."""
        self._amqp = connection_params(broker_url, 10.0)
        address = str(self._amqp["host"]).rsplit(":", 1)[0]
        self.api = rabbitmq_snapshot.ManagementAPI(address, management_port, self._amqp["userid"],
                                                   self._amqp["password"], self._amqp["virtual_host"])
        self.unacked = unacked  # the broker's own count of unacknowledged task messages (rabbitmqctl on its node)

    def queues(self) -> list[str]:
        return [str(queue["name"]) for queue in self.api.task_queues()]

    def backlog(self) -> tuple[int, int]:
        """Ready messages as AMQP counts them (exact, now), unacknowledged ones as the management API last counted
        them (its statistics lag by up to collect_statistics_interval, 1 s in the lab)."""
        queues = self.api.task_queues()
        with self._connection(5.0) as connection:
            channel = connection.channel()
            ready = sum(channel.queue_declare(str(queue["name"]), passive=True).message_count for queue in queues)
        return ready, rabbitmq_snapshot.backlog(queues)[1]

    def _connection(self, timeout: float) -> amqp.Connection:
        connection = amqp.Connection(**{**self._amqp, "read_timeout": timeout})
        connection.connect()
        return connection

    def flush(self) -> None:
        """Purge the ready messages (RabbitMQ gives an unacknowledged one back only when its consumer lets go)."""
        for name in self.queues():
            self.api.purge(name)

    def info(self) -> BrokerInfo:
        return rabbitmq_snapshot.broker_info(self.api, time.time())

    def version(self) -> str:
        return self.api.version()

    def snapshot(self, before: BrokerInfo | None, held: Held) -> BrokerState:
        """The ready messages read over AMQP and requeued; the unacknowledged ones as the workers name them. A cut
        whose channel the broker closed before it ended (a consumer_timeout shorter than the cut) is taken again, up
        to CUT_ATTEMPTS times in all."""
        for _ in range(CUT_ATTEMPTS):
            started = time.monotonic()
            try:
                with self._connection(SNAPSHOT_TIMEOUT_S) as connection:
                    return rabbitmq_snapshot.take(self.api, connection, self.unacked, held, time.time(), before)
            except amqp.exceptions.ChannelError as err:
                closed, took = err, time.monotonic() - started
        raise rabbitmq_snapshot.CutBroken(
            f"RabbitMQ closed the snapshot's channel before each of {CUT_ATTEMPTS} cuts had ended (the last took "
            f"{took:.1f} s: {closed}); a consumer_timeout shorter than a cut does that, and without a snapshot the "
            "run cannot tell a pending task from a lost one")
