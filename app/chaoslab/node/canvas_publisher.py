"""Publish the load's canvases (chains, groups, chords) through Celery's own canvas.

A canvas is built from signatures of the tasks' registered names and sent with ``apply_async``: Celery writes the
messages exactly as it would for the app, a chain's later links riding in the first link's message and a chord's
callback in its header's, and a chord's size in the result backend. Every task gets its id before it is published,
so the ledger knows a canvas's members before any runs. By default the publisher has a Celery app of its own (the
app's code is not needed): each publish is bounded by the timeout (the broker's and the result backend's socket
timeouts, no retries). With the ``celery`` publisher it uses the app under test itself, as its code would.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, chain, chord, group
from celery.backends.redis import RedisBackend
from celery.canvas import Signature

from chaoslab import brokers
from chaoslab.node.load_mix import CanvasEntry, MixEntry
from chaoslab.node.publisher import Outcome, failed


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
    """Canvases built with a Celery app of the publisher's own, bounded by *timeout* (:meth:`bounded_to`), or with
    the app under test (:meth:`through`: its routes, options and publish retry policy)."""

    def __init__(self, app: Celery, bounded: bool) -> None:
        self.app = app
        self.bounded = bounded

    @classmethod
    def bounded_to(cls, broker_url: str, result_backend: str, timeout: float, queue: str = "celery",
                   delivery_mode: int = 2) -> CanvasPublisher:
        backend = f"{PublishOnlyBackend.__module__}:{PublishOnlyBackend.__name__}+{result_backend}"
        app = Celery("chaoslab-canvas", broker=broker_url, backend=backend, set_as_current=False)
        app.conf.update(
            task_default_queue=queue, task_default_delivery_mode=delivery_mode, broker_connection_retry=False,
            broker_connection_timeout=timeout,
            broker_transport_options=brokers.bounded_transport(brokers.of_url(broker_url), timeout),
            redis_socket_timeout=timeout, redis_socket_connect_timeout=timeout, redis_retry_on_timeout=False,
            result_backend_always_retry=False,
        )
        return cls(app, bounded=True)

    @classmethod
    def through(cls, app: Celery) -> CanvasPublisher:
        return cls(app, bounded=False)

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
            self.canvas(entry, ids).apply_async(**({"retry": False} if self.bounded else {}))
        except Exception as err:  # whatever the broker or the result backend raised, the publish failed
            return failed(err)
        return Outcome("ok")
