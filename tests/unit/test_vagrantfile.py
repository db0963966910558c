"""The Vagrantfile, rendered by Vagrant's own configuration loader, against inventory/vagrant.yml as Ansible
reads it: the same machines, addresses and groups for any WORKERS and LAB_SUBNET, one Ansible provisioner
over all machines, synced folders off, Grafana forwarded from the monitor."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from chaoslab.experiment.ansible_runner import unwrap_unsafe
from tests.conftest import BIN, ROOT, ansible_env

# The variables the Vagrantfile reads; the tests set their own.
VAGRANT_VARS = ("WORKERS", "LAB_SUBNET", "LAB_BOX", "LAB_LIBVIRT_DRIVER", "LAB_GRAFANA_PORT")


def clean_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in VAGRANT_VARS and not key.startswith(("LAB_REDIS_", "LAB_MONITOR_", "LAB_WORKER_"))}
    env.update(extra)
    return env


def project_copy(tmp_path: Path) -> Path:
    """The files the Vagrantfile and the inventory read, in a project with no VMs of its own."""
    for relative in ("Vagrantfile", "ansible.cfg", "tools/vagrant_lab.rb", "inventory/vagrant.yml",
                     "inventory/group_vars/all.yml"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / relative, tmp_path / relative)
    (tmp_path / "plugins").symlink_to(ROOT / "plugins")
    return tmp_path


def vagrant_machines(project: Path, **env: str) -> list[dict]:
    proc = subprocess.run(["ruby", str(ROOT / "tests/unit/vagrant_config.rb"), str(project)], cwd=project,
                          env=clean_env(**env), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def ansible_inventory(project: Path, **env: str) -> dict:
    proc = subprocess.run([str(BIN / "ansible-inventory"), "-i", "inventory/vagrant.yml", "--list"], cwd=project,
                          env=ansible_env(**clean_env(ANSIBLE_CONFIG=str(project / "ansible.cfg"), **env)),
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout, object_hook=unwrap_unsafe)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return project_copy(tmp_path)


@pytest.mark.parametrize(("workers", "subnet"), [("1", ""), ("3", ""), ("2", "10.77.3.0/24")])
def test_vagrantfile_and_inventory_agree(project: Path, workers: str, subnet: str) -> None:
    env = {"WORKERS": workers, **({"LAB_SUBNET": subnet} if subnet else {})}
    machines = vagrant_machines(project, **env)
    data = ansible_inventory(project, **env)
    hostvars = data["_meta"]["hostvars"]
    expected = ["redis", "monitor", *(f"worker-{index}" for index in range(1, int(workers) + 1))]
    assert [machine["name"] for machine in machines] == expected
    assert sorted(hostvars) == sorted(expected)
    base = (subnet or "192.168.56.0/24").rsplit(".", 1)[0]
    groups_of = {name: sorted(group for group in ("redis", "workers", "monitor")
                              if name in data.get(group, {}).get("hosts", [])) for name in expected}
    for machine in machines:
        name = machine["name"]
        host = hostvars[name]
        assert machine["private_addresses"] == [host["lab_address"]] == [host["ansible_host"]]
        assert host["lab_address"].rsplit(".", 1)[0] == base
        assert machine["description"] == f"celery-chaos-lab {name}: {','.join(groups_of[name])}"
        assert machine["hostname"] == name
        assert machine["synced_folders"]["/vagrant"] == {"disabled": True}
    assert groups_of["redis"] == ["redis"] and groups_of["monitor"] == ["monitor"]
    assert all(groups_of[f"worker-{index}"] == ["workers"] for index in range(1, int(workers) + 1))
    addresses = {machine["private_addresses"][0] for machine in machines}
    assert len(addresses) == len(machines)


def test_one_ansible_provisioner_over_all_machines(project: Path) -> None:
    machines = vagrant_machines(project, WORKERS="2")
    provisioners = [(machine["name"], p) for machine in machines for p in machine["provisioners"]]
    assert provisioners == [("worker-2", {"type": "ansible", "playbook": "playbooks/site.yml",
                                          "inventory_path": "inventory/vagrant.yml", "limit": "all",
                                          "config_file": "ansible.cfg"})]


def test_grafana_is_forwarded_from_the_monitor_to_the_hosts_loopback(project: Path) -> None:
    machines = {machine["name"]: machine for machine in vagrant_machines(project, LAB_GRAFANA_PORT="3300")}
    grafana = [port for port in machines["monitor"]["forwarded_ports"] if port.get("id") == "grafana"]
    assert grafana == [{"guest": 3000, "guest_ip": "192.168.56.20", "host_ip": "127.0.0.1", "host": 3300,
                        "id": "grafana", "protocol": "tcp"}]
    assert not [port for port in machines["redis"]["forwarded_ports"] if port.get("id") == "grafana"]


def test_box_and_sizes_come_from_the_environment(project: Path) -> None:
    machines = {machine["name"]: machine for machine in vagrant_machines(
        project, LAB_BOX="chaoslab/bookworm64", LAB_WORKER_CPUS="1", LAB_MONITOR_MEMORY="2048")}
    assert {machine["box"] for machine in machines.values()} == {"chaoslab/bookworm64"}
    assert machines["worker-1"]["cpus"] == 1 and machines["monitor"]["memory"] == 2048
    default = {machine["name"]: machine for machine in vagrant_machines(project)}
    assert default["worker-1"]["box"] == "debian/bookworm64"
    assert default["worker-1"]["cpus"] == 2 and default["monitor"]["memory"] == 1536


def test_without_workers_the_vms_vagrant_made_count(project: Path) -> None:
    for name in ("redis", "monitor", "worker-1", "worker-2", "worker-3"):
        (project / ".vagrant/machines" / name / "libvirt").mkdir(parents=True)
        (project / ".vagrant/machines" / name / "libvirt/id").write_text("0b5c\n", encoding="utf-8")
    assert [machine["name"] for machine in vagrant_machines(project)][-1] == "worker-3"
    assert ansible_inventory(project)["workers"]["hosts"] == ["worker-1", "worker-2", "worker-3"]


def test_vagrant_validate_and_ruby_syntax(project: Path) -> None:
    for cmd in (["ruby", "-c", "Vagrantfile"], ["ruby", "-c", "tools/vagrant_lab.rb"], ["vagrant", "validate"]):
        proc = subprocess.run(cmd, cwd=project, env=clean_env(), capture_output=True, text=True, check=False)
        assert proc.returncode == 0, (cmd, proc.stdout, proc.stderr)


@pytest.mark.parametrize(("env", "message"), [
    ({"WORKERS": "many"}, 'WORKERS: "many" is not a whole number of worker VMs'),
    ({"WORKERS": "0"}, "WORKERS: 0 is out of range (1-32)"),
    ({"LAB_SUBNET": "192.168.300.0/24"}, "LAB_SUBNET/subnet"),
])
def test_bad_settings_are_one_line_errors_in_both(project: Path, env: dict[str, str], message: str) -> None:
    proc = subprocess.run(["vagrant", "validate"], cwd=project, env=clean_env(**env), capture_output=True,
                          text=True, check=False)
    assert proc.returncode != 0
    assert f"Vagrantfile: {message}" in proc.stderr
    inv = subprocess.run([str(BIN / "ansible-inventory"), "-i", "inventory/vagrant.yml", "--list"], cwd=project,
                         env=ansible_env(**clean_env(ANSIBLE_CONFIG=str(project / "ansible.cfg"), **env)),
                         capture_output=True, text=True, check=False)
    assert message.replace('"', "'") in inv.stderr or message in inv.stderr
