"""What a RabbitMQ broker holds, through its management API, for the checker (see :mod:`chaoslab.broker_state`).

RabbitMQ counts a queue's messages as ready (waiting) or unacknowledged (delivered to a consumer, not yet acked), but
names neither: there is no peek. The ready ones are taken over AMQP (``basic.get`` until the queue answers empty, on
one channel) and given back by closing that channel, which requeues them with their redelivered flag set: a task that
then runs once is still not duplicated (the checker calls a task duplicated only when it ran more than once). The
management API's counts lag by its statistics interval, so they only count, never bound, what is read. The
unacknowledged ones are counted by the queues themselves (``rabbitmqctl list_queues``) and held by live consumers:
Celery's workers name them (``inspect active``, ``reserved`` and ``scheduled``), and the broker's count says whether
they named them all.
"""

from __future__ import annotations

import base64
import contextlib
import json
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

import amqp

from chaoslab.broker_state import BrokerState
from chaoslab.experiment.redis_snapshot import BrokerInfo

# Queues that hold no task message: Celery's remote control (pidbox) and event queues.
CONTROL_SUFFIXES: Final = (".pidbox", "pidbox")
CONTROL_PREFIXES: Final = ("celeryev.", "celery@")


class ManagementAPI:
    """The HTTP management API of one RabbitMQ node, for one vhost, with the lab user's credentials."""

    def __init__(self, address: str, port: int, user: str, password: str, vhost: str, timeout: float = 10.0) -> None:
        self.base = f"http://{address}:{port}/api"
        self.vhost = urllib.parse.quote(vhost, safe="")
        self.timeout = timeout
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._auth = f"Basic {token}"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            f"{self.base}/{path}", method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": self._auth, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def queues(self) -> list[dict[str, Any]]:
        """Every queue of the vhost with its counts (``messages_ready``, ``messages_unacknowledged``)."""
        return list(self._call("GET", f"queues/{self.vhost}?columns=name,messages_ready,messages_unacknowledged,"
                                      "type,durable") or [])

    def task_queues(self) -> list[dict[str, Any]]:
        """The queues that may hold task messages (not Celery's remote control or event queues)."""
        return [queue for queue in self.queues() if is_task_queue(str(queue.get("name", "")))]

    def purge(self, queue: str) -> None:
        self._call("DELETE", f"queues/{self.vhost}/{urllib.parse.quote(queue, safe='')}/contents")

    def version(self) -> str:
        return str((self._call("GET", "overview?columns=rabbitmq_version") or {}).get("rabbitmq_version", "?"))

    def node(self) -> dict[str, Any]:
        """The broker node's own figures (``uptime`` in ms, ``name``)."""
        nodes = self._call("GET", "nodes?columns=name,uptime,os_pid,mem_alarm,disk_free_alarm") or []
        return dict(nodes[0]) if nodes else {}


def is_task_queue(name: str) -> bool:
    return bool(name) and not name.endswith(CONTROL_SUFFIXES) and not name.startswith(CONTROL_PREFIXES)


def message_id(message: amqp.Message) -> str:
    """A task message's id: Celery's ``id`` header (protocol 2), else its correlation id; "" for none."""
    headers = message.properties.get("application_headers") or {}
    task_id = headers.get("id") if isinstance(headers, dict) else None
    if not isinstance(task_id, str):
        task_id = message.properties.get("correlation_id")
    return task_id if isinstance(task_id, str) else ""


def take_ready(channel: Any, queues: Sequence[str]) -> dict[str, str]:
    """Id -> queue of every ready message of *queues*, each taken unacknowledged on *channel* (closing the channel
    requeues them all; until then no consumer can be handed one)."""
    found: dict[str, str] = {}
    for queue in queues:
        while (message := channel.basic_get(queue, no_ack=False)) is not None:
            if task_id := message_id(message):
                found[task_id] = queue
    return found


def backlog(queues: Iterable[dict[str, Any]]) -> tuple[int, int]:
    """(messages ready in the queues, messages delivered and not acknowledged)."""
    ready = unacked = 0
    for queue in queues:
        ready += int(queue.get("messages_ready") or 0)
        unacked += int(queue.get("messages_unacknowledged") or 0)
    return ready, unacked


def broker_info(api: ManagementAPI, now: float) -> BrokerInfo:
    """The broker's identity as a restart of its process changes it (the node's OS pid), and when it started (now
    less its uptime, to within the statistics interval)."""
    node = api.node()
    started = now - float(node.get("uptime") or 0) / 1000
    return BrokerInfo(f"{node.get('name', '?')} pid {node.get('os_pid', '?')}", started, 0)


class CutBroken(RuntimeError):
    """The broker closed the snapshot's channel before every read of its cut had ended, each time it was tried."""


def take(api: ManagementAPI, connection: amqp.Connection, unacked: Callable[[], int],
         held: Callable[[], dict[str, str]], taken: float, before: BrokerInfo | None = None) -> BrokerState:
    """The broker's messages now, as one cut: every ready message taken on one channel (so none can reach a worker
    meanwhile); the broker's own count of unacknowledged messages (*unacked*: rabbitmqctl asks the queues, the
    management API's statistics lag by seconds); the workers asked what they hold unacknowledged (*held*: id ->
    queue); then the channel closed, which requeues what it took. A message acknowledged between the count and the
    workers' answer makes the count of unnamed ones too high, never too low. Raises amqp's ChannelError when the
    broker closed the channel before the workers' answer (the cut does not hold: take it again)."""
    listed = api.task_queues()
    queues = [str(queue["name"]) for queue in listed]
    channel = connection.channel()
    try:
        queued = take_ready(channel, queues)
        others = unacked() - len(queued)  # the broker counts this channel's too
        holding = held()
        # A round trip after the last read: answered, the channel still held what it took when the workers had
        # answered. RabbitMQ closes a channel whose oldest unacknowledged delivery is older than consumer_timeout
        # and requeues what it held: then a worker may have taken one meanwhile, and this raises the broker's
        # ChannelError instead (py-amqp reads the channel's close on the next call).
        channel.basic_qos(0, 0, False)
    finally:
        with contextlib.suppress(amqp.exceptions.AMQPError, OSError):
            channel.close()  # requeues what it took (a channel the broker closed has requeued it already)
    counts = dict.fromkeys(queues, 0)
    for name in queued.values():
        counts[name] = counts.get(name, 0) + 1
    reserved: dict[str, float | None] = dict.fromkeys((task_id for task_id in holding if task_id not in queued), None)
    now = broker_info(api, taken)
    restarted = before is not None and now.run_id != before.run_id
    return BrokerState(taken=taken, broker="rabbitmq", queues=counts, queued=queued, reserved=reserved,
                       broker_started=now.started if restarted else None,
                       unnamed_unacked=max(others - len(reserved), 0), queue_types=queue_types(listed))


def queue_types(queues: list[dict[str, Any]]) -> dict[str, str]:
    """Each queue's type and durability, as the management API lists them (``classic durable``, ...)."""
    return {str(queue["name"]): f"{queue.get('type') or 'classic'} {'durable' if queue.get('durable') else 'transient'}"
            for queue in queues}


def unacked_of(listing: str) -> int:
    """The unacknowledged messages of the task queues in ``rabbitmqctl list_queues name messages_unacknowledged
    --formatter json``'s output."""
    rows = json.loads(listing or "[]")
    return sum(int(row.get("messages_unacknowledged") or 0) for row in rows if is_task_queue(str(row.get("name", ""))))
