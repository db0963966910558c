"""Fault windows read back from the nodes' event ledgers, for faults run by hand (``chaoslab faults``)."""

from __future__ import annotations

import json

from chaoslab.analysis.fault_history import describe, history

EFFECT = {"asked": {"delay_ms": 100.0}, "measured": {"added_rtt_ms": {"198.18.0.101": 99.2}}, "ratio": 0.992,
          "effective": True, "how": "connects"}


def fault(event: str, t: float, name: str = "network-delay", node: str = "redis", **extra: object) -> dict:
    return {"type": "fault", "event": event, "fault": name, "node": node, "t": t, **extra}


def test_windows_pair_applied_with_reverted_and_carry_their_measurement():
    records = [
        {"type": "clock", "node": "redis", "t": 1.0},
        fault("applied", 10.0), fault("measured", 15.9, effect=EFFECT), fault("reverted", 16.0),
        fault("applied", 20.0, "memory-limit", "worker-1"),
        fault("measured", 29.0, "memory-limit", "worker-1", effect={"asked": {"cap": 1}, "measured": {"oom_kills": 0},
                                                                    "ratio": 0.1, "effective": False}),
        fault("reverted", 29.5, "memory-limit", "worker-1"),
        fault("applied", 40.0, "cpu-exhaustion", "worker-2"),
        fault("applied", "later"),  # not a time: ignored
    ]
    rows = history(records, now=50.0)
    assert [(row.window.fault, row.window.target, row.in_force) for row in rows] == [
        ("network-delay", "redis", False), ("memory-limit", "worker-1", False), ("cpu-exhaustion", "worker-2", True)]
    delay, cap, cpu = rows
    assert delay.window.end - delay.window.start == 6.0 and delay.effective() == "yes"
    assert "measured added_rtt_ms" in describe(delay) and "ratio 0.992" in describe(delay)
    assert cap.effective() == "NOT EFFECTIVE"
    assert cpu.effective() == "in force, not measured yet" and cpu.as_dict()["end"] is None
    assert delay.as_dict()["end"] == 16.0 and delay.as_dict()["effect"] == EFFECT


def test_a_fault_without_a_measurement_says_so():
    kill = ("worker-kill", "worker-1")
    rows = history([fault("applied", 1.0, *kill), fault("reverted", 1.5, *kill)], now=9.0)
    assert rows[0].effective() == "not measured" and "no measurement" in describe(rows[0])


def test_chaoslab_faults_shows_the_windows_as_the_nodes_wrote_them(monkeypatch, capsys):
    from chaoslab import cli
    from chaoslab.experiment import lab

    odd = {"asked": {"delay_ms": 100.0}, "measured": {"note": "[bold]as written[/bold]"}, "ratio": 0.5,
           "effective": False}
    records = [fault("applied", 1_800_000_000.0), fault("measured", 1_800_000_005.0, effect=odd),
               fault("reverted", 1_800_000_006.0)]
    monkeypatch.setattr(lab, "node_events", lambda: records)  # the nodes' ledgers, as an ad-hoc call reads them
    assert cli.main(["faults"]) == 0
    out = capsys.readouterr().out
    assert "redis" in out and "network-delay" in out and "6.0 s" in out and "NOT EFFECTIVE" in out
    assert "08:00:00" in out and "measured note [bold]as written[/bold] (ratio 0.5)" in out  # not read as markup
    assert cli.main(["faults", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [{"fault": "network-delay", "node": "redis", "start": 1_800_000_000.0, "end": 1_800_000_006.0,
                     "in_force": False, "effect": odd, "effective": "NOT EFFECTIVE"}]
