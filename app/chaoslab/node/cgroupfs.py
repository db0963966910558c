"""The cgroup filesystem as a node's processes see it, and a process's memory cgroup in it.

Inside a local lab node ``ip netns exec`` mounts a fresh ``/sys`` without ``/sys/fs/cgroup``; there
the hierarchies this process belongs to are mounted again, in the private mount namespace that
``ip netns exec`` made (nothing changes outside it). On a VM or host they are simply there.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def cgroup_root() -> Path:
    """/sys/fs/cgroup, mounted first where it is missing (inside a local lab node)."""
    if ROOT.is_dir() and any(ROOT.iterdir()):
        return ROOT
    lines = [line.split(":", 2) for line in Path("/proc/self/cgroup").read_text(encoding="ascii").splitlines()]
    v1 = [controllers for _, controllers, _ in lines if controllers and not controllers.startswith("name=")]
    if not v1:
        subprocess.run(["mount", "-t", "cgroup2", "cgroup2", str(ROOT)], check=True, capture_output=True)
        return ROOT
    subprocess.run(["mount", "-t", "tmpfs", "cgroup_root", str(ROOT)], check=True, capture_output=True)
    for controllers in v1:
        (ROOT / controllers).mkdir(exist_ok=True)
        subprocess.run(["mount", "-t", "cgroup", "-o", controllers, "cgroup", str(ROOT / controllers)],
                       check=True, capture_output=True)
    return ROOT


def read_keyed(path: Path) -> dict[str, int]:
    """A keyed file of the cgroup filesystem or /proc ("name value" per line: memory.stat, cpu.stat, vmstat)."""
    pairs = (line.split() for line in path.read_text(encoding="ascii").splitlines())
    return {pair[0]: int(pair[1]) for pair in pairs if len(pair) == 2 and pair[1].lstrip("-").isdigit()}


def memory_limit(limit_file: Path, total: int) -> int:
    """A cgroup's memory limit (v1 limit_in_bytes, v2 memory.max), at most ``total``; ``total`` where unlimited."""
    text = limit_file.read_text(encoding="ascii").strip() if limit_file.exists() else "max"
    return total if text == "max" else min(int(text), total)


def process_cgroup(pid: int | str, controller: str) -> tuple[Path, str | None, int] | None:
    """(directory, systemd unit or None, cgroup version) of a process's cgroup for *controller*: its v1 hierarchy's,
    or its one v2 cgroup (the unit is named where systemd runs it); None when it is in none."""
    root = cgroup_root()
    for line in Path(f"/proc/{pid}/cgroup").read_text(encoding="ascii").splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "" and (root / "cgroup.controllers").exists():
            base = root / path.lstrip("/")
            unit = base.name if base.name.endswith(".service") and Path("/run/systemd/system").is_dir() else None
            return base, unit, 2
        if controller in controllers.split(","):
            return root / controllers / path.lstrip("/"), None, 1
    return None


def memory_files(pid: int | str) -> tuple[Path, Path, str | None]:
    """(limit file, usage file, systemd unit or None) of a process's memory cgroup."""
    found = process_cgroup(pid, "memory")
    if found is None:
        raise ValueError(f"process {pid} is in no memory cgroup")
    base, unit, version = found
    if version == 2:
        return base / "memory.max", base / "memory.current", unit
    return base / "memory.limit_in_bytes", base / "memory.usage_in_bytes", None
