"""Inventory plugin for the Vagrant lab: the Debian VMs the project's Vagrantfile makes.

Reads ``inventory/vagrant.yml``, the layout the Vagrantfile reads too, and produces the groups every lab
inventory has (``redis``, ``workers``, ``monitor``). Nodes are reached over SSH on their private-network
address, as the ``vagrant`` user with the key Vagrant made for each VM.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin

DOCUMENTATION = r"""
name: chaoslab_vagrant
short_description: the Vagrant lab's VMs
description:
  - Builds the redis, workers and monitor groups of the Vagrant lab from the layout the Vagrantfile reads.
  - The worker count comes from WORKERS in the environment, else from the worker VMs Vagrant has made,
    else from O(workers). LAB_SUBNET overrides O(subnet).
options:
  plugin:
    description: the name of this plugin
    required: true
    choices: [chaoslab_vagrant]
  broker:
    description: the lab's task broker, redis or rabbitmq (LAB_BROKER overrides); the result backend is Redis
    type: str
    default: redis
  lab_name:
    description: name of the lab; selects the secrets file under .lab/
    type: str
    default: vagrant
  subnet:
    description: the private network (LAB_SUBNET overrides)
    type: str
    default: 192.168.56.0/24
  workers:
    description: number of worker VMs when WORKERS is not set and Vagrant has made none
    type: int
    default: 2
  worker_first_host:
    description: host number of worker-1 in the subnet; worker-N takes the N-1th next one
    type: int
    default: 101
  ca_certificates:
    description:
      - controller-side PEM files of certificate authorities the VMs must trust besides Debian's (a
        TLS-intercepting proxy's); LAB_CA_CERTIFICATES (paths separated by colons) overrides
    type: list
    elements: str
    default: []
  nic:
    description: the VMs' NIC on the private network
    type: str
    default: eth1
  nodes:
    description: the non-worker VMs, each with its host number, groups, cpus and memory
    type: dict
    default: {}
  worker:
    description: groups, cpus and memory of every worker VM
    type: dict
    default: {}
"""


class InventoryModule(BaseInventoryPlugin):
    NAME = "chaoslab_vagrant"

    def verify_file(self, path: str) -> bool:
        from chaoslab.experiment.labs import names_plugin

        return bool(super().verify_file(path)) and names_plugin(path, self.NAME)

    def parse(self, inventory, loader, path: str, cache: bool = True) -> None:  # noqa: ANN001
        from chaoslab import brokers
        from chaoslab.experiment.labs import lay_out, node_size, vagrant_key, vagrant_machines

        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        project = Path(path).resolve().parent.parent
        network = self._network(os.environ.get("LAB_SUBNET", "").strip() or self.get_option("subnet"))
        made = vagrant_machines(project)
        workers = self._worker_count(made)
        nodes: dict[str, dict[str, Any]] = dict(self.get_option("nodes"))
        worker = dict(self.get_option("worker"))
        first = int(self.get_option("worker_first_host"))
        for index in range(1, workers + 1):
            nodes[f"worker-{index}"] = {**worker, "host": first + index - 1,
                                        "groups": worker.get("groups", ["workers"])}

        lab_name = self.get_option("lab_name")
        try:
            broker = brokers.chosen(dict(os.environ), self.get_option("broker"),
                                    brokers.kept_file(str(project / ".lab" / lab_name / "secrets.yml")))
        except ValueError as err:
            raise AnsibleParserError(str(err)) from err
        lab_vars = {
            "lab_broker": broker,
            "lab_name": lab_name,
            "lab_backend": "vagrant",
            "lab_service_manager": "systemd",
            "lab_in_namespace": False,
            "lab_installs_packages": True,
            "lab_subnet": str(network),
            "lab_prefix": network.prefixlen,
            # The host's side of the private network.
            "lab_controller_address": str(network.network_address + 1),
            "lab_workers_requested": workers,
            "lab_secrets_file": str(project / ".lab" / lab_name / "secrets.yml"),
            "lab_project_dir": str(project),
            "common_ca_certificates": self._ca_certificates(),
            "ansible_user": "vagrant",
            "ansible_become": True,
            "ansible_python_interpreter": "/usr/bin/python3",
            # VMs made again keep their addresses but not their host keys.
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            # A VM under software emulation on a busy host can take longer than Ansible's 10 s to answer SSH.
            "ansible_ssh_timeout": 60,
            "ansible_ssh_retries": 3,
        }
        insecure = Path(os.environ.get("VAGRANT_HOME", Path.home() / ".vagrant.d")) / "insecure_private_key"
        host_vars: dict[str, dict[str, Any]] = {}
        for name, spec in nodes.items():
            if not isinstance(spec, dict) or "host" not in spec:
                raise AnsibleParserError(f"{path}: nodes.{name}: needs a host number")
            address = self._address(network, spec["host"], name)
            try:  # the VM's size, as the Vagrantfile made it (the same layout and environment)
                size = node_size(name, spec, dict(os.environ), worker="workers" in spec.get("groups", []))
            except ValueError as err:
                raise AnsibleParserError(f"{path}: {err}") from err
            host_vars[name] = {**size,"ansible_host": address,
                               "ansible_ssh_private_key_file": str(vagrant_key(project, name) or insecure),
                               "lab_address": address, "lab_nic": self.get_option("nic")}
        lay_out(self.inventory, lab_vars, {name: list(spec.get("groups", [])) for name, spec in nodes.items()},
                host_vars)

    def _ca_certificates(self) -> list[str]:
        raw = os.environ.get("LAB_CA_CERTIFICATES", "").strip()
        paths = [path for path in raw.split(":") if path] if raw else list(self.get_option("ca_certificates"))
        missing = [path for path in paths if not Path(path).is_file()]
        if missing:
            raise AnsibleParserError(f"LAB_CA_CERTIFICATES/ca_certificates: no such file {missing[0]}")
        return paths

    def _worker_count(self, made: dict[str, str]) -> int:
        raw = os.environ.get("WORKERS", "").strip()
        if not raw:
            made_workers = [name for name in made if name.startswith("worker-")]
            return len(made_workers) or int(self.get_option("workers"))
        try:
            count = int(raw)
        except ValueError as err:
            raise AnsibleParserError(f"WORKERS: {raw!r} is not a whole number of worker VMs") from err
        if not 1 <= count <= 32:
            raise AnsibleParserError(f"WORKERS: {count} is out of range (1-32)")
        return count

    @staticmethod
    def _network(value: str) -> ipaddress.IPv4Network:
        try:
            return ipaddress.IPv4Network(value, strict=False)
        except ValueError as err:
            raise AnsibleParserError(f"LAB_SUBNET/subnet: {err}") from err

    @staticmethod
    def _address(network: ipaddress.IPv4Network, host: Any, name: str) -> str:
        if not isinstance(host, int) or not 1 < host < network.num_addresses - 1:
            raise AnsibleParserError(f"{name}: host number {host!r} is not inside {network}")
        return str(network.network_address + host)
