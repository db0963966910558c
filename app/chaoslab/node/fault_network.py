"""Network faults on this node's lab NIC, towards given peers: delay, loss, bandwidth, partition.

Delay uses ``tc netem`` where the kernel has ``sch_netem``, elsewhere the NFQUEUE engine
(chaoslab.node.nfqueue_delay). Loss is dropped as it arrives from the peers by default (iptables' ``statistic``
match on INPUT: the peers' TCP sees it, as on a wire); on the node's own packets with netem or, without it,
iptables on OUTPUT. What the
fallback cannot do (correlation, duplication, corruption, reordering) is refused before anything
changes, naming the missing kernel feature. Bandwidth is ``tc tbf``; a partition drops the node's
packets from and to the peers in an iptables chain of the lab's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chaoslab.node import netfilter
from chaoslab.node.fault_record import Detail, Fault, Node, Stop
from chaoslab.node.nfqueue_delay import QUEUE_NUM, DelayEngine, DelaySampler

NO_NETEM = "this kernel has no sch_netem (tc netem: qdisc kind is unknown)"


def _us(seconds: float) -> str:
    return f"{round(seconds * 1e6)}us"


def _pct(value: float) -> str:
    return f"{value:g}%"


def choose_engine(fault: str, requested: str, netem_only: list[str]) -> str:
    """netem where the kernel has it (or where asked for); the fallback otherwise, if it can do the job."""
    available = netfilter.netem_available()
    if requested == "netem" and not available:
        raise ValueError(f"{fault}: engine=netem, but {NO_NETEM}")
    if requested == "netem" or (requested == "auto" and available):
        return "netem"
    if netem_only:
        reason = "engine=nfqueue was asked for" if requested == "nfqueue" else NO_NETEM
        raise ValueError(f"{fault}: {', '.join(netem_only)} needs tc netem, and {reason}; "
                         "the fallback engine does only delay, jitter and loss")
    return "fallback"


def _shaped(name: str, params: dict[str, Any], nic: str, peers: list[str], leaf: list[str]) -> Fault:
    def apply() -> Detail:
        netfilter.shape(nic, peers, leaf)
        return {"engine": leaf[0], "nic": nic, "peers": peers, "qdisc": " ".join(leaf)}

    return Fault(name, params, apply, revert_network)


def netem_delay_args(delay: float, jitter: float, distribution: str, correlation: float) -> list[str]:
    args = ["delay", _us(delay)]
    if jitter:
        args += [_us(jitter), *([_pct(correlation)] if correlation else [])]
        if distribution != "uniform":  # netem's jitter is uniform unless a distribution table is named
            args += ["distribution", distribution]
    return args


def network_delay(values: dict[str, Any], _node: Node) -> Fault:
    nic, peers = values["nic"], values["peers"]
    params = {key: values[key] for key in ("delay", "jitter", "distribution", "correlation")} | {"peers": peers}
    engine = choose_engine("network-delay", values["engine"], ["correlation"] if values["correlation"] else [])
    if engine == "netem":
        leaf = ["netem", *netem_delay_args(values["delay"], values["jitter"], values["distribution"],
                                            values["correlation"]), "limit", "100000"]
        return _shaped("network-delay", params, nic, peers, leaf)
    engine_box: dict[str, DelayEngine] = {}

    def apply() -> Detail:
        delay_engine = DelayEngine(DelaySampler(values["delay"], values["jitter"], values["distribution"]))
        delay_engine.bind()
        engine_box["engine"] = delay_engine
        netfilter.install_chain(netfilter.NET_CHAIN, [
            ["-o", nic, "-d", peer, "-j", "NFQUEUE", "--queue-num", str(QUEUE_NUM), "--queue-bypass"]
            for peer in peers])
        return {"engine": "nfqueue", "nic": nic, "peers": peers}

    def hold(deadline: float | None, stop: Stop) -> None:
        engine_box["engine"].serve(deadline, stop)

    def revert(detail: Detail) -> None:
        revert_network(detail)
        if "engine" in engine_box:
            engine_box["engine"].drain()

    return Fault("network-delay", params, apply, revert, hold, needs_process=True)


def _random_drop(probability: float, direction: str, nic: str, peer: str) -> list[str]:
    """An iptables rule that drops a share of the packets to (``-o``) or from (``-i``) a peer on the NIC."""
    where = ["-o", nic, "-d", peer] if direction == "out" else ["-i", nic, "-s", peer]
    return [*where, "-m", "statistic", "--mode", "random", "--probability", f"{probability:.6f}", "-j", "DROP"]


def network_loss(values: dict[str, Any], _node: Node) -> Fault:
    nic, peers, side = values["nic"], values["peers"], values["side"]
    names = ("loss", "side", "correlation", "duplicate", "corrupt", "reorder", "delay")
    params = {key: values[key] for key in names} | {"peers": peers}
    netem_only = [name for name in ("correlation", "duplicate", "corrupt", "reorder", "delay") if values[name]]
    engine = choose_engine("network-loss", values["engine"], netem_only)
    loss = values["loss"] / 100
    egress_loss = loss if side in ("egress", "both") else 0.0
    ingress_loss = loss if side in ("ingress", "both") else 0.0
    leaf = ["netem"]
    if values["delay"]:
        leaf += ["delay", _us(values["delay"])]
    if egress_loss and engine == "netem":
        leaf += ["loss", "random", _pct(values["loss"]), *([_pct(values["correlation"])]
                                                           if values["correlation"] else [])]
    for name in ("duplicate", "corrupt", "reorder"):
        if values[name]:
            leaf += [name, _pct(values[name])]
    shaped = len(leaf) > 1  # something for netem to do on the node's own packets

    def apply() -> Detail:
        detail: Detail = {"engine": "netem" if shaped else "iptables-statistic", "nic": nic, "peers": peers,
                          "side": side, "ingress": bool(ingress_loss)}
        steps: list[tuple[Callable[[], None], Callable[[], object]]] = []
        if ingress_loss:
            steps.append((lambda: netfilter.install_chain(netfilter.NET_IN_CHAIN, [
                _random_drop(ingress_loss, "in", nic, peer) for peer in peers]),
                lambda: netfilter.remove_chain(netfilter.NET_IN_CHAIN)))
        if egress_loss and not shaped:
            steps.append((lambda: netfilter.install_chain(netfilter.NET_CHAIN, [
                _random_drop(egress_loss, "out", nic, peer) for peer in peers]),
                lambda: netfilter.remove_chain(netfilter.NET_CHAIN)))
        if shaped:
            steps.append((lambda: netfilter.shape(nic, peers, [*leaf, "limit", "100000"]),
                          lambda: netfilter.unshape(nic)))
            detail["qdisc"] = " ".join([*leaf, "limit", "100000"])
        done: list[Callable[[], object]] = []
        try:
            for install, remove in steps:
                install()
                done.append(remove)
        except (RuntimeError, ValueError):  # half applied: what this fault installed goes, nothing else
            for remove in reversed(done):
                remove()
            raise
        return detail

    return Fault("network-loss", params, apply, revert_network)


def tbf_burst(values: dict[str, Any]) -> int:
    """The bucket's size in bytes: as asked, else 10 ms at the rate and at least a few full-size frames (tbf needs
    them)."""
    return int(values["burst"] or max(int(values["rate"]) // 8 // 100, 16 * 1514))


def network_bandwidth(values: dict[str, Any], _node: Node) -> Fault:
    rate = values["rate"]
    burst = tbf_burst(values)
    leaf = ["tbf", "rate", f"{rate}bit", "burst", str(burst), "latency", _us(values["latency"])]
    params = {"rate": rate, "burst": burst, "latency": values["latency"], "peers": values["peers"]}
    return _shaped("network-bandwidth", params, values["nic"], values["peers"], leaf)


def network_partition(values: dict[str, Any], _node: Node) -> Fault:
    peers = values["peers"]

    def apply() -> Detail:
        rules = [rule for peer in peers for rule in (["-s", peer, "-j", "DROP"], ["-d", peer, "-j", "DROP"])]
        netfilter.install_chain(netfilter.PARTITION_CHAIN, rules)
        return {"engine": "iptables", "peers": peers}

    return Fault("network-partition", {"peers": peers}, apply, revert_partition)


def revert_network(detail: Detail) -> None:
    """Undo one network fault: its iptables chains (fallback engines, loss on ingress) or the lab's qdisc (netem,
    tbf)."""
    if detail.get("engine") in ("nfqueue", "iptables-statistic"):
        netfilter.remove_chain(netfilter.NET_CHAIN)
    else:
        netfilter.unshape(str(detail.get("nic", "")))
    if detail.get("ingress"):
        netfilter.remove_chain(netfilter.NET_IN_CHAIN)


def revert_partition(_detail: Detail) -> None:
    netfilter.remove_chain(netfilter.PARTITION_CHAIN)


def clear_network(nic: str) -> list[str]:
    """Remove every lab chain and the lab's qdisc on ``nic``; names what was there."""
    found = [chain for table, chain, hooks in netfilter.LAB_CHAINS if netfilter.remove_chain((table, chain, hooks))]
    if nic and netfilter.lab_qdisc(nic):
        netfilter.unshape(nic)
        found.append(f"qdisc {netfilter.QDISC} on {nic}")
    return found
