"""Read the local lab's state from the host: namespaces, links, cgroups, service processes."""

from __future__ import annotations

import glob
import hashlib
import os
import subprocess
from pathlib import Path

import psutil

CGROUP_ROOT = Path("/sys/fs/cgroup")


def supervisorctl(node: str, *args: str) -> subprocess.CompletedProcess:
    conf = f"/etc/chaoslab/nodes/{node}/supervisord.conf"
    return subprocess.run(["supervisorctl", "-c", conf, *args], capture_output=True, text=True, check=False)


def service_pid(node: str, program: str) -> int:
    out = supervisorctl(node, "pid", program).stdout.strip()
    assert out.isdigit() and int(out) > 0, f"{program} on {node} is not running: {out!r}"
    return int(out)


def service_processes(node: str, program: str) -> list[psutil.Process]:
    main = psutil.Process(service_pid(node, program))
    return [main, *main.children(recursive=True)]


def netns_inode(netns: str) -> int:
    return os.stat(f"/run/netns/{netns}").st_ino


def process_netns_inode(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def process_cgroups(pid: int) -> dict[str, str]:
    """controller -> cgroup path of the process (v1 lines; the v2 line is under key '')."""
    groups = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _id, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            groups[controller] = path
    return groups


def lab_namespaces() -> list[str]:
    return sorted(name for name in os.listdir("/run/netns") if name.startswith("chaoslab-")) \
        if os.path.isdir("/run/netns") else []


def lab_links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]
    return sorted(name for name in names if name.startswith(("clv-", "chaoslab")))


def lab_rules() -> list[str]:
    """The host's iptables rules that name a lab link (the lab's own rules live inside its nodes' namespaces)."""
    out = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if "chaoslab" in line or "clv-" in line]


def lab_cgroups() -> list[str]:
    return sorted(path for path in glob.glob(str(CGROUP_ROOT / "**" / "chaoslab*"), recursive=True)
                  if os.path.isdir(path))


def lab_processes() -> list[psutil.Process]:
    """Processes in any lab cgroup or namespace."""
    found = []
    lab_inodes = {netns_inode(name) for name in lab_namespaces()}
    for proc in psutil.process_iter():
        try:
            cgroups = process_cgroups(proc.pid).values()
            inode = process_netns_inode(proc.pid)
        except (OSError, psutil.Error):
            continue
        if any("/chaoslab" in path for path in cgroups) or inode in lab_inodes:
            found.append(proc)
    return found


def digest(paths: list[str]) -> dict[str, str]:
    return {path: hashlib.sha256(Path(path).read_bytes()).hexdigest() for path in paths if os.path.exists(path)}


def snapshot(nodes: list[str]) -> dict:
    """What a rejected command must leave exactly as it was."""
    configs = [path for node in nodes for path in glob.glob(f"/etc/chaoslab/nodes/{node}/**", recursive=True)
               if os.path.isfile(path)]
    return {
        "namespaces": lab_namespaces(),
        "links": lab_links(),
        "cgroups": lab_cgroups(),
        "services": {node: supervisorctl(node, "pid", "all").stdout for node in nodes},
        "configs": digest(configs),
    }
