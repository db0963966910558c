"""The echo probe behind network-bandwidth's measurement: packets built and read right, and a real loopback."""

from __future__ import annotations

import os
import struct

import pytest

from chaoslab.node.icmp_probe import FRAME_BITS, checksum, echo_reply_seq, echo_request, throughput


def test_checksum_is_rfc_1071s():
    # RFC 1071's example words 0001 f203 f4f5 f6f7 sum to ddf2 (one's complement sum), checksum 220d
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    request = echo_request(0x1234, 7, b"abc")
    assert checksum(request) == 0  # a packet with its checksum in place sums to zero
    assert struct.unpack("!BBHHH", request[:8])[0::3] == (8, 0x1234) and request[8:] == b"abc"


def reply(ident: int, seq: int, kind: int = 0, ihl: int = 5) -> bytes:
    return bytes([0x40 | ihl]) + bytes(ihl * 4 - 1) + struct.pack("!BBHHH", kind, 0, 0, ident, seq)


def test_only_replies_to_our_requests_are_counted():
    assert echo_reply_seq(reply(42, 9), 42) == 9
    assert echo_reply_seq(reply(42, 9, ihl=6), 42) == 9  # IP options
    assert echo_reply_seq(reply(43, 9), 42) is None  # someone else's ping
    assert echo_reply_seq(reply(42, 9, kind=8), 42) is None  # a request, not a reply
    assert echo_reply_seq(b"\x45\x00", 42) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="a raw ICMP socket needs root")
def test_an_unlimited_path_answers_what_is_offered():
    found = throughput("127.0.0.1", 4e6, 0.5, grace=0.2)
    assert found.sent >= 150 and found.answered == found.sent, found
    assert 3.5e6 <= found.offered_bps <= 4.5e6 and found.answered_bps <= found.offered_bps * 1.1, found
    assert FRAME_BITS == (1400 + 28) * 8
