"""Which of the project's labs is up, read off the controller alone, and what to say when an inventory
names a lab that is not up.

The local lab is up when its Redis node's network namespace exists. The Vagrant lab is up when Vagrant
has made VMs for this project (``.vagrant/machines/<name>/<provider>/id``); whether they are running is
left to SSH to find out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The local lab's namespace of node N is NETNS_PREFIX + N, under NETNS_DIR (where `ip netns add` puts it).
NETNS_PREFIX = "chaoslab-"
NETNS_DIR = Path("/run/netns")
LOCAL_INVENTORY = "inventory/local.yml"
VAGRANT_INVENTORY = "inventory/vagrant.yml"


LAB_GROUPS = ("redis", "workers", "monitor")


def lay_out(inventory: Any, lab_vars: dict[str, Any], nodes: dict[str, list[str]],
            host_vars: dict[str, dict[str, Any]]) -> None:
    """Put a lab into an Ansible inventory (what the local and Vagrant inventory plugins share): the lab's groups,
    ``lab_vars`` on all, and each node in its groups with its own variables."""
    for group in LAB_GROUPS:
        inventory.add_group(group)
    for key, value in lab_vars.items():
        inventory.set_variable("all", key, value)
    for name, groups in nodes.items():
        inventory.add_host(name)
        host = inventory.hosts[name]
        for group in groups:
            # A node may share its group's name (host redis in group redis): add the host object itself, since
            # add_child would take the group; and set its variables on the host object for the same reason.
            inventory.add_group(group)
            inventory.groups[group].add_host(host)
        for key, value in host_vars.get(name, {}).items():
            host.set_variable(key, value)


def names_plugin(path: str, plugin: str) -> bool:
    """Whether a YAML inventory file is the given inventory plugin's (a line ``plugin: NAME``)."""
    if not path.endswith((".yml", ".yaml")):
        return False
    with open(path, encoding="utf-8") as handle:
        return any(line.strip() == f"plugin: {plugin}" for line in handle)


def vagrant_machines(project: Path) -> dict[str, str]:
    """The VMs Vagrant has made for the project and not destroyed: machine name -> provider."""
    made: dict[str, str] = {}
    for id_file in sorted((project / ".vagrant" / "machines").glob("*/*/id")):
        if id_file.read_text(encoding="utf-8").strip():
            made[id_file.parent.parent.name] = id_file.parent.name
    return made


def vagrant_key(project: Path, machine: str) -> Path | None:
    """The SSH key Vagrant made for the machine (it replaces the box's insecure key on first boot)."""
    keys = sorted((project / ".vagrant" / "machines" / machine).glob("*/private_key"))
    return keys[0] if keys else None


def local_up(netns_dir: Path = NETNS_DIR) -> bool:
    return (netns_dir / f"{NETNS_PREFIX}redis").exists()


def vagrant_up(project: Path) -> bool:
    return bool(vagrant_machines(project))


def default_backend(project: Path) -> str:
    """The lab the default inventory picks: the Vagrant lab when the project has VMs, else the local lab."""
    return "vagrant" if vagrant_up(project) else "local"


def wrong_lab(backend: str, project: Path, netns_dir: Path = NETNS_DIR) -> str:
    """'' when the inventory's lab is up (or is not one this controller can see); else one line that says
    which inventory to use."""
    local, vagrant = local_up(netns_dir), vagrant_up(project)
    if backend == "local" and not local:
        if vagrant:
            return f"the local lab is not up, but this project's Vagrant VMs are: use -i {VAGRANT_INVENTORY} (or no -i)"
        return ("no lab is up: `make lab` brings the local lab up (inventory/local.yml), "
                f"`vagrant up` the VMs ({VAGRANT_INVENTORY})")
    if backend == "vagrant" and not vagrant:
        if local:
            return f"this project has no Vagrant VMs, but the local lab is up: use -i {LOCAL_INVENTORY} (or no -i)"
        return (f"no lab is up: `vagrant up` makes the VMs ({VAGRANT_INVENTORY}), "
                f"`make lab` brings the local lab up ({LOCAL_INVENTORY})")
    return ""
