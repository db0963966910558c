"""A local lab node's size: the CPU quota and memory limit of its own cgroup, set from inside the node.

A local lab node is a network namespace plus a cgroup (``chaoslab/<node>``) that every process of the node joins
(the ``netns`` connection puts each task there, and the services it starts inherit it). Its size is that cgroup's
limits: ``cpu.cfs_quota_us`` over ``cpu.cfs_period_us`` and ``memory.limit_in_bytes`` (cgroup v1), ``cpu.max``
and ``memory.max`` (v2). site.yml sets the inventory's size (``lab_cpus``, ``lab_memory_mib``); a scenario's
``nodes:`` sets another for its run (playbooks/size.yml), and the runner puts the inventory's back after it.

    python -m chaoslab.node.node_size --cpus 2 --memory-mib 1024     # prints what it found and what it set (JSON)
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from chaoslab.node.cgroupfs import cgroup_root

PERIOD_US = 100_000
MIB = 2**20


@dataclass(frozen=True)
class Size:
    cpus: float | None
    """CPUs the node may use (its quota over its period); None: no quota."""
    memory_mib: int | None
    """Its memory limit; None: no limit."""


def own_cgroup(controller: str, proc_cgroup: str = "/proc/self/cgroup") -> tuple[Path, bool]:
    """(directory of this process's cgroup for *controller*, whether it is cgroup v2)."""
    root = cgroup_root()
    for line in Path(proc_cgroup).read_text(encoding="ascii").splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "" and (root / "cgroup.controllers").exists():
            return root / path.lstrip("/"), True
        if controller in controllers.split(","):
            return root / controllers / path.lstrip("/"), False
    raise ValueError(f"this process is in no {controller} cgroup")


def read_size(cpu_dir: Path, memory_dir: Path, v2: bool) -> Size:
    if v2:
        quota, period = (cpu_dir / "cpu.max").read_text(encoding="ascii").split()
        limit = (memory_dir / "memory.max").read_text(encoding="ascii").strip()
    else:
        quota = (cpu_dir / "cpu.cfs_quota_us").read_text(encoding="ascii").strip()
        period = (cpu_dir / "cpu.cfs_period_us").read_text(encoding="ascii").strip()
        limit = (memory_dir / "memory.limit_in_bytes").read_text(encoding="ascii").strip()
    cpus = None if quota in ("max", "-1") else round(int(quota) / int(period), 3)
    # v1 says "no limit" with a page-rounded LONG_MAX
    memory = None if limit == "max" or int(limit) >= 2**60 else int(limit) // MIB
    return Size(cpus, memory)


def cgroup_size(cgroup: str, root: Path = Path("/sys/fs/cgroup")) -> Size | None:
    """The size a local lab node's cgroup (``chaoslab/<node>``) enforces, read on the lab's host; None where the
    cgroup does not exist."""
    if (root / "cgroup.controllers").exists():
        directory = root / cgroup
        return read_size(directory, directory, True) if directory.is_dir() else None
    cpu = next((root / name / cgroup for name in ("cpu", "cpu,cpuacct") if (root / name / cgroup).is_dir()), None)
    memory = root / "memory" / cgroup
    return read_size(cpu, memory, False) if cpu is not None and memory.is_dir() else None


def _write(path: Path, value: str, what: str) -> None:
    try:
        path.write_text(value, encoding="ascii")
    except OSError as err:
        raise ValueError(f"cannot set the node's {what} to {value} ({err.strerror}): its processes may hold more "
                         "than that") from None


def named_cgroup(controller: str, cgroup: str) -> tuple[Path, bool]:
    """(directory of the cgroup *cgroup* (e.g. chaoslab/worker-1) for *controller*, whether it is cgroup v2)."""
    root = cgroup_root()
    if (root / "cgroup.controllers").exists():
        found = root / cgroup
    else:
        found = next((root / name / cgroup for name in (controller, "cpu,cpuacct", "cpuacct,cpu")
                      if (root / name / cgroup).is_dir()), root / controller / cgroup)
    if not found.is_dir():
        raise ValueError(f"no cgroup {cgroup} for {controller} (bring the lab up first)")
    return found, (root / "cgroup.controllers").exists()


def set_size(wanted: Size, cgroup: str = "") -> tuple[Size, Size]:
    """Set the CPU quota and memory limit of the node's cgroup (*cgroup*, else this process's own); (size before,
    size after)."""
    cpu_dir, v2 = named_cgroup("cpu", cgroup) if cgroup else own_cgroup("cpu")
    memory_dir, _ = named_cgroup("memory", cgroup) if cgroup else own_cgroup("memory")
    before = read_size(cpu_dir, memory_dir, v2)
    if wanted.cpus != before.cpus:
        quota = "max" if wanted.cpus is None else str(max(1000, round(wanted.cpus * PERIOD_US)))
        if v2:
            _write(cpu_dir / "cpu.max", f"{quota} {PERIOD_US}", "CPU quota")
        else:
            _write(cpu_dir / "cpu.cfs_period_us", str(PERIOD_US), "CPU period")
            _write(cpu_dir / "cpu.cfs_quota_us", "-1" if quota == "max" else quota, "CPU quota")
    if wanted.memory_mib != before.memory_mib:
        limit = "max" if wanted.memory_mib is None else str(wanted.memory_mib * MIB)
        _write(memory_dir / ("memory.max" if v2 else "memory.limit_in_bytes"), "-1" if limit == "max" and not v2
               else limit, "memory limit")
    return before, read_size(cpu_dir, memory_dir, v2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", type=float, required=True, help="CPUs the node may use (e.g. 2 or 0.5)")
    parser.add_argument("--memory-mib", type=int, required=True, help="the node's memory limit in MiB")
    parser.add_argument("--cgroup", default="", help="the node's cgroup (chaoslab/<node>); default: this process's")
    args = parser.parse_args(argv)
    if not 0.01 <= args.cpus <= 1024 or not 16 <= args.memory_mib <= 2**30:
        print("node-size: cpus must be 0.01-1024 and memory 16 MiB or more", file=sys.stderr)
        return 2
    try:
        before, after = set_size(Size(args.cpus, args.memory_mib), args.cgroup)
    except ValueError as err:
        print(f"node-size: {err}", file=sys.stderr)
        return 1
    print(json.dumps({"changed": before != after, "before": asdict(before), "after": asdict(after)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
