#!/usr/bin/python
"""Ansible module: build or remove the local lab's namespace nodes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: lab_nodes
short_description: build or remove the local lab's namespace nodes
description:
  - Each node is a network namespace with a veth NIC on a bridge, loopback up,
    an /etc/netns/<ns>/hosts naming every node, and a cgroup (memory, cpu, cpuacct, pids, freezer on v1;
    one directory with those controllers on v2).
  - With state=present, nodes of the lab that are not listed are removed (a smaller lab after a larger one).
  - With state=absent, every process of every lab node is stopped and all of it is removed,
    whatever the inventory says now.
  - The host stays untouched. The bridge and the host-side veths the lab makes carry the interface alias
    C(celery-chaos-lab); an interface of the inventory's names that exists without it (eth0, lo, docker0, a bridge
    the lab did not make) is refused before anything changes, and state=absent removes only marked interfaces.
  - The kernel modules loaded when the lab came up are noted; state=absent returns those loaded since
    (modules_loaded), which stay loaded.
options:
  state:
    description: present or absent
    type: str
    choices: [present, absent]
    default: present
  bridge:
    description: name of the bridge
    type: str
    required: true
  controller_address:
    description: the host's address on the bridge
    type: str
    required: true
  prefix:
    description: prefix length of the lab subnet
    type: int
    required: true
  netns_prefix:
    description: every lab namespace name starts with this
    type: str
    default: chaoslab-
  veth_prefix:
    description: every host-side veth name starts with this
    type: str
    default: clv-
  cgroup_parent:
    description: the lab's cgroup, parent of every node's cgroup
    type: str
    default: chaoslab
  nodes:
    description: the nodes (name, netns, nic, address, host_veth)
    type: list
    elements: dict
    default: []
author: celery-chaos-lab
"""

CGROUP_ROOT = "/sys/fs/cgroup"
MARK = "celery-chaos-lab"
"""The interface alias of every host interface the lab makes: what it may remove, and may reuse."""
MODULES_BEFORE = "/run/chaoslab/modules-before-lab"
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "freezer")
V2_CONTROLLERS = ("memory", "cpu", "pids")


