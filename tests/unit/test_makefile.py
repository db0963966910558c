"""What each make target installs, read from make's own dry run: the demo and the lab get the local lab's Debian
packages only; the packages of the VMs and of the browser test come with the targets that use them."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.conftest import ROOT

# The apt_install recipe's loop over the packages it installs when they are missing.
APT_LOOP = re.compile(r"for p in (?P<packages>[^;]*); do dpkg-query")
NOT_FOR_THE_LAB = re.compile(r"vagrant|libvirt|ruby|chromium|qemu|debootstrap|extlinux")
LOCAL_LAB = {"python3-venv", "iproute2", "iptables", "redis-server", "supervisor", "stress-ng", "prometheus",
             "prometheus-node-exporter", "prometheus-redis-exporter"}


def apt_packages(target: str) -> set[str]:
    """The Debian packages ``make <target>`` installs on a machine that has none of them."""
    env = {key: value for key, value in os.environ.items() if key not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    proc = subprocess.run(["make", "--dry-run", "--no-print-directory", target], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True, timeout=60)
    return {package for match in APT_LOOP.finditer(proc.stdout) for package in match["packages"].split()}


@pytest.mark.parametrize("target", ["demo", "lab", "install", "lint"])
def test_the_local_lab_targets_install_no_vm_or_browser_package(target: str) -> None:
    packages = apt_packages(target)
    assert packages >= LOCAL_LAB
    assert sorted(package for package in packages if NOT_FOR_THE_LAB.search(package)) == []


@pytest.mark.parametrize("target", ["test", "test-unit"])
def test_the_tests_get_every_package_the_suite_uses(target: str) -> None:
    # chromium: test_report_browser.py; vagrant, vagrant-libvirt, ruby: test_vagrantfile.py; sshd: test_hosts_over_ssh
    assert apt_packages(target) >= LOCAL_LAB | {"chromium", "vagrant", "vagrant-libvirt", "ruby", "openssh-server"}


def test_the_vagrant_lab_gets_vagrant_libvirt_and_qemu() -> None:
    packages = apt_packages("vagrant-test")
    assert packages >= {"vagrant", "vagrant-libvirt", "libvirt-daemon-system", "qemu-system-x86", "debootstrap"}
    assert "chromium" not in packages
