"""Which lab the inventories describe and pick: the default inventory follows the lab that is up, a fault run
against a lab that is not up says in one line which inventory to use, and the real-hosts example is complete."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from chaoslab.experiment.ansible_runner import unwrap_unsafe
from chaoslab.experiment.labs import default_backend, vagrant_key, vagrant_machines, wrong_lab
from tests.conftest import BIN, ROOT, ansible_env


def make_vm(project: Path, name: str, provider: str = "libvirt", key: bool = True) -> None:
    machine = project / ".vagrant" / "machines" / name / provider
    machine.mkdir(parents=True)
    (machine / "id").write_text("9f1e0c\n", encoding="utf-8")
    if key:
        (machine / "private_key").write_text("key\n", encoding="utf-8")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's Ansible side (inventories, playbooks, roles, plugins), with no lab of its own."""
    for relative in ("ansible.cfg", "inventory"):
        source = ROOT / relative
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / relative)
    for relative in ("faults", "playbooks", "roles", "plugins", "monitoring"):
        (tmp_path / relative).symlink_to(ROOT / relative)
    return tmp_path


def run(project: Path, *cmd: str, **env: str) -> subprocess.CompletedProcess:
    environment = ansible_env(ANSIBLE_CONFIG=str(project / "ansible.cfg"), **env)
    environment.pop("ANSIBLE_INVENTORY", None)
    environment.pop("WORKERS", None)
    return subprocess.run([str(BIN / cmd[0]), *cmd[1:]], cwd=project, env=environment, capture_output=True,
                          text=True, check=False)


def listing(project: Path, *args: str) -> dict:
    proc = run(project, "ansible-inventory", *args, "--list")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout, object_hook=unwrap_unsafe)


def test_vagrant_machines_are_the_ones_with_an_id(tmp_path: Path) -> None:
    make_vm(tmp_path, "redis")
    make_vm(tmp_path, "worker-1", provider="virtualbox", key=False)
    (tmp_path / ".vagrant/machines/worker-2/libvirt").mkdir(parents=True)  # destroyed: no id left
    assert vagrant_machines(tmp_path) == {"redis": "libvirt", "worker-1": "virtualbox"}
    assert vagrant_key(tmp_path, "redis") == tmp_path / ".vagrant/machines/redis/libvirt/private_key"
    assert vagrant_key(tmp_path, "worker-1") is None
    assert default_backend(tmp_path) == "vagrant"
    assert default_backend(tmp_path / "elsewhere") == "local"


@pytest.mark.parametrize(("backend", "local", "vagrant", "expected"), [
    ("local", True, False, ""),
    ("vagrant", False, True, ""),
    ("local", False, True, "the local lab is not up, but this project's Vagrant VMs are: use -i inventory/vagrant.yml"),
    ("vagrant", True, False, "this project has no Vagrant VMs, but the local lab is up: use -i inventory/local.yml"),
    ("local", False, False, "no lab is up: `make lab` brings the local lab up"),
    ("vagrant", False, False, "no lab is up: `vagrant up` makes the VMs (inventory/vagrant.yml)"),
    ("hosts", False, False, ""),
])
def test_wrong_lab_names_the_inventory_to_use(tmp_path: Path, backend: str, local: bool, vagrant: bool,
                                              expected: str) -> None:
    netns = tmp_path / "netns"
    netns.mkdir()
    if local:
        (netns / "chaoslab-redis").touch()
    if vagrant:
        make_vm(tmp_path, "redis")
    message = wrong_lab(backend, tmp_path, netns)
    assert message.startswith(expected) if expected else message == ""
    assert "\n" not in message


def test_the_default_inventory_follows_the_lab_that_is_up(project: Path) -> None:
    local = listing(project)
    assert local["_meta"]["hostvars"]["redis"]["lab_backend"] == "local"
    # what the nodes can do, which the roles go by (never by the backend's name)
    assert local["_meta"]["hostvars"]["redis"]["lab_in_namespace"] is True
    assert local["_meta"]["hostvars"]["redis"]["lab_installs_packages"] is False
    assert local["_meta"]["hostvars"]["redis"]["lab_address"] == "198.18.0.10"
    for name in ("redis", "monitor", "worker-1", "worker-2", "worker-3"):
        make_vm(project, name)
    vagrant = listing(project)
    hostvars = vagrant["_meta"]["hostvars"]
    assert hostvars["redis"]["lab_backend"] == "vagrant"
    assert hostvars["redis"]["lab_in_namespace"] is False and hostvars["redis"]["lab_installs_packages"] is True
    assert hostvars["redis"]["lab_address"] == "192.168.56.10"
    assert vagrant["workers"]["hosts"] == ["worker-1", "worker-2", "worker-3"]
    assert hostvars["worker-3"]["ansible_ssh_private_key_file"] == str(
        project / ".vagrant/machines/worker-3/libvirt/private_key")
    # An explicit inventory wins over the default.
    assert listing(project, "-i", "inventory/local.yml")["_meta"]["hostvars"]["redis"]["lab_backend"] == "local"


