"""The lab's own iptables chains and tc qdisc on a node's lab NIC, made and removed idempotently.

Chains (each reached by one jump rule from the built-in chains named below):

- ``CHAOSLAB-NET`` (filter, from OUTPUT): packets towards a fault's peers to the delay engine's
  NFQUEUE, or dropped at random (loss on kernels without netem);
- ``CHAOSLAB-NET-IN`` (filter, from INPUT): packets from a fault's peers dropped at random as they arrive (loss
  as on a wire: the peers' TCP sees it);
- ``CHAOSLAB-CLASS`` (mangle, from POSTROUTING): packets towards the peers into the shaped class
  of the lab's qdisc;
- ``CHAOSLAB-PARTITION`` (filter, from INPUT and OUTPUT): packets from and to the peers dropped.

The qdisc is an HTB root with handle ``c1a0:``: class ``c1a0:1`` is the unshaped default,
``c1a0:2`` holds the fault's netem or tbf for the traffic ``CHAOSLAB-CLASS`` puts there.
"""

from __future__ import annotations

import subprocess

NET_CHAIN = ("filter", "CHAOSLAB-NET", ("OUTPUT",))
NET_IN_CHAIN = ("filter", "CHAOSLAB-NET-IN", ("INPUT",))
CLASS_CHAIN = ("mangle", "CHAOSLAB-CLASS", ("POSTROUTING",))
PARTITION_CHAIN = ("filter", "CHAOSLAB-PARTITION", ("INPUT", "OUTPUT"))
LAB_CHAINS = (NET_CHAIN, NET_IN_CHAIN, CLASS_CHAIN, PARTITION_CHAIN)
QDISC = "c1a0:"
SHAPED_CLASS = "c1a0:2"
UNSHAPED_RATE = "100gbit"


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except FileNotFoundError:
        proc = subprocess.CompletedProcess(list(argv), 127, "", f"{argv[0]}: command not found")
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {(proc.stderr or proc.stdout).strip()}")
    return proc


def iptables(table: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("iptables", "-w", "5", "-t", table, *args, check=check)


def chain_exists(table: str, chain: str) -> bool:
    return iptables(table, "-S", chain, check=False).returncode == 0


def chain_rules(table: str, chain: str) -> list[str]:
    """The chain's rules (``-A ...`` lines), empty when it does not exist."""
    proc = iptables(table, "-S", chain, check=False)
    return [line for line in proc.stdout.splitlines() if line.startswith("-A ")] if proc.returncode == 0 else []


def install_chain(spec: tuple[str, str, tuple[str, ...]], rules: list[list[str]]) -> None:
    """Create the chain with ``rules`` (each an iptables rule after ``-A <chain>``) and jump to it."""
    table, chain, hooks = spec
    if chain_exists(table, chain):
        raise ValueError(f"iptables chain {chain} is already in use by another fault; run faults/clear.yml first")
    iptables(table, "-N", chain)
    try:
        for rule in rules:
            iptables(table, "-A", chain, *rule)
        for hook in hooks:
            iptables(table, "-I", hook, "1", "-j", chain)
    except BaseException:  # a rule iptables refused: leave nothing half made behind
        remove_chain(spec)
        raise


def remove_chain(spec: tuple[str, str, tuple[str, ...]]) -> bool:
    """Remove the chain and its jumps; False when there was nothing to remove."""
    table, chain, hooks = spec
    found = False
    for hook in hooks:
        while iptables(table, "-D", hook, "-j", chain, check=False).returncode == 0:
            found = True
    if chain_exists(table, chain):
        iptables(table, "-F", chain)
        iptables(table, "-X", chain)
        found = True
    return found


def lab_qdisc(nic: str) -> bool:
    """Whether the NIC's root qdisc is the lab's."""
    out = run("tc", "qdisc", "show", "dev", nic, "root", check=False).stdout
    return f" {QDISC} " in f" {out} "


def shape(nic: str, peers: list[str], leaf: list[str]) -> None:
    """Put traffic from ``nic`` towards ``peers`` through ``leaf`` (e.g. ["netem", "delay", "20ms"])."""
    if lab_qdisc(nic):
        raise ValueError(f"a network fault already shapes {nic}; run faults/clear.yml first")
    install_chain(CLASS_CHAIN, [["-o", nic, "-d", peer, "-j", "CLASSIFY", "--set-class", SHAPED_CLASS]
                                for peer in peers])
    try:
        run("tc", "qdisc", "replace", "dev", nic, "root", "handle", QDISC, "htb", "default", "1")
        for minor in ("1", "2"):
            run("tc", "class", "add", "dev", nic, "parent", QDISC, "classid", f"{QDISC}{minor}", "htb",
                "rate", UNSHAPED_RATE, "quantum", "60000")
        run("tc", "qdisc", "add", "dev", nic, "parent", SHAPED_CLASS, "handle", "c1a2:", *leaf)
    except (RuntimeError, ValueError):
        unshape(nic)
        raise


def unshape(nic: str) -> bool:
    """Remove the lab's qdisc and classifier chain; False when there was neither."""
    found = remove_chain(CLASS_CHAIN)
    if lab_qdisc(nic):
        run("tc", "qdisc", "del", "dev", nic, "root")
        found = True
    return found


def netem_available() -> bool:
    """Whether this kernel has sch_netem: tried on a throw-away veth pair, not on any lab link."""
    probe = "clnetemprobe0"
    run("modprobe", "-q", "sch_netem", check=False)
    if run("ip", "link", "add", probe, "type", "veth", "peer", "name", "clnetemprobe1", check=False).returncode:
        return False
    try:
        return run("tc", "qdisc", "add", "dev", probe, "root", "netem", "delay", "1ms", check=False).returncode == 0
    finally:
        run("ip", "link", "del", probe, check=False)
