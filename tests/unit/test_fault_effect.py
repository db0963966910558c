"""How a fault's effect is measured and judged: TCP connects answered or not (on loopback, for real), the shape
of an effect, and the checker's windows with their effects."""

from __future__ import annotations

import socket

import pytest

from chaoslab.analysis.checker import fault_windows, ineffective
from chaoslab.analysis.figures import measure
from chaoslab.node.fault_effect import connect_time, connect_times, cpu_ratio, effect


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_closed_port_answers_with_a_reset_and_a_listening_one_accepts() -> None:
    refused = connect_time("127.0.0.1", 1.0, closed_port())
    assert refused is not None and 0 <= refused < 0.5
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        accepted = connect_time("127.0.0.1", 1.0, server.getsockname()[1])
    assert accepted is not None and 0 <= accepted < 0.5


def test_a_connect_nobody_answers_is_none() -> None:
    """A listener whose accept queue is full drops further SYNs (Linux): as a partition does, on loopback."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers = []
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        try:
            assert connect_time("127.0.0.1", 0.3, port) is None
        finally:
            for filler in fillers:
                filler.close()


def test_connects_stop_at_the_count_and_take_at_least_five() -> None:
    assert len(connect_times("127.0.0.1", 20, 1.0, budget=10.0)) == 20
    assert len(connect_times("127.0.0.1", 20, 1.0, budget=0.0)) == 5


def test_an_effect_is_effective_from_nine_tenths_of_what_was_asked() -> None:
    assert effect({"a": 1}, {"b": 0.95}, 0.95, "how")["effective"] is True
    assert effect({"a": 1}, {"b": 0.85}, 0.85, "how")["effective"] is False
    assert effect({"a": 1}, {"b": None}, None, "how")["effective"] is False
    assert effect({"a": 1}, {"b": 0.5}, 0.5, "how", effective=True)["effective"] is True


def test_windows_carry_their_measured_effect_and_the_ineffective_are_named() -> None:
    good = effect({"delay_ms": 100}, {"added_rtt_ms": {"198.18.0.10": 99.0}}, 0.99, "connects")
    bad = effect({"delay_ms": 100}, {"added_rtt_ms": {"198.18.0.10": 0.1}}, 0.001, "connects")
    events = [(10.0, "applied", "network-delay", "redis"), (20.0, "reverted", "network-delay", "redis"),
              (30.0, "applied", "network-delay", "redis"), (40.0, "reverted", "network-delay", "redis"),
              (12.0, "applied", "cpu-exhaustion", "worker-1"), (18.0, "reverted", "cpu-exhaustion", "worker-1")]
    windows = fault_windows(events, 50.0, [(15.0, "network-delay", "redis", good),
                                           (40.5, "network-delay", "redis", bad)])
    assert [(w.fault, w.start, w.effect) for w in windows] == [
        ("network-delay", 10.0, good), ("cpu-exhaustion", 12.0, None), ("network-delay", 30.0, bad)]
    assert ineffective(windows) == ["network-delay on redis: asked delay_ms 100; measured added_rtt_ms "
                                    "{'198.18.0.10': 0.1} (ratio 0.001)"]
    figures = measure({"faults": [{"effect": good}, {"effect": None}, {"effect": bad}]}, None)
    assert (figures["fault_effect"], figures["faults_not_effective"]) == (0.001, 1.0)
    assert measure({"faults": [{"effect": None}]}, None)["faults_not_effective"] is None


def test_echo_replies_give_the_shares_duplicated_corrupted_and_early() -> None:
    from chaoslab.node.packet_effect import shares

    # 10 requests, delay 20 ms: 2 answered twice, 1 unanswered, 3 answered at once
    replies = [[0.021, 0.022], [0.021, 0.023], [], [0.001], [0.002], [0.0015], [0.02], [0.02], [0.02], [0.02]]
    seen = shares(replies, 0.02, 0.0, 0.0)
    assert seen == {"duplicated": 2 / 9, "corrupted": pytest.approx(0.1), "early": 3 / 9}


def test_the_corrupted_share_is_what_is_missing_beyond_the_loss_asked() -> None:
    from chaoslab.node.packet_effect import shares

    replies = [[0.001]] * 72 + [[]] * 28  # 28 % missing with 10 % lost each way: 1 - 0.72 / 0.81 corrupted
    assert shares(replies, 0.0, 0.1, 0.1)["corrupted"] == pytest.approx(1 - 0.72 / 0.81)
    assert shares(replies, 0.0, 0.0, 0.0)["corrupted"] == pytest.approx(0.28)
    assert shares([[0.001]] * 100, 0.0, 0.1, 0.0)["corrupted"] == 0.0  # less missing than the loss: none


def test_the_duplicated_share_counts_the_copies_the_loss_dropped() -> None:
    from chaoslab.node.packet_effect import shares

    replies = [[0.001, 0.002]] * 20 + [[0.001]] * 80  # 20 % answered twice, with 10 % lost each way
    assert shares(replies, 0.0, 0.1, 0.1)["duplicated"] == pytest.approx(0.2 / 0.81)


def test_a_share_far_from_the_one_asked_is_not_effective() -> None:
    from chaoslab.node.packet_effect import judge

    assert judge({"duplicated": 0.2, "early": 0.25}, {"duplicated": 0.19, "early": 0.24, "corrupted": 0.0}) == (
        pytest.approx(0.95), True)
    ratio, near = judge({"duplicated": 0.2}, {"duplicated": 0.0, "early": 0.0, "corrupted": 0.0})
    assert ratio == 0.0 and near is False
    assert judge({"corrupted": 0.5}, {"corrupted": 0.3})[1] is False


def test_a_cpu_exhaustion_asked_to_fill_the_node_counts_the_node_at_its_cap():
    # 6 stressors on a node capped at 0.8 CPU: the node at 0.78 is full, though the worker's tasks took 0.06 of it
    assert cpu_ratio(0.72, 0.784, 6.0, 0.8) == pytest.approx(0.98)
    assert cpu_ratio(0.3, 0.35, 6.0, 0.8) == pytest.approx(0.4375)  # a node far from its cap is not full
    # half a CPU asked of two: only what the stressors took, however busy the node was otherwise
    assert cpu_ratio(0.3, 1.9, 0.5, 2.0) == pytest.approx(0.6)


class VirtualClock:
    """time.monotonic and time.sleep for a measurement that would take minutes of real time."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize("boot_s", [0.4, 77.0])
def test_a_restart_is_measured_however_long_the_server_takes_to_boot_as_the_fault_waits(monkeypatch, boot_s):
    """A broker killed for down_for and started again answers only once it has booted: in well under a second
    (Redis), or in 77 s (RabbitMQ on a software-emulated VM, measured). The measurement watches as long as the
    fault waits for the service to serve (READY_WITHIN_S), so both see it restarted."""
    from chaoslab.node import fault_effect
    from chaoslab.node.fault_service import READY_WITHIN_S

    clock = VirtualClock()
    monkeypatch.setattr(fault_effect, "time", clock)
    down_for = 10.0

    def identity() -> str | None:  # the old server until the kill at 0.1 s, none while down, then a new one
        if clock.now < 0.1:
            return "old"
        return "new" if clock.now >= 0.1 + down_for + boot_s else None

    during = fault_effect._restart_measure(down_for, identity, "a fake client")
    measured = during(fault_effect.Window({}, None, lambda: False))
    assert boot_s + down_for < READY_WITHIN_S
    assert measured["measured"]["restarted"] is True and measured["measured"]["answering"] is True, measured
    assert measured["measured"]["down_seen_s"] == pytest.approx(down_for + boot_s, abs=0.1)
    assert measured["effective"] is True
