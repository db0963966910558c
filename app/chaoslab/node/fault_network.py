"""Network faults on this node's lab NIC, towards given peers: delay, loss, bandwidth, partition.

Delay, duplication, corruption and reordering use ``tc netem`` where the kernel has ``sch_netem``, elsewhere the
NFQUEUE engine (chaoslab.node.nfqueue_delay). Loss is dropped as it arrives from the peers by default (iptables'
``statistic`` match on INPUT: the peers' TCP sees it, as on a wire); on the node's own packets with netem or,
without it, iptables on OUTPUT. What the fallback cannot do (correlation) is refused before anything changes,
naming the missing kernel feature. Bandwidth is ``tc tbf``; a partition drops the node's
packets from and to the peers in an iptables chain of the lab's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chaoslab.node import netfilter
from chaoslab.node.fault_record import Detail, Fault, Node, Stop
from chaoslab.node.nfqueue_delay import COPY_MARK, QUEUE_NUM, DelayEngine, DelaySampler, Mangling

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
                         "the fallback engines do only delay, jitter, loss, duplicate, corrupt and reorder")
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


def _undo_ingress(detail: Detail) -> None:
    if detail.get("ingress"):
        netfilter.remove_chain(netfilter.NET_IN_CHAIN)


def _queue_rule(nic: str, peer: str) -> list[str]:
    """The node's packets to *peer* into the engine's queue, except the engine's own duplicates."""
    return ["-o", nic, "-d", peer, "-m", "mark", "!", "--mark", str(COPY_MARK), "-j", "NFQUEUE",
            "--queue-num", str(QUEUE_NUM), "--queue-bypass"]


def _queued(name: str, params: dict[str, Any], nic: str, peers: list[str], sampler: DelaySampler,
            first: list[list[str]] | None = None, before: Callable[[], Detail] | None = None,
            mangling: Mangling | None = None) -> Fault:
    """A fault the NFQUEUE engine holds: the node's packets to the peers through the queue, released as *sampler*
    says and mangled as *mangling* says (after the chain's *first* rules, e.g. drops); *before* applies (and
    returns the detail of) what else the fault does."""
    engine_box: dict[str, DelayEngine] = {}

    def apply() -> Detail:
        detail = before() if before is not None else {}
        try:
            delay_engine = DelayEngine(sampler, mangling=mangling or Mangling())
            delay_engine.bind()
            engine_box["engine"] = delay_engine
            netfilter.install_chain(netfilter.NET_CHAIN, [*(first or []),
                                                          *(_queue_rule(nic, peer) for peer in peers)])
        except (RuntimeError, ValueError, OSError, ImportError):  # half applied: what it installed goes, no more
            _undo_ingress(detail)
            if "engine" in engine_box:
                engine_box.pop("engine").drain()
            raise
        return {**detail, "engine": "nfqueue", "nic": nic, "peers": peers}

    def hold(deadline: float | None, stop: Stop) -> None:
        engine_box["engine"].serve(deadline, stop)

    def revert(detail: Detail) -> None:
        revert_network(detail)
        if "engine" in engine_box:
            engine_box["engine"].drain()

    return Fault(name, params, apply, revert, hold, needs_process=True)


def network_delay(values: dict[str, Any], _node: Node) -> Fault:
    nic, peers = values["nic"], values["peers"]
    params = {key: values[key] for key in ("delay", "jitter", "distribution", "correlation")} | {"peers": peers}
    engine = choose_engine("network-delay", values["engine"], ["correlation"] if values["correlation"] else [])
    if engine == "netem":
        leaf = ["netem", *netem_delay_args(values["delay"], values["jitter"], values["distribution"],
                                            values["correlation"]), "limit", "100000"]
        return _shaped("network-delay", params, nic, peers, leaf)
    return _queued("network-delay", params, nic, peers,
                   DelaySampler(values["delay"], values["jitter"], values["distribution"]))


def _random_drop(probability: float, direction: str, nic: str, peer: str) -> list[str]:
    """An iptables rule that drops a share of the packets to (``-o``) or from (``-i``) a peer on the NIC."""
    where = ["-o", nic, "-d", peer] if direction == "out" else ["-i", nic, "-s", peer]
    return [*where, "-m", "statistic", "--mode", "random", "--probability", f"{probability:.6f}", "-j", "DROP"]


def network_loss(values: dict[str, Any], _node: Node) -> Fault:
    nic, peers, side = values["nic"], values["peers"], values["side"]
    names = ("loss", "side", "correlation", "duplicate", "corrupt", "reorder", "delay")
    params = {key: values[key] for key in names} | {"peers": peers}
    # the NFQUEUE engine delays, reorders, duplicates and corrupts; only netem correlates losses
    netem_only = ["correlation"] if values["correlation"] else []
    engine = choose_engine("network-loss", values["engine"], netem_only)
    loss = values["loss"] / 100
    egress_loss = loss if side in ("egress", "both") else 0.0
    ingress_loss = loss if side in ("ingress", "both") else 0.0
    egress_drops = [_random_drop(egress_loss, "out", nic, peer) for peer in peers] if egress_loss else []

    def ingress() -> Detail:
        if ingress_loss:
            netfilter.install_chain(netfilter.NET_IN_CHAIN, [_random_drop(ingress_loss, "in", nic, peer)
                                                             for peer in peers])
        return {"side": side, "ingress": bool(ingress_loss)}

    if engine != "netem" and any(values[name] for name in ("delay", "duplicate", "corrupt", "reorder")):
        sampler = DelaySampler(values["delay"], immediate=values["reorder"] / 100)
        return _queued("network-loss", params, nic, peers, sampler, egress_drops, ingress,
                       Mangling(values["duplicate"] / 100, values["corrupt"] / 100))
    leaf = ["netem"]
    if values["delay"]:
        leaf += ["delay", _us(values["delay"])]
    if egress_loss and engine == "netem":
        leaf += ["loss", "random", _pct(values["loss"]), *([_pct(values["correlation"])]
                                                           if values["correlation"] else [])]
        egress_drops = []
    for name in ("duplicate", "corrupt", "reorder"):
        if values[name]:
            leaf += [name, _pct(values[name])]
    shaped = len(leaf) > 1  # something for netem to do on the node's own packets

    def apply() -> Detail:
        detail: Detail = {"engine": "netem" if shaped else "iptables-statistic", "nic": nic, "peers": peers,
                          **ingress()}
        try:
            if egress_drops:
                netfilter.install_chain(netfilter.NET_CHAIN, egress_drops)
            if shaped:
                netfilter.shape(nic, peers, [*leaf, "limit", "100000"])
                detail["qdisc"] = " ".join([*leaf, "limit", "100000"])
        except (RuntimeError, ValueError):  # half applied: what this fault installed goes, nothing else
            _undo_ingress(detail)
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
    _undo_ingress(detail)


def revert_partition(_detail: Detail) -> None:
    netfilter.remove_chain(netfilter.PARTITION_CHAIN)


def clear_network(nic: str) -> list[str]:
    """Remove every lab chain and the lab's qdisc on ``nic``; names what was there."""
    found = [chain for table, chain, hooks in netfilter.LAB_CHAINS if netfilter.remove_chain((table, chain, hooks))]
    if nic and netfilter.lab_qdisc(nic):
        netfilter.unshape(nic)
        found.append(f"qdisc {netfilter.QDISC} on {nic}")
    return found
