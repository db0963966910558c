"""Echo requests to a peer, and what its kernel answered: the throughput a path lets through, and which requests
arrived twice, damaged (unanswered) or ahead of others.

A peer's kernel answers ICMP echo requests itself (no process of the lab needs to listen), with a reply of the
request's size; the replies come back on the peer's own path. So when a node's egress towards the peer is
limited, the answered requests per second show the limit, measured from the peer's side of it; a request that
reached the peer twice is answered twice, and one whose checksum fails there is not answered at all.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import struct
import time
from dataclasses import dataclass

ECHO_REQUEST, ECHO_REPLY = 8, 0
PAYLOAD = 1400
"""Bytes of each request's payload: with the IP and ICMP headers one frame on a 1500-byte link."""
FRAME_BITS = (PAYLOAD + 8 + 20) * 8


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, checksum(header + payload), ident, seq) + payload


def echo_reply_seq(packet: bytes, ident: int) -> int | None:
    """The sequence number of an echo reply to our requests (a raw socket receives every ICMP packet), else None."""
    offset = (packet[0] & 0x0F) * 4 if packet else 0
    if len(packet) < offset + 8:
        return None
    kind, _code, _sum, their_ident, seq = struct.unpack("!BBHHH", packet[offset:offset + 8])
    return seq if kind == ECHO_REPLY and their_ident == ident else None


@dataclass(frozen=True)
class Throughput:
    offered_bps: float
    """Bits per second of requests sent (what the probe offered the path)."""
    answered_bps: float
    """Bits per second of requests answered, from the first request to the last reply."""
    sent: int
    answered: int


def throughput(peer: str, rate_bps: float, seconds: float, grace: float = 0.5) -> Throughput:
    """Offer *peer* echo requests at *rate_bps* for *seconds*; wait *grace* more for replies still queued."""
    ident = (os.getpid() ^ random.getrandbits(16)) & 0xFFFF
    payload = os.urandom(PAYLOAD)
    interval = FRAME_BITS / rate_bps
    answered: set[int] = set()
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.setblocking(False)
        start = time.perf_counter()
        stop_sending, end = start + seconds, start + seconds + grace
        sent, due, last_reply, last_send = 0, start, start, start
        while (now := time.perf_counter()) < end:
            while now < stop_sending and now >= due and sent < 0xFFFF:
                with contextlib.suppress(OSError):  # the node's queue is full (ENOBUFS), or a rule dropped it
                    sock.sendto(echo_request(ident, sent, payload), (peer, 0))
                sent, due, last_send = sent + 1, due + interval, now
            while True:
                try:
                    seq = echo_reply_seq(sock.recv(65535), ident)
                except BlockingIOError:
                    break
                if seq is not None and seq not in answered:
                    answered.add(seq)
                    last_reply = time.perf_counter()
            if now >= stop_sending and len(answered) >= sent:
                break
            time.sleep(max(0.0, min(due - time.perf_counter(), 0.0005)) if now < stop_sending else 0.001)
    sending = max(last_send - start, interval)
    return Throughput(sent * FRAME_BITS / sending, len(answered) * FRAME_BITS / max(last_reply - start, interval),
                      sent, len(answered))


def echoes(peer: str, count: int, interval: float, wait: float) -> list[list[float]]:
    """Send *peer* *count* small echo requests *interval* apart; for each, the seconds after its sending at which
    a reply came (none when unanswered, two when the request arrived twice), waiting *wait* after the last."""
    ident = (os.getpid() ^ random.getrandbits(16)) & 0xFFFF
    sent_at: list[float] = []
    replies: list[list[float]] = [[] for _ in range(count)]
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.setblocking(False)
        start = time.perf_counter()
        end = start + count * interval + wait
        while (now := time.perf_counter()) < end:
            if len(sent_at) < count and now >= start + len(sent_at) * interval:
                with contextlib.suppress(OSError):
                    sock.sendto(echo_request(ident, len(sent_at), b"chaoslab-echo"), (peer, 0))
                sent_at.append(now)
            while True:
                try:
                    seq = echo_reply_seq(sock.recv(65535), ident)
                except BlockingIOError:
                    break
                if seq is not None and seq < len(sent_at):
                    replies[seq].append(time.perf_counter() - sent_at[seq])
            time.sleep(0.0005)
    return replies
