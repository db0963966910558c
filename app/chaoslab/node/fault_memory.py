"""Lower the Celery worker's memory cap at run time, so that its pool children are OOM-killed under load.

The cap is the one of the worker's memory cgroup: ``memory.limit_in_bytes`` (cgroup v1),
``memory.max`` (v2), or the unit's ``MemoryMax`` through ``systemctl set-property --runtime`` where
systemd runs the worker. A cap below what the node needs without the pool children (the worker's
main process and the node's other services) is refused: it would kill the main process.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

from chaoslab.node.cgroupfs import cgroup_root, memory_files, read_keyed
from chaoslab.node.cgroupfs import memory_limit as cgroup_memory_limit
from chaoslab.node.fault_record import Detail, Fault, Node
from chaoslab.node.node_procs import worker_processes

# Room kept above what the node needs without its pool children.
HEADROOM = 16 * 2**20
# Seconds a cap refused by the kernel (the cgroup holds more) is tried again before the fault fails.
REFUSED_WAIT_S = 3.0


def page_cache(cgroup: Path) -> int:
    """File pages charged to the cgroup, which the kernel reclaims before it OOM-kills anything."""
    stat = read_keyed(cgroup / "memory.stat")
    return stat.get("total_cache", stat.get("file", 0))


def _mib(value: int) -> str:
    return f"{value / 2**20:.0f}MiB"


def _write_limit(limit_file: Path, unit: str | None, value: str) -> None:
    if unit is not None:
        systemd_value = "infinity" if value == "max" else value
        subprocess.run(["systemctl", "set-property", "--runtime", unit, f"MemoryMax={systemd_value}"],
                       check=True, capture_output=True, text=True)
        return
    # cgroup v1 refuses a cap below what the cgroup holds: reclaim the page cache and try again, for up to
    # REFUSED_WAIT_S, so that a pool process's passing peak (a task holding memory for a moment) can end.
    force_empty = limit_file.parent / "memory.force_empty"
    deadline = time.monotonic() + REFUSED_WAIT_S
    while True:
        try:
            limit_file.write_text(value, encoding="ascii")
            return
        except OSError as error:
            failure = error
        try:
            if force_empty.exists():
                force_empty.write_text("0", encoding="ascii")
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise ValueError(f"memory-limit: the kernel refused {value} bytes for {limit_file.parent.name} "
                             f"({failure.strerror}) for {REFUSED_WAIT_S:g} s: the node uses more than that and "
                             "cannot give it back") from None
        time.sleep(0.1)


def memory_limit(values: dict[str, Any], on: Node) -> Fault:
    limit, node = int(values["limit"]), on.name
    main, children = worker_processes()
    if main is None:
        raise ValueError(f"memory-limit: no Celery worker runs on {node}")
    limit_file, usage_file, unit = memory_files(main.pid)
    usage = int(usage_file.read_text(encoding="ascii"))
    cache = page_cache(usage_file.parent)
    pool = 0
    for child in children:
        try:
            pool += child.memory_info().rss
        except psutil.Error:
            continue
    needed = max(usage - cache - pool, main.memory_info().rss) + HEADROOM
    if limit < needed:
        raise ValueError(f"memory-limit: {_mib(limit)} is below what {node} needs without its pool children "
                         f"({_mib(needed)}: the worker's main process and the node's services, page cache left out); "
                         "it would kill them")
    previous = limit_file.read_text(encoding="ascii").strip()
    current = cgroup_memory_limit(limit_file, psutil.virtual_memory().total)
    if limit >= current:
        raise ValueError(f"memory-limit: {_mib(limit)} is not below {node}'s memory cap now ({_mib(current)}: its "
                         "size): it would cap nothing")

    def apply() -> Detail:
        _write_limit(limit_file, unit, str(limit))
        return {"file": str(limit_file), "unit": unit, "previous": previous, "limit": limit, "usage": usage}

    return Fault("memory-limit", {"limit": limit}, apply, revert_memory_limit)


def revert_memory_limit(detail: Detail) -> None:
    previous = str(detail.get("previous") or "")
    if not previous:
        return
    cgroup_root()
    limit_file = Path(str(detail["file"]))
    if limit_file.exists() or detail.get("unit"):
        _write_limit(limit_file, detail.get("unit"), previous)
