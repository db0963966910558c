"""The load generator's raw publisher for RabbitMQ: Celery's protocol 2 messages over AMQP, with publisher confirms.

A message goes out as kombu's AMQP transport sends ``apply_async``'s (the same headers and properties, the body as
JSON), to the default exchange with the queue's name as routing key and ``mandatory`` set: a queue that does not
exist returns the message, which is a failed publish, not a silent drop. A batch is published in one go on a
channel in confirm mode, then RabbitMQ's confirms (``basic.ack``, ``basic.nack``, ``multiple`` or not) are awaited,
all within the publish timeout: each message gets its own outcome (``ok`` once confirmed; ``error`` when nacked or
returned; ``timeout`` when unconfirmed at the deadline), so a broker that blocks publishers (a memory or disk alarm)
makes timeouts, never a hang, and a message it confirmed is never recorded as failed. A failure drops the
connection: the next publish opens a new one.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from typing import Any

import amqp

from chaoslab.node.publisher import MessageTemplate, Outcome, failed

OK = Outcome("ok")


class AmqpTemplate(MessageTemplate):
    """A task kind's message, rendered as an AMQP message."""

    def render(self, task_id: str) -> amqp.Message:  # type: ignore[override]
        return amqp.Message(
            self.payload, content_type="application/json", content_encoding="utf-8",
            application_headers=self.headers(task_id, time.time()), delivery_mode=self.delivery_mode, priority=0,
            correlation_id=task_id, reply_to=self.reply_to)


def connection_params(broker_url: str, timeout: float) -> dict[str, Any]:
    """py-amqp's connection arguments from an ``amqp://user:password@host:port/vhost`` URL, every wait bounded."""
    parts = urllib.parse.urlsplit(broker_url)
    if parts.scheme not in ("amqp", "pyamqp") or not parts.hostname:
        raise ValueError(f"not an AMQP broker URL: {parts.scheme}://...")
    vhost = urllib.parse.unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return {"host": f"{parts.hostname}:{parts.port or 5672}", "userid": urllib.parse.unquote(parts.username or ""),
            "password": urllib.parse.unquote(parts.password or ""), "virtual_host": vhost,
            "connect_timeout": timeout, "read_timeout": timeout, "write_timeout": timeout, "heartbeat": 0}


class AmqpPublisher:
    def __init__(self, broker_url: str, timeout: float, queue: str = "celery", delivery_mode: int = 2) -> None:
        self.queue = queue
        self.delivery_mode = delivery_mode
        self.timeout = timeout
        self._params = connection_params(broker_url, timeout)
        self.origin = f"loadgen{os.getpid()}@{socket.gethostname()}"
        self.reply_to = str(uuid.uuid4())
        self._connection: amqp.Connection | None = None
        self._channel: Any = None
        self._next_tag = 1  # the delivery tag the channel gives the next message published on it
        self._pending: dict[int, int] = {}  # delivery tag -> index in the batch, until confirmed
        self._results: list[Outcome | None] = []
        self._ids: dict[object, int] = {}

    def template(self, task_name: str, kwargs: dict[str, Any], args: tuple[Any, ...] = (),
                 options: Mapping[str, Any] | None = None) -> AmqpTemplate:
        return AmqpTemplate(task_name, kwargs, self.queue, self.origin, self.reply_to, args, options,
                            self.delivery_mode)

    def _open(self) -> Any:
        if self._channel is None:
            connection = amqp.Connection(**self._params)
            self._connection = connection
            connection.connect()
            channel = connection.channel()
            channel.confirm_select()
            channel.events["basic_ack"].add(self._on_ack)
            channel.events["basic_nack"].add(self._on_nack)
            channel.events["basic_return"].add(self._on_return)
            self._channel, self._next_tag = channel, 1
        return self._channel

    def _settle(self, tag: int, multiple: bool, outcome: Outcome) -> None:
        for pending in [t for t in self._pending if t <= tag] if multiple else [tag]:
            index = self._pending.pop(pending, None)
            if index is not None and self._results[index] is None:
                self._results[index] = outcome

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(delivery_tag, multiple, OK)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(delivery_tag, multiple, Outcome("error", "MessageNacked: the broker refused the message"))

    def _on_return(self, exc: Exception, _exchange: str, _routing_key: str, message: amqp.Message) -> None:
        """An unroutable message comes back before its confirm: its outcome is the return's."""
        index = self._ids.get(message.properties.get("correlation_id"))
        if index is not None and self._results[index] is None:
            self._results[index] = Outcome("error", f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        """Drop the connection (a failed publish leaves it in an unknown state)."""
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):  # already gone
                connection.collect()  # no closing handshake: the broker may be the thing that fails

    def publish(self, messages: list[amqp.Message], queue: str | None = None) -> Outcome:
        """Publish the messages to their queue (the publisher's unless given), then wait for the broker's confirms,
        all within the publish timeout; the outcome of each message (``Outcome.of``)."""
        deadline = time.monotonic() + self.timeout
        self._results = [None] * len(messages)
        self._ids = {message.properties.get("correlation_id"): index for index, message in enumerate(messages)}
        self._pending = {}
        failure: Outcome | None = None
        try:
            channel = self._open()
            for index, message in enumerate(messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"publishing {len(messages)} messages took over {self.timeout:g} s")
                channel.basic_publish(message, exchange="", routing_key=queue or self.queue, mandatory=True,
                                      timeout=left)
                self._pending[self._next_tag] = index
                self._next_tag += 1
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no confirm within {self.timeout:g} s")
                channel.connection.drain_events(timeout=left)
        except Exception as err:  # the socket's errors and time-outs, the broker closing the channel
            failure = failed(err)
            self.close()
        each = tuple(result or failure or Outcome("timeout") for result in self._results)
        self._pending, self._results, self._ids = {}, [], {}
        first = next((outcome for outcome in each if outcome.outcome != "ok"), None)
        if first is None:
            return OK
        return Outcome(first.outcome, first.error, each)
