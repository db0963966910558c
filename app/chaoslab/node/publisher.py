"""A fast Celery publisher for the load generator: protocol-2 messages LPUSHed to Redis in batches.

It writes exactly the envelope kombu's Redis transport writes for ``apply_async`` (same headers,
properties and base64 body), so workers cannot tell the difference, but builds it from a template
per task kind and sends every task that is due in one ``LPUSH``. Each publish is bounded by the
timeout: Redis' socket timeouts, no retries. :func:`for_broker` picks this one or the AMQP publisher
(:mod:`chaoslab.node.amqp_publisher`) by the broker URL.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from chaoslab import brokers

EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}

# A header of the lab's own: when the message was sent (the worker's ledger keeps it, for end-to-end latency).
SENT_HEADER = "chaoslab_sent"


@dataclass(frozen=True)
class Outcome:
    outcome: str  # ok, error or timeout
    error: str | None = None
    each: tuple[Outcome, ...] | None = None
    """A batch's outcome per message, where they differ (a broker that confirmed some of a batch); None: all the
    batch's."""

    def of(self, index: int) -> Outcome:
        """Message *index*'s outcome."""
        return self.each[index] if self.each is not None else self


class MessageTemplate:
    """The parts of a task message that do not change between tasks of one kind and arguments; rendered as kombu's
    Redis transport writes a message (a JSON envelope, its body base64)."""

    def __init__(self, task_name: str, kwargs: dict[str, Any], queue: str, origin: str, reply_to: str,
                 args: tuple[Any, ...] = (), options: Mapping[str, Any] | None = None,
                 delivery_mode: int = 2) -> None:
        self.task_name = task_name
        self.delivery_mode = delivery_mode  # AMQP's: 2 persistent, 1 transient (Redis keeps it as a property only)
        self.countdown = (options or {}).get("countdown")
        self.expires = (options or {}).get("expires")
        self.queue = (options or {}).get("queue") or queue
        self.payload = json.dumps([list(args), kwargs, EMBED])
        self.body = base64.b64encode(self.payload.encode()).decode()
        self.argsrepr = repr(args)
        self.kwargsrepr = repr(kwargs)
        self.origin = origin
        self.reply_to = reply_to

    def headers(self, task_id: str, now: float) -> dict[str, Any]:
        """Celery's protocol 2 headers of task *task_id* sent at *now*."""
        return {
            "lang": "py", "task": self.task_name, "id": task_id, "shadow": None, "eta": _after(now, self.countdown),
            "expires": _after(now, self.expires),
            "group": None, "group_index": None, "retries": 0, "timelimit": [None, None], "root_id": task_id,
            "parent_id": None, "argsrepr": self.argsrepr, "kwargsrepr": self.kwargsrepr, "origin": self.origin,
            "ignore_result": False, "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
            SENT_HEADER: now,
        }

    def render(self, task_id: str) -> str:
        properties = {
            "correlation_id": task_id, "reply_to": self.reply_to, "delivery_mode": self.delivery_mode,
            "delivery_info": {"exchange": "", "routing_key": self.queue}, "priority": 0,
            "body_encoding": "base64", "delivery_tag": str(uuid.uuid4()),
        }
        return json.dumps({
            "body": self.body, "content-encoding": "utf-8", "content-type": "application/json",
            "headers": self.headers(task_id, time.time()), "properties": properties,
        })


TIMEOUTS = (socket.timeout, TimeoutError)


def failed(err: BaseException) -> Outcome:
    """A publish that raised *err*: a ``timeout`` when it or its cause was one (a socket timeout, redis' or kombu's
    timeout errors), else an ``error``."""
    timeout = any(isinstance(cause, TIMEOUTS) or "Timeout" in type(cause).__name__
                  for cause in (err, err.__cause__, err.__context__) if cause is not None)
    return Outcome("timeout" if timeout else "error", f"{type(err).__name__}: {err}")


def _after(now: float, seconds: float | None) -> str | None:
    """*seconds* after *now* as Celery writes an ETA or an expiry (ISO 8601, UTC); None without one."""
    return None if seconds is None else datetime.fromtimestamp(now + seconds, tz=UTC).isoformat()


class Publisher:
    def __init__(self, broker_url: str, timeout: float, queue: str = "celery", delivery_mode: int = 2) -> None:
        self.queue = queue
        self.delivery_mode = delivery_mode
        self.client = redis.Redis.from_url(
            broker_url, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0), retry_on_error=[], health_check_interval=0,
        )
        self.origin = f"loadgen{os.getpid()}@{socket.gethostname()}"
        self.reply_to = str(uuid.uuid4())

    def template(self, task_name: str, kwargs: dict[str, Any], args: tuple[Any, ...] = (),
                 options: Mapping[str, Any] | None = None) -> MessageTemplate:
        return MessageTemplate(task_name, kwargs, self.queue, self.origin, self.reply_to, args, options,
                               self.delivery_mode)

    def publish(self, messages: list[str], queue: str | None = None) -> Outcome:
        """LPUSH the messages to their queue (the publisher's unless given) in one command; Celery's workers pop
        from the other end (FIFO)."""
        try:
            self.client.lpush(queue or self.queue, *messages)
        except redis.TimeoutError as err:
            return Outcome("timeout", f"TimeoutError: {err}")
        except (redis.RedisError, OSError) as err:
            return Outcome("error", f"{type(err).__name__}: {err}")
        return Outcome("ok")


RawPublisher = Any
"""Publisher or AmqpPublisher: ``template(...)`` makes a kind's message template, ``publish(messages, queue)`` sends
what its templates rendered."""


def for_broker(broker_url: str, timeout: float, queue: str = "celery", delivery_mode: int = 2) -> RawPublisher:
    """The raw publisher of the broker *broker_url* names: Redis (``redis://``) or RabbitMQ (``amqp://``); its
    messages of AMQP delivery mode *delivery_mode* (2 persistent, 1 transient)."""
    if brokers.of_url(broker_url) == "rabbitmq":
        from chaoslab.node.amqp_publisher import AmqpPublisher

        return AmqpPublisher(broker_url, timeout, queue, delivery_mode)
    return Publisher(broker_url, timeout, queue, delivery_mode)
