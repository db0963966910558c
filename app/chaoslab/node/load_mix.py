"""What a load publishes: single tasks (a lab task kind or a task of the app under test) and canvases of them.

A :class:`MixEntry` is one task with its arguments and publish options (``countdown``, ``eta``, ``expires``,
``queue``, ``priority``); a
:class:`CanvasEntry` is a chain, a group or a chord of such tasks, published through Celery's own canvas. Both read
back from the YAML/JSON form the scenario writes into the load profile (:func:`mix_item`); the scenario has
checked that form, the load generator trusts it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from chaoslab.ledger import LAB_TASK_PREFIX, task_kind
from chaoslab.node import generated
from chaoslab.units import format_duration, parse_duration

TASK_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*([.:-][A-Za-z0-9_]+)*")
"""A task of the app under test, by the name the app registers (shop.tasks.charge)."""
SHAPES: Final = ("chain", "group", "chord")
"""Canvas shapes a load can publish: a chain runs its links one after another (each published by the worker that
ran the one before), a group runs its members side by side, a chord runs a group and then its callback once."""
DURATION_OPTIONS: Final = ("countdown", "eta", "expires")
"""Publish options in seconds: run no earlier than ``countdown`` after being published (a chain's later link: after
the worker publishes it), or than ``eta`` after the load's start (every task of the entry due at the same moment),
and discard if not started ``expires`` after being published."""
OPTIONS: Final = (*DURATION_OPTIONS, "queue", "priority")
"""Besides: the ``queue`` to publish to and the message ``priority`` (the celery publisher only)."""
QUEUE_NAME: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,99}")


@dataclass(frozen=True)
class MixEntry:
    """One kind of task in the load: a lab task kind (``kind``, keyword arguments in ``args``), or a task of the app
    under test by its name (``task``, positional arguments in ``positional``, keyword arguments in ``args``), with
    publish ``options``."""

    kind: str
    weight: float = 1.0
    args: dict[str, Any] = field(default_factory=dict)
    task: str = ""
    positional: tuple[Any, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def task_name(self) -> str:
        return self.task or LAB_TASK_PREFIX + self.kind

    @property
    def generated(self) -> bool:
        """Whether its arguments hold generators (:mod:`chaoslab.node.generated`): made afresh for each task."""
        return generated.has_generators(self.positional) or generated.has_generators(self.args)

    def rendered(self, rng: random.Random, seq: int) -> MixEntry:
        """This task with its generated arguments made for the task numbered *seq*."""
        if not self.generated:
            return self
        return replace(self, positional=tuple(generated.render(list(self.positional), rng, seq)),
                       args=generated.render(dict(self.args), rng, seq))

    def to_data(self, weight: bool = True) -> dict[str, Any]:
        """The YAML/JSON form :func:`mix_item` reads back."""
        data: dict[str, Any] = {"weight": self.weight} if weight else {}
        named = {"task": self.task} if self.task else {"kind": self.kind}
        optional = ({"args": list(self.positional), "kwargs": dict(self.args)} if self.task
                    else {"args": dict(self.args)})
        optional["options"] = {name: format_duration(value) if name in DURATION_OPTIONS else value
                               for name, value in self.options.items()}
        return {**data, **named, **{key: value for key, value in optional.items() if value}}


@dataclass(frozen=True)
class CanvasEntry:
    """A canvas in the load: a ``chain`` of ``members`` (its links, in order), a ``group`` of them, or a ``chord``
    (``members`` its header, ``callback`` its body). ``immutable``: no task gets the result of the one before (a
    chain's link or a chord's callback otherwise receives it as its first argument, as Celery does)."""

    shape: str
    members: tuple[MixEntry, ...]
    callback: MixEntry | None = None
    weight: float = 1.0
    immutable: bool = False

    @property
    def kind(self) -> str:
        return self.shape

    def rendered(self, rng: random.Random, seq: int) -> CanvasEntry:
        """This canvas with its tasks' generated arguments made, numbered from *seq* in order."""
        members = tuple(member.rendered(rng, seq + index) for index, member in enumerate(self.members))
        callback = self.callback.rendered(rng, seq + len(members)) if self.callback is not None else None
        return replace(self, members=members, callback=callback)

    def to_data(self, weight: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {"weight": self.weight} if weight else {}
        data[self.shape] = [member.to_data(weight=False) for member in self.members]
        if self.callback is not None:
            data["callback"] = self.callback.to_data(weight=False)
        if self.immutable:
            data["immutable"] = True
        return data


MixItem = MixEntry | CanvasEntry


def mix_entry(data: Mapping[str, Any]) -> MixEntry:
    """A task from its YAML/JSON form: {kind, weight, args} for a lab task kind, {task, weight, args, kwargs} for a
    task of the app under test (args positional); either with ``options``."""
    weight = float(data.get("weight", 1))
    options = {name: parse_duration(value, allow_bare_seconds=True) if name in DURATION_OPTIONS else value
               for name, value in (data.get("options") or {}).items()}
    if data.get("task"):
        return MixEntry(task_kind(data["task"]), weight, dict(data.get("kwargs") or {}), data["task"],
                        tuple(data.get("args") or ()), options)
    return MixEntry(data["kind"], weight, dict(data.get("args") or {}), options=options)


def mix_item(data: Mapping[str, Any]) -> MixItem:
    """A task or a canvas from its YAML/JSON form (a canvas: {chain|group|chord: [tasks], callback, weight})."""
    shape = next((name for name in SHAPES if name in data), None)
    if shape is None:
        return mix_entry(data)
    callback = data.get("callback")
    return CanvasEntry(shape, tuple(mix_entry(member) for member in data[shape]),
                       mix_entry(callback) if callback else None, float(data.get("weight", 1)),
                       bool(data.get("immutable", False)))
