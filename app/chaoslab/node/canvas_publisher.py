"""Publish the load's canvases (chains, groups, chords) through Celery's own canvas, by task name.

A canvas is built from signatures of the tasks' registered names (the app's code is not needed to publish them) and
sent with ``apply_async(retry=False)``: Celery writes the messages exactly as it would for the app, a chain's later
links riding in the first link's message and a chord's callback in its header's, and a chord's size in the result
backend. Every task gets its id before it is published, so the ledger knows a canvas's members before any runs.
Each publish is bounded by the timeout (the broker's and the result backend's socket timeouts, no retries).
"""

from __future__ import annotations

import socket
from typing import Any

from celery import Celery, chain, chord, group
from celery.backends.redis import RedisBackend
from celery.canvas import Signature

from chaoslab.node.load_mix import CanvasEntry, MixEntry
from chaoslab.node.publisher import Outcome

TIMEOUTS = (socket.timeout, TimeoutError)


class PublishOnlyBackend(RedisBackend):
    """Celery's Redis result backend for a producer that never waits for a result: it writes what publishing a
    canvas needs (a chord's size) but never subscribes to the results of the tasks it publishes, as the Redis
    backend otherwise does for each one (a round trip per task, and a subscription a broker fault could hang)."""

    def on_task_call(self, producer: Any, task_id: str) -> None:
        return None

    def add_pending_result(self, result: Any, weak: bool = False, start_drainer: bool = True) -> Any:
        return result

    def remove_pending_result(self, result: Any) -> Any:
        return result


class CanvasPublisher:
    def __init__(self, broker_url: str, result_backend: str, timeout: float, queue: str = "celery") -> None:
        backend = f"{PublishOnlyBackend.__module__}:{PublishOnlyBackend.__name__}+{result_backend}"
        self.app = Celery("chaoslab-canvas", broker=broker_url, backend=backend, set_as_current=False)
        self.app.conf.update(
            task_default_queue=queue, broker_connection_retry=False, broker_connection_timeout=timeout,
            broker_transport_options={"socket_timeout": timeout, "socket_connect_timeout": timeout, "max_retries": 0},
            redis_socket_timeout=timeout, redis_socket_connect_timeout=timeout, redis_retry_on_timeout=False,
            result_backend_always_retry=False,
        )

    def signature(self, entry: MixEntry, task_id: str, immutable: bool = False) -> Signature:
        return self.app.signature(entry.task_name, args=list(entry.positional), kwargs=dict(entry.args),
                                  options={**entry.options, "task_id": task_id}, immutable=immutable)

    def canvas(self, entry: CanvasEntry, ids: list[str]) -> Any:
        """The canvas of *entry* with *ids* for its members in order, then its callback's."""
        members = [self.signature(member, task_id, entry.immutable)
                   for member, task_id in zip(entry.members, ids, strict=False)]
        if entry.shape == "chain":
            return chain(*members)
        if entry.shape == "group":
            return group(members)
        if entry.callback is None:
            raise ValueError("a chord needs a callback")
        return chord(group(members), self.signature(entry.callback, ids[len(members)], entry.immutable))

    def publish(self, entry: CanvasEntry, ids: list[str]) -> Outcome:
        try:
            self.canvas(entry, ids).apply_async(retry=False)
        except TIMEOUTS as err:
            return Outcome("timeout", f"{type(err).__name__}: {err}")
        except Exception as err:  # whatever the broker or the result backend raised, the publish failed
            timeout = any(isinstance(cause, TIMEOUTS) or "Timeout" in type(cause).__name__
                          for cause in (err, err.__cause__, err.__context__))
            return Outcome("timeout" if timeout else "error", f"{type(err).__name__}: {err}")
        return Outcome("ok")
