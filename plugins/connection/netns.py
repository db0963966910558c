"""Ansible connection plugin: run tasks inside a local lab node.

A local lab node is a network namespace plus a cgroup on the controller host.
Each command joins the node's cgroup (every controller of cgroup v1, or the
node's directory in cgroup v2) and then its namespace through
``ip netns exec``, which also binds ``/etc/netns/<ns>/hosts`` over
``/etc/hosts``. Processes a task starts (a node's supervisor, stress-ng, ...)
therefore live in the node's network and cgroup, as they would on a VM.
The filesystem is the host's, so file transfer is a local copy.
"""

from __future__ import annotations

import os
import shlex

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.connection.local import Connection as LocalConnection

DOCUMENTATION = r"""
name: netns
short_description: run tasks inside a local lab node (network namespace and cgroup)
description:
  - Runs commands inside the node's network namespace and cgroup on the controller host.
  - File transfer is a copy on the shared filesystem.
options:
  netns:
    description: name of the node's network namespace
    type: str
    required: true
    vars:
      - name: lab_netns
  cgroup:
    description: the node's cgroup path below each hierarchy (e.g. chaoslab/worker-1)
    type: str
    required: true
    vars:
      - name: lab_cgroup
extends_documentation_fragment:
  - connection_pipelining
"""

CGROUP_ROOT = "/sys/fs/cgroup"
CGROUP_V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "freezer")


def cgroup_procs_files(cgroup: str, root: str = CGROUP_ROOT) -> list[str]:
    """The cgroup.procs files a process writes its pid to, to join the node's cgroup."""
    if os.path.exists(os.path.join(root, "cgroup.controllers")):
        return [os.path.join(root, cgroup, "cgroup.procs")]
    return [
        os.path.join(root, controller, cgroup, "cgroup.procs")
        for controller in CGROUP_V1_CONTROLLERS
        if os.path.isdir(os.path.join(root, controller))
    ]


def node_command(netns: str, procs_files: list[str], cmd: str) -> str:
    """A shell command that joins the cgroup, then runs ``cmd`` in the namespace."""
    joins = " ".join(f'echo $$ > {shlex.quote(path)} || exit 125;' for path in procs_files)
    return f"{joins} exec ip netns exec {shlex.quote(netns)} /bin/sh -c {shlex.quote(cmd)}"


class Connection(LocalConnection):
    transport = "netns"
    has_pipelining = True

    def _connect(self) -> Connection:
        netns = self.get_option("netns")
        if not os.path.exists(f"/run/netns/{netns}"):
            raise AnsibleConnectionFailure(
                f"node {self._play_context.remote_addr}: namespace {netns} does not exist; "
                "bring the lab up first (make lab)"
            )
        self._procs_files = cgroup_procs_files(self.get_option("cgroup"))
        missing = [path for path in self._procs_files if not os.path.exists(path)]
        if missing:
            raise AnsibleConnectionFailure(
                f"node {self._play_context.remote_addr}: cgroup {missing[0]} does not exist; "
                "bring the lab up first (make lab)"
            )
        return super()._connect()

    def exec_command(
        self, cmd: str, in_data: bytes | None = None, sudoable: bool = True
    ) -> tuple[int, bytes, bytes]:
        self._connect()
        return super().exec_command(node_command(self.get_option("netns"), self._procs_files, cmd), in_data, sudoable)
