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
# A node's size (CPUs, memory in MiB) where its layout names none: inventory/vagrant.yml's sizes, which the local
# lab's inventory/local.yml repeats. LAB_<ROLE>_CPUS and LAB_<ROLE>_MEMORY (ROLE: the node's name upper-cased, or
# WORKER for every worker) override them, as for the Vagrantfile's VMs.
DEFAULT_SIZES = {"redis": {"cpus": 1, "memory": 1024}, "monitor": {"cpus": 1, "memory": 1536},
                 "worker": {"cpus": 2, "memory": 1024}}
SIZE_LIMITS = {"cpus": (1, 64), "memory": (128, 1024 * 1024)}


def node_size(name: str, spec: dict[str, Any], env: dict[str, str], worker: bool = False) -> dict[str, int]:
    """A node's size as the roles and faults read it (``lab_cpus``, ``lab_memory_mib``): the environment's
    override, else the layout's, else DEFAULT_SIZES; ValueError (one line) when it is no whole number in range."""
    role = "worker" if worker else name
    found = {}
    for key, (low, high) in SIZE_LIMITS.items():
        variable = f"LAB_{role.upper().replace('-', '_')}_{key.upper()}"
        raw = env.get(variable, "").strip() or spec.get(key, DEFAULT_SIZES.get(role, DEFAULT_SIZES["worker"])[key])
        where = variable if env.get(variable, "").strip() else f"nodes.{name}.{key}"
        try:
            value = int(str(raw))
        except ValueError:
            raise ValueError(f"{where}: {raw!r} is not a whole number"
                             f"{' of MiB' if key == 'memory' else ''}") from None
        if not low <= value <= high:
            raise ValueError(f"{where}: {value} is out of range ({low}-{high}{' MiB' if key == 'memory' else ''})")
        found[key] = value
    return {"lab_cpus": found["cpus"], "lab_memory_mib": found["memory"]}


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
