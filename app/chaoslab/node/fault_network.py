"""Network faults on this node's lab NIC, towards given peers: delay, loss, bandwidth, partition.

Delay and loss use ``tc netem`` where the kernel has ``sch_netem``; elsewhere delay falls back to
the NFQUEUE engine (chaoslab.node.nfqueue_delay) and loss to iptables' ``statistic`` match. What the
fallback cannot do (correlation, duplication, corruption, reordering) is refused before anything
changes, naming the missing kernel feature. Bandwidth is ``tc tbf``; a partition drops the node's
packets from and to the peers in an iptables chain of the lab's own.
"""

from __future__ import annotations

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


def network_loss(values: dict[str, Any], _node: Node) -> Fault:
    nic, peers = values["nic"], values["peers"]
    names = ("loss", "correlation", "duplicate", "corrupt", "reorder", "delay")
    params = {key: values[key] for key in names} | {"peers": peers}
    netem_only = [name for name in ("correlation", "duplicate", "corrupt", "reorder", "delay") if values[name]]
    engine = choose_engine("network-loss", values["engine"], netem_only)
    if engine == "netem":
        leaf = ["netem"]
        if values["delay"]:
            leaf += ["delay", _us(values["delay"])]
        if values["loss"]:
            leaf += ["loss", "random", _pct(values["loss"]), *([_pct(values["correlation"])]
                                                               if values["correlation"] else [])]
        for name in ("duplicate", "corrupt", "reorder"):
            if values[name]:
                leaf += [name, _pct(values[name])]
        return _shaped("network-loss", params, nic, peers, [*leaf, "limit", "100000"])

    def apply() -> Detail:
        probability = f"{values['loss'] / 100:.6f}"
        netfilter.install_chain(netfilter.NET_CHAIN, [
            ["-o", nic, "-d", peer, "-m", "statistic", "--mode", "random", "--probability", probability, "-j", "DROP"]
            for peer in peers])
        return {"engine": "iptables-statistic", "nic": nic, "peers": peers}

    return Fault("network-loss", params, apply, revert_network)


def network_bandwidth(values: dict[str, Any], _node: Node) -> Fault:
    rate = values["rate"]
    # At least one rate-second's worth of 10 ms and a few full-size frames, as tbf needs.
    burst = values["burst"] or max(rate // 8 // 100, 16 * 1514)
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
    """Undo one network fault: its iptables chain (fallback engines) or the lab's qdisc (netem, tbf)."""
    if detail.get("engine") in ("nfqueue", "iptables-statistic"):
        netfilter.remove_chain(netfilter.NET_CHAIN)
    else:
        netfilter.unshape(str(detail.get("nic", "")))


def revert_partition(_detail: Detail) -> None:
    netfilter.remove_chain(netfilter.PARTITION_CHAIN)


def clear_network(nic: str) -> list[str]:
    """Remove every lab chain and the lab's qdisc on ``nic``; names what was there."""
    found = [chain for table, chain, hooks in netfilter.LAB_CHAINS if netfilter.remove_chain((table, chain, hooks))]
    if nic and netfilter.lab_qdisc(nic):
        netfilter.unshape(nic)
        found.append(f"qdisc {netfilter.QDISC} on {nic}")
    return found
