"""The hosts path for real, without VMs: sshd inside each of the local lab's namespace nodes, an inventory of hosts
reached over SSH at their lab addresses (the local lab's layout, SSH instead of the netns connection), site.yml and
a fault through it; host keys are recorded on first contact and a changed one is refused."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import yaml

from tests.conftest import BIN, ROOT, ansible_env, inventory, recap

NODES = ("redis", "monitor", "worker-1", "worker-2")
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
# What an inventory of hosts sets, and what it must not carry over from the local lab's connection.
DROPPED = ("ansible_connection", "lab_netns")


def sshd_config(workdir: Path, node: str, address: str, authorized: Path) -> Path:
    config = workdir / f"sshd-{node}.conf"
    config.write_text("\n".join([
        f"ListenAddress {address}", "Port 22", f"HostKey {workdir / f'host-{node}'}",
        f"AuthorizedKeysFile {authorized}", "PermitRootLogin prohibit-password", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "UsePAM no", f"PidFile {workdir / f'sshd-{node}.pid'}",
        "StrictModes no", "Subsystem sftp internal-sftp", "LogLevel ERROR",
    ]) + "\n")
    return config


def host_key(workdir: Path, node: str) -> None:
    key = workdir / f"host-{node}"
    for path in (key, key.with_suffix(".pub")):
        path.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)


def start_sshd(config: Path, node: str) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", f"chaoslab-{node}", SSHD, "-D", "-e", "-f", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def stop_sshd(daemon: subprocess.Popen) -> None:
    """The daemon and every session it forked."""
    try:
        processes = [psutil.Process(daemon.pid), *psutil.Process(daemon.pid).children(recursive=True)]
    except psutil.Error:
        processes = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    psutil.wait_procs(processes, timeout=10)
    daemon.wait(10)


def wait_listening(address: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        probe = subprocess.run(["ssh-keyscan", "-T", "2", address], capture_output=True, text=True, check=False)
        if probe.stdout.strip():
            return
        time.sleep(0.2)
    raise AssertionError(f"sshd on {address} does not answer")


def hosts_inventory(workdir: Path, key: Path, known_hosts: Path) -> Path:
    """The local lab's nodes and variables as an inventory of hosts reached over SSH, host keys checked."""
    data = inventory()
    hostvars = data["_meta"]["hostvars"]
    groups: dict = {}
    for group in ("redis", "monitor", "workers"):
        groups[group] = {"hosts": {}}
        for host in data[group]["hosts"]:
            variables = {k: v for k, v in hostvars[host].items() if k not in DROPPED and not k.startswith("ansible_")}
            variables.update(ansible_host=hostvars[host]["lab_address"])
            groups[group]["hosts"][host] = variables
    path = workdir / "hosts.yml"
    path.write_text(yaml.safe_dump({"all": {
        "vars": {
            "ansible_connection": "ssh", "ansible_user": "root", "ansible_python_interpreter": "/usr/bin/python3",
            "ansible_ssh_private_key_file": str(key),
            # host keys: recorded on first contact, then enforced (a changed key is refused)
            "ansible_ssh_host_key_checking": True,
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=accept-new",
            # connections of its own (a persistent connection of another run would skip the handshake)
            "ansible_control_path_dir": str(workdir / "cp"),
        },
        "children": groups,
    }}, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def over_ssh(lab, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ssh")
    os.chmod(workdir, 0o700)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    key = workdir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    authorized = workdir / "authorized_keys"
    shutil.copyfile(key.with_suffix(".pub"), authorized)
    addresses = {node: lab[node]["lab_address"] for node in NODES}
    daemons = {}
    for node in NODES:
        host_key(workdir, node)
        daemons[node] = start_sshd(sshd_config(workdir, node, addresses[node], authorized), node)
    for node in NODES:
        wait_listening(addresses[node])
    known_hosts = workdir / "known_hosts"
    try:
        yield hosts_inventory(workdir, key, known_hosts), known_hosts, daemons, workdir, authorized, addresses
    finally:
        for daemon in daemons.values():
            stop_sshd(daemon)


def known(known_hosts: Path, address: str) -> bool:
    """Whether known_hosts (hashed entries, as Debian's ssh writes them) has a key for *address*."""
    return subprocess.run(["ssh-keygen", "-F", address, "-f", str(known_hosts)], capture_output=True,
                          check=False).returncode == 0


def over(inventory_file: Path, *args: str) -> subprocess.CompletedProcess:
    env = ansible_env(ANSIBLE_INVENTORY=str(inventory_file))
    return subprocess.run([str(BIN / "ansible-playbook"), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900, check=False)


def test_site_and_a_fault_run_over_ssh_and_record_each_host_key(over_ssh):
    inventory_file, known_hosts, _daemons, _workdir, _authorized, addresses = over_ssh
    site = over(inventory_file, "playbooks/site.yml")
    assert site.returncode == 0, site.stdout[-3000:] + site.stderr[-1500:]
    assert set(recap(site.stdout)) == set(NODES)
    assert all(known(known_hosts, address) for address in addresses.values())
    fault = over(inventory_file, "faults/worker-pause.yml", "-e", "duration=3s")
    assert fault.returncode == 0, fault.stdout[-3000:]
    assert recap(fault.stdout)["worker-1"]["changed"] >= 1
    cleared = over(inventory_file, "faults/clear.yml", "-v")  # -v: a failed raw step shows its stderr
    assert cleared.returncode == 0, cleared.stdout[-3000:] + cleared.stderr[-1500:]


def test_a_changed_host_key_is_refused(over_ssh):
    inventory_file, known_hosts, daemons, workdir, authorized, addresses = over_ssh
    before = known_hosts.read_text()
    assert known(known_hosts, addresses["worker-2"])  # recorded by the test above
    stop_sshd(daemons["worker-2"])  # its sessions too: Ansible's persistent connection must not outlive the key
    host_key(workdir, "worker-2")  # the same address now answers with another key
    daemons["worker-2"] = start_sshd(sshd_config(workdir, "worker-2", addresses["worker-2"], authorized), "worker-2")
    wait_listening(addresses["worker-2"])
    fault = over(inventory_file, "faults/worker-pause.yml", "-e", "target=worker-2", "-e", "duration=3s")
    assert fault.returncode != 0
    assert "UNREACHABLE" in fault.stdout and "Host key verification failed" in fault.stdout + fault.stderr
    assert known_hosts.read_text() == before  # the changed key was not recorded