class Lab:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.changes: list[str] = []
        self.v2 = os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers"))

    # -- helpers -----------------------------------------------------------
    def run(self, *args: str, check: bool = True) -> str:
        rc, out, err = self.module.run_command(list(args))
        if check and rc != 0:
            self.module.fail_json(msg=f"{' '.join(args)}: {err.strip() or out.strip()}")
        return out

    def change(self, what: str, *args: str) -> None:
        self.changes.append(what)
        if not self.module.check_mode:
            self.run(*args)

    def links(self, netns: str | None = None) -> dict[str, dict]:
        cmd = ["ip", "-json", "-details", "address", "show"]
        if netns:
            cmd = ["ip", "-netns", netns, "-json", "-details", "address", "show"]
        return {link["ifname"]: link for link in json.loads(self.run(*cmd) or "[]")}

    def namespaces(self) -> list[str]:
        run_dir = "/run/netns"
        names = os.listdir(run_dir) if os.path.isdir(run_dir) else []
        return sorted(name for name in names if name.startswith(self.params["netns_prefix"]))

    def cgroup_dirs(self, node_cgroup: str) -> list[str]:
        if self.v2:
            return [os.path.join(CGROUP_ROOT, node_cgroup)]
        return [
            os.path.join(CGROUP_ROOT, controller, node_cgroup)
            for controller in V1_CONTROLLERS
            if os.path.isdir(os.path.join(CGROUP_ROOT, controller))
        ]

    @staticmethod
    def has_address(link: dict, address: str) -> bool:
        return any(info.get("local") == address for info in link.get("addr_info", []))

    @staticmethod
    def ours(link: dict) -> bool:
        return link.get("ifalias") == MARK

    def check_ownership(self) -> None:
        """Refuse, before any change, host interfaces of the lab's names that the lab did not make."""
        links = self.links()
        names = [self.params["bridge"], *(node["host_veth"] for node in self.params["nodes"])]
        foreign = [name for name in names if name in links and not self.ours(links[name])]
        if foreign:
            self.module.fail_json(msg=f"refusing to use the host's interface {foreign[0]}: it exists and the lab did "
                                      f"not make it (no alias {MARK}); name another bridge in the inventory")

    def mark(self, name: str) -> None:
        self.change(f"{name}: alias {MARK}", "ip", "link", "set", name, "alias", MARK)

    @staticmethod
    def module_names() -> set[str]:
        """Loaded kernel modules (none where the kernel has no loadable modules: no /proc/modules)."""
        try:
            with open("/proc/modules", encoding="ascii") as handle:
                return {line.split()[0] for line in handle if line.strip()}
        except FileNotFoundError:
            return set()

    def note_modules(self) -> None:
        """The modules loaded before the lab first came up (kept until the lab is removed)."""
        if os.path.exists(MODULES_BEFORE) or self.module.check_mode:
            return
        os.makedirs(os.path.dirname(MODULES_BEFORE), exist_ok=True)
        with open(MODULES_BEFORE, "w", encoding="ascii") as handle:
            handle.write("\n".join(sorted(self.module_names())) + "\n")

    def modules_loaded(self) -> list[str]:
        """Kernel modules loaded since the lab came up (the lab's ip, tc and iptables calls load them)."""
        if not os.path.exists(MODULES_BEFORE):
            return []
        with open(MODULES_BEFORE, encoding="ascii") as handle:
            before = set(handle.read().split())
        if not self.module.check_mode:
            os.unlink(MODULES_BEFORE)
        return sorted(self.module_names() - before)

    # -- present -----------------------------------------------------------
    def ensure_bridge(self) -> None:
        bridge, address = self.params["bridge"], self.params["controller_address"]
        links = self.links()
        if bridge not in links:
            self.change(f"bridge {bridge}", "ip", "link", "add", "name", bridge, "type", "bridge")
            self.mark(bridge)
            links = {} if self.module.check_mode else self.links()
        link = links.get(bridge, {})
        if not self.has_address(link, address):
            self.change(f"address {address} on {bridge}", "ip", "address", "add",
                        f"{address}/{self.params['prefix']}", "dev", bridge)
        if "UP" not in link.get("flags", []):
            self.change(f"{bridge} up", "ip", "link", "set", bridge, "up")

    def ensure_cgroup(self, node_cgroup: str) -> None:
        if self.v2:
            self.enable_v2_controllers()
        for path in self.cgroup_dirs(node_cgroup):
            if not os.path.isdir(path):
                self.changes.append(f"cgroup {path}")
                if not self.module.check_mode:
                    os.makedirs(path)

    def enable_v2_controllers(self) -> None:
        parent = os.path.join(CGROUP_ROOT, self.params["cgroup_parent"])
        if not os.path.isdir(parent) and not self.module.check_mode:
            os.makedirs(parent)
        for directory in (CGROUP_ROOT, parent):
            control = os.path.join(directory, "cgroup.subtree_control")
            if not os.path.exists(control):
                continue
            with open(control, encoding="ascii") as handle:
                enabled = handle.read().split()
            for controller in V2_CONTROLLERS:
                if controller not in enabled and not self.module.check_mode:
                    with open(control, "w", encoding="ascii") as handle:
                        handle.write(f"+{controller}")

    def ensure_node(self, node: dict) -> None:
        name, netns, nic = node["name"], node["netns"], node["nic"]
        host_veth, address = node["host_veth"], node["address"]
        if netns not in self.namespaces():
            self.change(f"namespace {netns}", "ip", "netns", "add", netns)
        host_links = self.links()
        if host_veth not in host_links:
            self.change(f"veth {host_veth} <-> {netns}:{nic}", "ip", "link", "add", host_veth,
                        "type", "veth", "peer", "name", nic, "netns", netns)
            self.mark(host_veth)
            host_links = {} if self.module.check_mode else self.links()
        host_link = host_links.get(host_veth, {})
        if host_link.get("master") != self.params["bridge"]:
            self.change(f"{host_veth} on {self.params['bridge']}", "ip", "link", "set", host_veth,
                        "master", self.params["bridge"])
        if "UP" not in host_link.get("flags", []):
            self.change(f"{host_veth} up", "ip", "link", "set", host_veth, "up")
        node_links = {} if self.module.check_mode and self.changes else self.links(netns)
        lo = node_links.get("lo", {})
        if "UP" not in lo.get("flags", []):
            self.change(f"{netns}: lo up", "ip", "-netns", netns, "link", "set", "lo", "up")
        link = node_links.get(nic, {})
        if not self.has_address(link, address):
            self.change(f"{netns}: {address} on {nic}", "ip", "-netns", netns, "address", "replace",
                        f"{address}/{self.params['prefix']}", "dev", nic)
        if "UP" not in link.get("flags", []):
            self.change(f"{netns}: {nic} up", "ip", "-netns", netns, "link", "set", nic, "up")
        self.ensure_hosts_file(netns)
        self.ensure_cgroup(f"{self.params['cgroup_parent']}/{name}")

    def ensure_hosts_file(self, netns: str) -> None:
        lines = ["127.0.0.1 localhost", f"{self.params['controller_address']} controller"]
        lines += [f"{node['address']} {node['name']}" for node in self.params["nodes"]]
        wanted = "\n".join(lines) + "\n"
        path = f"/etc/netns/{netns}/hosts"
        current = None
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                current = handle.read()
        if current != wanted:
            self.changes.append(path)
            if not self.module.check_mode:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(wanted)

    # -- absent ------------------------------------------------------------
    def node_pids(self, netns: str, node_cgroup: str) -> set[int]:
        pids: set[int] = set()
        for directory in self.cgroup_dirs(node_cgroup):
            for root, _dirs, files in os.walk(directory):
                if "cgroup.procs" in files:
                    with open(os.path.join(root, "cgroup.procs"), encoding="ascii") as handle:
                        pids.update(int(line) for line in handle if line.strip())
        rc, out, _err = self.module.run_command(["ip", "netns", "pids", netns])
        if rc == 0:
            pids.update(int(line) for line in out.split() if line.strip())
        pids.discard(os.getpid())
        return pids

    def thaw(self, node_cgroup: str) -> None:
        candidates = [os.path.join(CGROUP_ROOT, "freezer", node_cgroup)] if not self.v2 else []
        candidates.append(os.path.join(CGROUP_ROOT, node_cgroup))
        for directory in candidates:
            for root, _dirs, files in os.walk(directory):
                for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
                    if name in files:
                        with open(os.path.join(root, name), "w", encoding="ascii") as handle:
                            handle.write(value)

    def stop_processes(self, netns: str, node_cgroup: str) -> None:
        pids = self.node_pids(netns, node_cgroup)
        if not pids:
            return
        self.changes.append(f"{netns}: stop {len(pids)} processes")
        if self.module.check_mode:
            return
        self.thaw(node_cgroup)
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                pids = self.node_pids(netns, node_cgroup)
                if not pids:
                    return
                time.sleep(0.1)
        self.module.fail_json(msg=f"{netns}: processes {sorted(pids)} did not stop")

    def remove_cgroup(self, node_cgroup: str) -> None:
        for directory in self.cgroup_dirs(node_cgroup):
            if not os.path.isdir(directory):
                continue
            self.changes.append(f"remove cgroup {directory}")
            if self.module.check_mode:
                continue
            for root, _dirs, _files in sorted(os.walk(directory), key=lambda entry: -len(entry[0])):
                for _attempt in range(50):
                    try:
                        os.rmdir(root)
                        break
                    except OSError:
                        time.sleep(0.1)
                else:
                    self.module.fail_json(msg=f"cannot remove cgroup {root}: still in use")

    def remove_node(self, netns: str) -> None:
        name = netns[len(self.params["netns_prefix"]):]
        node_cgroup = f"{self.params['cgroup_parent']}/{name}"
        self.stop_processes(netns, node_cgroup)
        host_veth = self.params["veth_prefix"] + name
        links = self.links()
        if host_veth in links and self.ours(links[host_veth]):
            self.change(f"remove veth {host_veth}", "ip", "link", "delete", host_veth)
        if netns in self.namespaces():
            self.change(f"remove namespace {netns}", "ip", "netns", "delete", netns)
        hosts_dir = f"/etc/netns/{netns}"
        if os.path.isdir(hosts_dir):
            self.changes.append(f"remove {hosts_dir}")
            if not self.module.check_mode:
                for entry in os.listdir(hosts_dir):
                    os.unlink(os.path.join(hosts_dir, entry))
                os.rmdir(hosts_dir)
        self.remove_cgroup(node_cgroup)

    def lab_node_names(self) -> set[str]:
        prefix = self.params["netns_prefix"]
        names = {netns[len(prefix):] for netns in self.namespaces()}
        names.update(name[len(self.params["veth_prefix"]):] for name, link in self.links().items()
                     if name.startswith(self.params["veth_prefix"]) and self.ours(link))
        if os.path.isdir("/etc/netns"):
            names.update(entry[len(prefix):] for entry in os.listdir("/etc/netns") if entry.startswith(prefix))
        for directory in self.cgroup_dirs(self.params["cgroup_parent"]):
            if os.path.isdir(directory):
                names.update(entry for entry in os.listdir(directory)
                             if os.path.isdir(os.path.join(directory, entry)))
        return names

    def down(self) -> None:
        for name in sorted(self.lab_node_names()):
            self.remove_node(self.params["netns_prefix"] + name)
        self.remove_cgroup(self.params["cgroup_parent"])
        links = self.links()
        if self.params["bridge"] in links and self.ours(links[self.params["bridge"]]):
            self.change(f"remove bridge {self.params['bridge']}", "ip", "link", "delete", self.params["bridge"])

    def up(self) -> None:
        self.check_ownership()
        self.note_modules()
        self.ensure_bridge()
        wanted = {node["name"] for node in self.params["nodes"]}
        for name in sorted(self.lab_node_names() - wanted):
            self.remove_node(self.params["netns_prefix"] + name)
        for node in self.params["nodes"]:
            self.ensure_node(node)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "bridge": {"type": "str", "required": True},
            "controller_address": {"type": "str", "required": True},
            "prefix": {"type": "int", "required": True},
            "netns_prefix": {"type": "str", "default": "chaoslab-"},
            "veth_prefix": {"type": "str", "default": "clv-"},
            "cgroup_parent": {"type": "str", "default": "chaoslab"},
            "nodes": {"type": "list", "elements": "dict", "default": []},
        },
        supports_check_mode=True,
    )
    lab = Lab(module)
    loaded: list[str] = []
    if module.params["state"] == "present":
        lab.up()
    else:
        lab.down()
        loaded = lab.modules_loaded()
    module.exit_json(changed=bool(lab.changes), changes=lab.changes, cgroup_version=2 if lab.v2 else 1,
                     modules_loaded=loaded)


if __name__ == "__main__":
    main()
