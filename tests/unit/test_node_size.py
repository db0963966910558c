"""A local lab node's size as its cgroup files say it, v1 and v2 (the files the kernel writes, made here)."""

from __future__ import annotations

from pathlib import Path

from chaoslab.node.node_size import Size, cgroup_size, read_size


def files(directory: Path, **contents: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in contents.items():
        (directory / name.replace("_", ".", 1)).write_text(text + "\n", encoding="ascii")
    return directory


def test_a_v1_node_reads_its_quota_and_limit(tmp_path: Path) -> None:
    cpu = files(tmp_path / "cpu,cpuacct" / "chaoslab" / "worker-1", cpu_cfs_quota_us="150000",
                cpu_cfs_period_us="100000")
    files(tmp_path / "memory" / "chaoslab" / "worker-1", memory_limit_in_bytes=str(1000 * 2**20))
    assert cpu.is_dir()
    assert cgroup_size("chaoslab/worker-1", tmp_path) == Size(1.5, 1000)
    assert cgroup_size("chaoslab/worker-9", tmp_path) is None


def test_a_v1_node_without_limits_says_none(tmp_path: Path) -> None:
    cpu = files(tmp_path / "cpu", cpu_cfs_quota_us="-1", cpu_cfs_period_us="100000")
    memory = files(tmp_path / "memory", memory_limit_in_bytes="9223372036854771712")
    assert read_size(cpu, memory, v2=False) == Size(None, None)


def test_a_v2_node_reads_cpu_max_and_memory_max(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n", encoding="ascii")
    files(tmp_path / "chaoslab" / "redis", cpu_max="100000 100000", memory_max=str(1024 * 2**20))
    assert cgroup_size("chaoslab/redis", tmp_path) == Size(1.0, 1024)
    files(tmp_path / "chaoslab" / "monitor", cpu_max="max 100000", memory_max="max")
    assert cgroup_size("chaoslab/monitor", tmp_path) == Size(None, None)
