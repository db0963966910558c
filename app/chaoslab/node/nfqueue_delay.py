"""The NFQUEUE engine for kernels without ``sch_netem``: hold packets in an NFQUEUE, release them late, and
duplicate, corrupt or let some of them overtake the others on the way.

An iptables rule sends the node's outgoing packets towards the fault's peers to queue
``QUEUE_NUM`` (with ``--queue-bypass``: when no engine listens, packets pass undelayed, so a dead
engine never blackholes the node). The engine takes each packet's verdict later: it accepts it
once ``delay`` plus a jitter sample (uniform, normal, pareto or paretonormal, as netem draws them)
has passed since it arrived; with ``immediate`` (reorder) that share goes at once and overtakes the held
ones. Only the packet's metadata is copied to user space, unless the fault duplicates or corrupts: then the
whole packet is, and the kernel completes its checksum first (a queue without the GSO flag gets it complete).
A corrupted packet has one bit flipped past its IP header (so its addresses stay as they were and the
receiver's checksum finds it); a duplicated one is sent once more, as it leaves, through a raw socket whose
packets carry ``COPY_MARK``, which the queue's rules let pass.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import random
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

QUEUE_NUM = 7100
COPY_MARK = 0x7100
"""The firewall mark of the engine's duplicates: the queue's rules let them pass."""
MAX_QUEUED = 65536
DISTRIBUTIONS = ("uniform", "normal", "pareto", "paretonormal")
# Mean and standard deviation of a Pareto variate with shape 3 (scale 1): standardises its samples.
_PARETO_SHAPE = 3.0
_PARETO_MEAN = _PARETO_SHAPE / (_PARETO_SHAPE - 1)
_PARETO_STD = math.sqrt(_PARETO_SHAPE / ((_PARETO_SHAPE - 1) ** 2 * (_PARETO_SHAPE - 2)))


class DelaySampler:
    """Per-packet delays: ``delay`` plus jitter drawn from a distribution, never below zero; with ``immediate``,
    that share of the packets goes at once (netem's ``reorder``: they overtake the delayed ones)."""

    def __init__(self, delay: float, jitter: float = 0.0, distribution: str = "uniform",
                 rng: random.Random | None = None, immediate: float = 0.0) -> None:
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"unknown distribution {distribution!r} (use {', '.join(DISTRIBUTIONS)})")
        self.delay = delay
        self.jitter = jitter
        self.distribution = distribution
        self.rng = rng or random.Random()
        self.immediate = immediate

    def _pareto(self) -> float:
        return (self.rng.paretovariate(_PARETO_SHAPE) - _PARETO_MEAN) / _PARETO_STD

    def sample(self) -> float:
        if self.immediate and self.rng.random() < self.immediate:
            return 0.0
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


@dataclass(frozen=True)
class Mangling:
    """What happens to a packet besides its delay: the shares duplicated and corrupted (0-1)."""

    duplicate: float = 0.0
    corrupt: float = 0.0

    @property
    def needs_payload(self) -> bool:
        return bool(self.duplicate or self.corrupt)


def flip_bit(packet: bytes, rng: random.Random) -> bytes:
    """*packet* (IPv4) with one random bit flipped past its IP header."""
    start = (packet[0] & 0x0F) * 4 if packet else 0
    if len(packet) <= start:
        return packet
    at = rng.randrange(start, len(packet))
    changed = bytearray(packet)
    changed[at] ^= 1 << rng.randrange(8)
    return bytes(changed)


class DelayEngine:
    """Takes packets from the queue and accepts each one when its delay has passed (corrupting and duplicating
    the shares *mangling* asks)."""

    def __init__(self, sampler: DelaySampler, queue_num: int = QUEUE_NUM,
                 clock: Callable[[], float] = time.monotonic, mangling: Mangling | None = None,
                 rng: random.Random | None = None) -> None:
        self.sampler = sampler
        self.mangling = mangling or Mangling()
        self.rng = rng or random.Random()
        self.queue_num = queue_num
        self.clock = clock
        self.held: list[tuple[float, int, Any, bytes | None]] = []
        self.order = itertools.count()
        self.queue: Any = None
        self.copies: socket.socket | None = None
        self.stats = {"packets": 0, "released": 0, "duplicated": 0, "corrupted": 0}

    def bind(self) -> None:
        from netfilterqueue import COPY_META, COPY_PACKET, NetfilterQueue

        if self.mangling.duplicate:
            self.copies = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            self.copies.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_MARK", 36), COPY_MARK)
        self.queue = NetfilterQueue()
        self.queue.bind(self.queue_num, self._arrived, max_len=MAX_QUEUED,
                        mode=COPY_PACKET if self.mangling.needs_payload else COPY_META)

    def _arrived(self, packet: Any) -> None:
        self.stats["packets"] += 1
        rng, payload, copy = self.rng, None, None
        if self.mangling.corrupt and rng.random() < self.mangling.corrupt:
            payload = flip_bit(packet.get_payload(), rng)
            packet.set_payload(payload)
            self.stats["corrupted"] += 1
        if self.mangling.duplicate and rng.random() < self.mangling.duplicate:
            copy = payload if payload is not None else packet.get_payload()
        heapq.heappush(self.held, (self.clock() + self.sampler.sample(), next(self.order), packet, copy))

    def _release(self, until: float) -> None:
        while self.held and self.held[0][0] <= until:
            _, _, packet, copy = heapq.heappop(self.held)
            packet.accept()
            self.stats["released"] += 1
            if copy is not None and self.copies is not None:
                with contextlib.suppress(OSError):  # the node's queue is full, as for any packet it sends
                    self.copies.sendto(copy, (socket.inet_ntoa(copy[16:20]), 0))
                    self.stats["duplicated"] += 1

    def _step(self, timeout: float) -> None:
        ready, _, _ = select.select([self.queue.get_fd()], [], [], max(timeout, 0.0))
        if ready:
            self.queue.run(block=False)

    def serve(self, until: float | None, stopped: Callable[[], bool]) -> None:
        """Delay packets until ``until`` (time.time(); None: until stopped), counting the time left on the raw
        clock (a clock-skew fault on the node moves the wall clock)."""
        raw = time.clock_gettime(time.CLOCK_MONOTONIC_RAW)
        end = math.inf if until is None else raw + until - time.time()
        while not stopped() and (left := end - time.clock_gettime(time.CLOCK_MONOTONIC_RAW)) > 0:
            now = self.clock()
            wait = self.held[0][0] - now if self.held else 0.2
            self._step(min(wait, 0.2, left))
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
        if self.copies is not None:
            self.copies.close()
            self.copies = None
