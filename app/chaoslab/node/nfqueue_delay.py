"""The delay engine for kernels without ``sch_netem``: hold packets in an NFQUEUE, release them late.

An iptables rule sends the node's outgoing packets towards the fault's peers to queue
``QUEUE_NUM`` (with ``--queue-bypass``: when no engine listens, packets pass undelayed, so a dead
engine never blackholes the node). The engine takes each packet's verdict later: it accepts it
once ``delay`` plus a jitter sample (uniform, normal, pareto or paretonormal, as netem draws them)
has passed since it arrived. Only the packet's metadata is copied to user space.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import select
import time
from collections.abc import Callable
from typing import Any

QUEUE_NUM = 7100
MAX_QUEUED = 65536
DISTRIBUTIONS = ("uniform", "normal", "pareto", "paretonormal")
# Mean and standard deviation of a Pareto variate with shape 3 (scale 1): standardises its samples.
_PARETO_SHAPE = 3.0
_PARETO_MEAN = _PARETO_SHAPE / (_PARETO_SHAPE - 1)
_PARETO_STD = math.sqrt(_PARETO_SHAPE / ((_PARETO_SHAPE - 1) ** 2 * (_PARETO_SHAPE - 2)))


class DelaySampler:
    """Per-packet delays: ``delay`` plus jitter drawn from a distribution, never below zero."""

    def __init__(self, delay: float, jitter: float = 0.0, distribution: str = "uniform",
                 rng: random.Random | None = None) -> None:
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"unknown distribution {distribution!r} (use {', '.join(DISTRIBUTIONS)})")
        self.delay = delay
        self.jitter = jitter
        self.distribution = distribution
        self.rng = rng or random.Random()

    def _pareto(self) -> float:
        return (self.rng.paretovariate(_PARETO_SHAPE) - _PARETO_MEAN) / _PARETO_STD

    def sample(self) -> float:
        if self.jitter <= 0:
            return self.delay
        if self.distribution == "uniform":
            offset = self.rng.uniform(-1.0, 1.0)
        elif self.distribution == "normal":
            offset = self.rng.gauss(0.0, 1.0)
        elif self.distribution == "pareto":
            offset = self._pareto()
        else:  # netem's paretonormal: a quarter normal, three quarters Pareto
            offset = (0.25 * self.rng.gauss(0.0, 1.0) + 0.75 * self._pareto()) / math.sqrt(0.25**2 + 0.75**2)
        return max(self.delay + self.jitter * offset, 0.0)


class DelayEngine:
    """Takes packets from the queue and accepts each one when its delay has passed."""

    def __init__(self, sampler: DelaySampler, queue_num: int = QUEUE_NUM,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sampler = sampler
        self.queue_num = queue_num
        self.clock = clock
        self.held: list[tuple[float, int, Any]] = []
        self.order = itertools.count()
        self.queue: Any = None
        self.stats = {"packets": 0, "released": 0}

    def bind(self) -> None:
        from netfilterqueue import COPY_META, NetfilterQueue

        self.queue = NetfilterQueue()
        self.queue.bind(self.queue_num, self._arrived, max_len=MAX_QUEUED, mode=COPY_META)

    def _arrived(self, packet: Any) -> None:
        self.stats["packets"] += 1
        heapq.heappush(self.held, (self.clock() + self.sampler.sample(), next(self.order), packet))

    def _release(self, until: float) -> None:
        while self.held and self.held[0][0] <= until:
            _, _, packet = heapq.heappop(self.held)
            packet.accept()
            self.stats["released"] += 1

    def _step(self, timeout: float) -> None:
        ready, _, _ = select.select([self.queue.get_fd()], [], [], max(timeout, 0.0))
        if ready:
            self.queue.run(block=False)

    def serve(self, until: float | None, stopped: Callable[[], bool]) -> None:
        """Delay packets until ``until`` (time.time(); None: until stopped)."""
        end = math.inf if until is None else until
        while not stopped() and time.time() < end:
            now = self.clock()
            wait = self.held[0][0] - now if self.held else 0.2
            self._step(min(wait, 0.2, end - time.time()))
            self._release(self.clock())

    def drain(self, quiet: float = 0.05) -> None:
        """Release every held packet and whatever still arrives, until the queue stays empty for ``quiet`` s."""
        if self.queue is None:
            return
        last = self.clock()
        while self.clock() - last < quiet:
            before = self.stats["packets"]
            self._step(0.01)
            self._release(math.inf)
            if self.stats["packets"] != before:
                last = self.clock()
        self.queue.unbind()
        self.queue = None
