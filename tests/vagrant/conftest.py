"""The Vagrant lab's VMs for `make vagrant-test`: brought up once (WORKERS=1 unless set, the broker LAB_BROKER or
Redis), provisioned, and destroyed at the end (KEEP_VMS=1 keeps them)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import ROOT, recap

# The tests' commands act on the VMs; those that must find them with no -i unset it.
os.environ["ANSIBLE_INVENTORY"] = str(ROOT / "inventory" / "vagrant.yml")
os.environ.setdefault("WORKERS", "1")
os.environ.setdefault("LAB_WORKER_CPUS", "1")
# The task broker the VMs are provisioned with (make vagrant-test BROKER=rabbitmq): Redis unless asked, whatever
# broker an earlier lab of the same name kept.
os.environ.setdefault("LAB_BROKER", "redis")
BROKER = os.environ["LAB_BROKER"]


def vagrant(*args: str, timeout: float = 3600) -> subprocess.CompletedProcess:
    return subprocess.run(["vagrant", *args], cwd=ROOT, env=dict(os.environ, VAGRANT_NO_COLOR="1"),
                          capture_output=True, text=True, timeout=timeout, check=False)


def must(proc: subprocess.CompletedProcess, what: str) -> str:
    assert proc.returncode == 0, f"{what} failed ({proc.returncode}):\n{proc.stdout[-5000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="session")
def vms() -> Iterator[dict[str, dict[str, int]]]:
    """The VMs, up and provisioned; the PLAY RECAP of the first provisioning."""
    try:
        # libvirt boots the VMs in parallel: provision once all are up.
        must(vagrant("up", "--no-provision"), "vagrant up --no-provision")
        output = must(vagrant("provision"), "vagrant provision")
        print(output[-3000:])
        yield recap(output)
    finally:
        if os.environ.get("KEEP_VMS") != "1":
            destroyed = vagrant("destroy", "-f")
            print(destroyed.stdout[-2000:], destroyed.stderr[-2000:])
