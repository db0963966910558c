"""The lab's iptables chains are whole or absent: a rule iptables refuses half way leaves no chain behind."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import can_build_lab

NETNS = "chaoslab-chain-test"
SCRIPT = """
from chaoslab.node.netfilter import install_chain
spec = ("filter", "CHAOSLAB-TEST", ("OUTPUT",))
try:
    install_chain(spec, [["-d", "198.18.0.10", "-j", "DROP"], ["-d", "198.18.0.10", "-j", "NO-SUCH-TARGET"]])
except Exception as error:
    print(type(error).__name__)
"""


@pytest.fixture
def netns() -> Iterator[str]:
    reason = can_build_lab()
    if reason is not None:
        pytest.skip(reason)
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    try:
        yield NETNS
    finally:
        subprocess.run(["ip", "netns", "delete", NETNS], check=False)


def test_a_chain_whose_rule_is_refused_is_removed_whole(netns: str) -> None:
    result = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", SCRIPT], capture_output=True,
                            text=True, timeout=60, check=True)
    assert result.stdout.strip() == "RuntimeError", result.stdout + result.stderr  # iptables refused the rule
    rules = subprocess.run(["ip", "netns", "exec", netns, "iptables", "-w", "5", "-S"], capture_output=True,
                           text=True, check=True).stdout
    assert "CHAOSLAB-TEST" not in rules, rules
