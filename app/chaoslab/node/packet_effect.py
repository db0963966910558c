"""What duplication, corruption and reordering did to a node's packets, seen from its peers' answers.

The node sends each peer small ICMP echo requests a few milliseconds apart; the peer's kernel answers each
request that reaches it intact. So a request the fault duplicated is answered twice, one it corrupted fails the
peer's checksum and is not answered, and one it let overtake the delayed others is answered in well under the
delay. Loss asked of the same fault also leaves requests (egress) or answers (ingress) missing: the corrupted
share is what is missing beyond that.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from chaoslab.node import icmp_probe

ECHO_PROBES = 1000
"""Echo requests over all peers: at 25 % a share's standard error is 1.4 points."""
ECHO_INTERVAL = 0.004
TOLERANCE = 0.05
"""A share this close to the one asked counts as it (sampling noise of a few hundred probes)."""
EFFECTIVE = 0.9


def shares(replies: list[list[float]], delay: float, loss_out: float, loss_in: float) -> dict[str, float]:
    """Duplicated, corrupted and early shares of echo requests, from the reply times of each (*delay*: what
    the requests not reordered wait; *loss_out*/*loss_in*: the chances the fault also drops a request/answer)."""
    answered = [times for times in replies if times]
    if not replies or not answered:
        return {"duplicated": 0.0, "corrupted": 1.0 if replies else 0.0, "early": 0.0}
    extra = sum(len(times) - 1 for times in answered)
    reached = (1 - loss_out) * (1 - loss_in)  # what would be answered were nothing corrupted
    corrupted = 1 - (len(answered) / len(replies)) / reached if reached > 0 else 0.0
    early = sum(min(times) < delay / 2 for times in answered) / len(answered) if delay > 0 else 0.0
    # a copy is lost with the loss asked too (it leaves through the same rules), and so is either answer
    duplicated = extra / len(answered) / reached if reached > 0 else 0.0
    return {"duplicated": duplicated, "corrupted": max(corrupted, 0.0), "early": early}


def judge(asked: dict[str, float], seen: dict[str, float]) -> tuple[float, bool]:
    """The smallest measured-to-asked ratio over what was asked, and whether each share came near enough."""
    ratios = [seen[name] / share for name, share in asked.items()]
    near = all(seen[name] >= EFFECTIVE * share or abs(seen[name] - share) <= TOLERANCE
               for name, share in asked.items())
    return min(ratios), near


def measure(values: dict[str, Any], peers: list[str]) -> tuple[dict[str, Any], dict[str, Any], float, bool, str]:
    """Probe *peers* while the fault is in force: (asked, measured, ratio, effective, how)."""
    delay, loss, side = float(values.get("delay") or 0.0), float(values["loss"]) / 100, values.get("side")
    loss_out = loss if side in ("egress", "both") else 0.0
    loss_in = loss if side in ("ingress", "both", None) else 0.0
    names = {"duplicate": "duplicated", "corrupt": "corrupted", "reorder": "early"}
    asked = {names[param]: float(values[param]) / 100 for param in names if float(values.get(param) or 0) > 0}
    count = max(ECHO_PROBES // max(len(peers), 1), 20)
    with ThreadPoolExecutor(max_workers=max(len(peers), 1)) as pool:  # each peer at once: a short fault fits
        found = pool.map(lambda peer: icmp_probe.echoes(peer, count, ECHO_INTERVAL, 0.5 + 4 * delay), peers)
        replies = [times for answers in found for times in answers]
    seen = shares(replies, delay, loss_out, loss_in)
    ratio, effective = judge(asked, seen)
    how = (f"ICMP echo requests from the node to its peers ({len(replies)} in all, {ECHO_INTERVAL * 1000:g} ms "
           "apart to each): the share answered twice (duplicated), the share missing beyond what the loss drops "
           "(corrupted: the peer's checksum refused them), the share answered in under half the delay (early: "
           "they overtook the delayed ones)")
    return ({f"{name}_share": share for name, share in asked.items()},
            {**{f"{name}_share": round(seen[name], 4) for name in asked}, "echo_requests": len(replies)},
            ratio, effective, how)