def test_a_fault_against_a_lab_that_is_not_up_says_which_inventory_to_use(project: Path) -> None:
    proc = run(project, "ansible-playbook", "-i", "inventory/vagrant.yml", "faults/network-delay.yml",
               "-e", "delay=100ms", "-e", "duration=10s")
    assert proc.returncode != 0
    failed = [line for line in proc.stdout.splitlines() if line.startswith("fatal:")]
    assert len(failed) == 1, proc.stdout
    up = os.path.exists("/run/netns/chaoslab-redis")
    assert ("use -i inventory/local.yml" if up else "no lab is up: `vagrant up` makes the VMs") in failed[0]
    # Nothing was tried on a node: only the controller's checks ran.
    assert "redis" not in proc.stdout.split("PLAY RECAP", 1)[-1]


def test_the_real_hosts_example_is_a_complete_lab_inventory(project: Path) -> None:
    data = listing(project, "-i", "inventory/hosts.example.yml")
    hostvars = data["_meta"]["hostvars"]
    assert data["redis"]["hosts"] == ["redis"] and data["monitor"]["hosts"] == ["monitor"]
    assert data["workers"]["hosts"] == ["worker-1", "worker-2"]
    for name, host in hostvars.items():
        assert host["lab_backend"] == "hosts" and host["lab_service_manager"] == "systemd", name
        assert host["lab_in_namespace"] is False and host["lab_installs_packages"] is True, name
        assert host["lab_address"] == host["ansible_host"] and host["lab_nic"], name
        # group_vars/all.yml gives the node directories every backend but the local lab uses.
        assert host["lab_etc_dir"] == "/etc/chaoslab", name


def test_every_node_has_the_same_size_on_the_local_lab_as_its_vagrant_vm(project: Path) -> None:
    """Sizes come from the layouts (inventory/local.yml repeats vagrant.yml's); the environment overrides them."""
    local = listing(project, "-i", "inventory/local.yml")["_meta"]["hostvars"]
    for name in ("redis", "monitor", "worker-1", "worker-2"):
        make_vm(project, name)
    vagrant = listing(project, "-i", "inventory/vagrant.yml")["_meta"]["hostvars"]
    sizes = {name: (host["lab_cpus"], host["lab_memory_mib"]) for name, host in local.items()}
    assert sizes == {"redis": (1, 1024), "monitor": (1, 1536), "worker-1": (2, 1024), "worker-2": (2, 1024)}
    assert {name: (host["lab_cpus"], host["lab_memory_mib"]) for name, host in vagrant.items()} == sizes
    resized = json.loads(run(project, "ansible-inventory", "-i", "inventory/local.yml", "--list",
                             LAB_WORKER_MEMORY="1000", LAB_REDIS_CPUS="2").stdout)["_meta"]["hostvars"]
    assert (resized["worker-2"]["lab_memory_mib"], resized["redis"]["lab_cpus"]) == (1000, 2)
    assert resized["monitor"]["lab_memory_mib"] == 1536


@pytest.mark.parametrize(("env", "message"), [
    ({"LAB_WORKER_MEMORY": "1GiB"}, "LAB_WORKER_MEMORY: '1GiB' is not a whole number of MiB"),
    ({"LAB_WORKER_MEMORY": "100"}, "LAB_WORKER_MEMORY: 100 is out of range (128-1048576 MiB)"),
    ({"LAB_MONITOR_CPUS": "0"}, "LAB_MONITOR_CPUS: 0 is out of range (1-64)"),
])
def test_a_bad_node_size_is_one_line_naming_it(project: Path, env: dict[str, str], message: str) -> None:
    proc = run(project, "ansible-playbook", "-i", "inventory/local.yml", "playbooks/lab-up.yml", **env)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
