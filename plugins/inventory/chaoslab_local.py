"""Inventory plugin for the local lab: namespace nodes on one host.

Reads ``inventory/local.yml`` and produces the groups every lab inventory has
(``redis``, ``workers``, ``monitor``) with the per-node variables the roles and
the ``netns`` connection use. It describes the topology only; ``lab-up.yml``
validates it and builds it.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin

DOCUMENTATION = r"""
name: chaoslab_local
short_description: the local lab's namespace nodes
description:
  - Builds the redis, workers and monitor groups of the local lab from one file.
  - The worker count comes from O(workers) or from the LAB_WORKERS environment variable.
  - The broker comes from O(broker) or from the LAB_BROKER environment variable.
options:
  plugin:
    description: the name of this plugin
    required: true
    choices: [chaoslab_local]
  lab_name:
    description: name of the lab; selects the secrets file under .lab/
    type: str
    default: local
  subnet:
    description: the lab network
    type: str
    default: 198.18.0.0/24
  controller_address:
    description: the host's address on the lab bridge
    type: str
    default: 198.18.0.1
  bridge:
    description: name of the bridge that joins the nodes
    type: str
    default: chaoslab0
  nic:
    description: name of each node's lab NIC inside its namespace
    type: str
    default: lab0
  workers:
    description: number of worker nodes (LAB_WORKERS overrides)
    type: int
    default: 2
  broker:
    description: the lab's task broker, redis or rabbitmq (LAB_BROKER overrides); the result backend is Redis
    type: str
    default: redis
  worker_first_address:
    description: address of worker-1; worker-N takes the N-1th next address
    type: str
    default: 198.18.0.101
  nodes:
    description: the non-worker nodes, each with an address, its groups and its size (cpus, memory in MiB)
    type: dict
    default: {}
  worker:
    description: the size of every worker node (cpus, memory in MiB; LAB_WORKER_CPUS, LAB_WORKER_MEMORY override)
    type: dict
    default: {}
"""

NETNS_PREFIX = "chaoslab-"
HOST_VETH_PREFIX = "clv-"
NODE_DIR_ROOTS = {
    "etc": "/etc/chaoslab",
    "state": "/var/lib/chaoslab",
    "log": "/var/log/chaoslab",
    "run": "/run/chaoslab",
}


class InventoryModule(BaseInventoryPlugin):
    NAME = "chaoslab_local"

    def verify_file(self, path: str) -> bool:
        from chaoslab.experiment.labs import names_plugin

        return bool(super().verify_file(path)) and names_plugin(path, self.NAME)

    def parse(self, inventory, loader, path: str, cache: bool = True) -> None:  # noqa: ANN001
        from chaoslab import brokers
        from chaoslab.experiment.labs import lay_out, node_size

        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        workers = self._worker_count()
        nodes = dict(self.get_option("nodes"))
        first = self._address(self.get_option("worker_first_address"), "worker_first_address")
        worker = dict(self.get_option("worker"))
        for index in range(1, workers + 1):
            nodes[f"worker-{index}"] = {**worker, "address": str(first + index - 1), "groups": ["workers"]}

        network = self.get_option("subnet")
        try:
            prefix = ipaddress.ip_network(network, strict=False).prefixlen
        except ValueError as err:
            raise AnsibleParserError(f"{path}: subnet: {err}") from err
        project = os.path.dirname(os.path.dirname(os.path.abspath(path)))
        secrets_file = os.path.join(project, ".lab", self.get_option("lab_name"), "secrets.yml")
        try:
            broker = brokers.chosen(dict(os.environ), self.get_option("broker"), brokers.kept_file(secrets_file))
        except ValueError as err:
            raise AnsibleParserError(str(err)) from err
        lab_vars = {
            "lab_name": self.get_option("lab_name"),
            "lab_backend": "local",
            "lab_service_manager": "supervisor",
            "lab_subnet": network,
            "lab_prefix": prefix,
            "lab_controller_address": self.get_option("controller_address"),
            "lab_bridge": self.get_option("bridge"),
            "lab_workers_requested": workers,
            "lab_broker": broker,
            "lab_secrets_file": secrets_file,
            "lab_project_dir": project,
            # Every node's files live under these, one directory per node (the filesystem is shared).
            "lab_node_dir_parents": [f"{root}/nodes" for root in NODE_DIR_ROOTS.values()],
            # What the nodes can do: each is a network namespace of this host, sharing its filesystem, users,
            # packages and the project's venv (make install, lab-up.yml provide them); no node installs packages.
            "lab_in_namespace": True,
            "lab_installs_packages": False,
        }
        host_vars: dict[str, dict[str, Any]] = {}
        for name, spec in nodes.items():
            if not isinstance(spec, dict) or "address" not in spec:
                raise AnsibleParserError(f"{path}: nodes.{name}: needs an address")
            try:
                size = node_size(name, spec, dict(os.environ), worker="workers" in spec.get("groups", []))
            except ValueError as err:
                raise AnsibleParserError(f"{path}: {err}") from err
            host_vars[name] = {
                # the node's size, which lab-up.yml enforces as the node cgroup's CPU quota and memory limit
                **size,
                "ansible_connection": "netns",
                "ansible_python_interpreter": "/usr/bin/python3",
                "lab_address": str(spec["address"]),
                "lab_nic": self.get_option("nic"),
                "lab_netns": NETNS_PREFIX + name,
                "lab_host_veth": HOST_VETH_PREFIX + name,
                "lab_cgroup": f"chaoslab/{name}",
                # The project's own venv serves every node (host vars win over group_vars/all.yml).
                "lab_venv": os.path.join(project, ".venv"),
                **{f"lab_{kind}_dir": f"{root}/nodes/{name}" for kind, root in NODE_DIR_ROOTS.items()},
                "lab_supervisor_conf": f"{NODE_DIR_ROOTS['etc']}/nodes/{name}/supervisord.conf",
            }
        lay_out(self.inventory, lab_vars, {name: list(spec.get("groups", [])) for name, spec in nodes.items()},
                host_vars)

    def _worker_count(self) -> int:
        raw = os.environ.get("LAB_WORKERS", "").strip() or self.get_option("workers")
        try:
            return int(raw)
        except ValueError as err:
            raise AnsibleParserError(f"LAB_WORKERS: {raw!r} is not a whole number of workers") from err

    @staticmethod
    def _address(value: str, key: str) -> ipaddress.IPv4Address:
        try:
            return ipaddress.IPv4Address(value)
        except ValueError as err:
            raise AnsibleParserError(f"{key}: {err}") from err
