"""A full disk under Redis: its data directory's filesystem filled, so that writing its AOF or RDB fails.

The filesystem must be Redis's own (the redis role mounts an ext4 image of ``redis_data_size_mib`` on its data
directory): filling one the node shares would fail everything else on it too. A file of the lab's (``FILLER``) takes all
but ``free`` bytes of it, allocated at once; the end of the fault removes it. What Redis does then depends on
its persistence: with ``appendonly yes`` a failed write to the AOF makes it refuse every write command (MISCONF)
until a write succeeds again; with RDB save points a failed background save does the same
(``stop-writes-on-bgsave-error``), once a save is due; with neither, a full disk does not reach it.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import time
from pathlib import Path
from typing import Any

from chaoslab.node.fault_record import Detail, Fault, Node
from chaoslab.node.fault_redis import client
from chaoslab.node.node_procs import same_netns

FILLER = "chaoslab-disk-full"
ALLOCATE_TRIES = 256
HEADROOM_KEPT = 64 * 2**20
"""Memory a tmpfs fill leaves the node's cgroup (its processes keep running)."""


def redis_dir(node: str, timeout: float = 5.0, fault: str = "redis-disk-full") -> tuple[int, Path]:
    """Redis's process id and the directory it writes its AOF and RDB to, reached through the process itself
    (``/proc/<pid>/cwd``: Redis works in its dir), so in whatever mount namespace Redis runs (a local lab node's
    services have one of their own)."""
    import redis

    try:
        pid = int(client(timeout).info("server")["process_id"])
    except (redis.RedisError, KeyError, ValueError) as error:
        raise ValueError(f"{fault}: the Redis of {node} does not answer ({error})") from None
    try:
        ours = same_netns(pid) and Path(f"/proc/{pid}/comm").read_text().startswith("redis-server")
    except OSError:
        ours = False
    if not ours:
        raise ValueError(f"{fault}: the lab's Redis does not run on {node}")
    return pid, Path(f"/proc/{pid}/cwd")


def own_filesystem(pid: int, directory: Path, fault: str = "redis-disk-full") -> str:
    """Refuse a directory that is not the mount point of a filesystem of its own; its type (ext4, tmpfs, ...)."""
    try:
        where = os.readlink(directory)
        parent = Path(f"/proc/{pid}/root") / Path(where).parent.relative_to("/")
        own = os.stat(directory).st_dev != os.stat(parent).st_dev
        mounts = Path(f"/proc/{pid}/mountinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except (OSError, ValueError) as error:
        raise ValueError(f"{fault}: cannot look at Redis's dir ({error})") from None
    if not own:
        raise ValueError(f"{fault}: Redis's dir {where} has no filesystem of its own (the fault would reach the "
                         "node's); the redis role gives it one with redis_data_size_mib")
    kinds = [line.split(" - ", 1)[1].split()[0] for line in mounts
             if " - " in line and line.split()[4] == where]
    return kinds[-1] if kinds else ""


def memory_headroom() -> int | None:
    """Bytes this node's memory cgroup can still take (a tmpfs's pages are charged to it); None without a limit."""
    from chaoslab.node.cgroupfs import memory_files

    try:
        limit_file, usage_file, _ = memory_files("self")
        limit = limit_file.read_text(encoding="ascii").strip()
        usage = int(usage_file.read_text(encoding="ascii"))
    except (OSError, ValueError):
        return None
    if limit == "max" or int(limit) >= 2**60:
        return None
    return int(limit) - usage


def _allocate(fd: int, wanted: int, block: int) -> int:
    """Allocate up to *wanted* bytes to *fd*, a block less each time the filesystem has less room than it said
    (Redis writes meanwhile, and a filesystem keeps some for itself); the bytes allocated."""
    for attempt in range(ALLOCATE_TRIES):
        size = wanted - attempt * block
        if size <= 0:
            return 0
        try:
            os.posix_fallocate(fd, 0, size)
            return size
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
    raise OSError(errno.ENOSPC, f"the filesystem kept less than {wanted} bytes free for {ALLOCATE_TRIES} tries")


def redis_disk_full(values: dict[str, Any], node: Node) -> Fault:
    free = int(values["free"])
    pid, directory = redis_dir(node.name)
    kind = own_filesystem(pid, directory)
    if (directory / FILLER).exists():
        raise ValueError("redis-disk-full: a filler is already in Redis's dir; run faults/clear.yml first")
    stats = os.statvfs(directory)
    headroom = memory_headroom() if kind == "tmpfs" else None
    wanted = max(stats.f_bavail * stats.f_frsize - free, 0)
    if headroom is not None and wanted > headroom - HEADROOM_KEPT:
        raise ValueError(f"redis-disk-full: filling Redis's tmpfs takes {wanted // 2**20}MiB of {node.name}'s memory, "
                         f"and it has {max(headroom, 0) // 2**20}MiB left: it would OOM-kill the node's processes "
                         "(give Redis a smaller redis_data_size_mib, or the node more memory)")
    parent = psutil_parent(pid)

    def apply() -> Detail:
        stats = os.statvfs(directory)
        fd = os.open(directory / FILLER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            fill = _allocate(fd, max(stats.f_bavail * stats.f_frsize - free, 0), stats.f_frsize)
        except OSError:
            os.close(fd)
            (directory / FILLER).unlink()
            raise
        os.close(fd)
        return {"pid": pid, "parent": parent, "dir": os.readlink(directory), "filled_bytes": fill,
                "free_bytes": free, "size_bytes": stats.f_blocks * stats.f_frsize}

    return Fault("redis-disk-full", {"free": free}, apply, revert_redis_disk_full)


def psutil_parent(pid: int) -> int | None:
    """Redis's parent (its service manager: it keeps Redis's mount namespace while Redis is down)."""
    import psutil

    try:
        return psutil.Process(pid).ppid() or None
    except psutil.Error:
        return None


def _is_pid(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def revert_redis_disk_full(detail: Detail) -> None:
    """Remove the filler: through the Redis that runs now (it may have restarted), else the one filled, else its
    service manager's view of the directory (Redis is down)."""
    with contextlib.suppress(ValueError):
        _, directory = redis_dir("this node", timeout=2.0)
        (directory / FILLER).unlink(missing_ok=True)
        return
    pid, parent, where = detail.get("pid"), detail.get("parent"), str(detail.get("dir") or "")
    places = [Path(f"/proc/{pid}/cwd")] if _is_pid(pid) else []
    if _is_pid(parent) and where.startswith("/"):
        places.append(Path(f"/proc/{parent}/root") / where.lstrip("/"))
    for place in places:
        if (place / FILLER).exists():
            with contextlib.suppress(OSError):
                (place / FILLER).unlink()
                return


def clear_filler() -> list[str]:
    """Remove a filler a lost agent left in Redis's directory, where this node runs Redis; names what was there."""
    try:
        pid, directory = redis_dir("this node", timeout=2.0)
        filler = directory / FILLER
        if not filler.is_file():
            return []
        where = os.readlink(directory)
        filler.unlink(missing_ok=True)
    except (ValueError, OSError):  # no Redis here to ask, or it is another node's
        return []
    return [f"{FILLER} in {where} (Redis {pid})"]


PROBE_EVERY_S = 0.2
PROBE_KEY = "chaoslab:disk-full-probe"


def _persistence(conn: Any) -> dict[str, Any]:
    info = conn.info("persistence")
    return {key: info.get(key) for key in ("aof_enabled", "aof_last_write_status", "rdb_last_bgsave_status")}


def disk_full_effect(values: dict[str, Any], _node: Node) -> Any:
    """While in force: a client's writes (a small key every 0.2 s, so that Redis has something to persist) and
    whether Redis refused them (MISCONF), Redis's own persistence status, and the free space left."""
    import redis

    from chaoslab.node.fault_effect import Window, effect

    free = int(values["free"])

    def during(window: Window) -> Detail:
        conn = client(timeout=2.0)
        directory = Path(f"/proc/{window.detail.get('pid')}/cwd")
        start, statuses = time.monotonic(), _persistence(conn)
        writes, refused, lowest = 0, 0, None
        measured: dict[str, Any] = {"refused_after_s": None}
        while not window.ended.wait(PROBE_EVERY_S):
            stats = os.statvfs(directory)
            lowest = min(lowest if lowest is not None else math.inf, stats.f_bavail * stats.f_frsize)
            try:
                conn.set(PROBE_KEY, str(writes), ex=60)
                writes += 1
            except redis.ResponseError as error:  # Redis answered, and refused the write
                writes, refused = writes + 1, refused + 1
                if measured["refused_after_s"] is None:
                    measured |= {"refused_after_s": round(time.monotonic() - start, 2),
                                 "first_error": str(error).split("\n")[0][:160]}
            except redis.RedisError:  # no answer: not a write it refused
                continue
            with contextlib.suppress(redis.RedisError):
                statuses = _persistence(conn)
        measured |= {"writes": writes, "writes_refused": refused, "free_bytes_seen": lowest, **statuses}
        how = ("a client's writes to Redis while the disk was full (one every 0.2 s) and how many Redis refused "
               "(MISCONF: it could not write its AOF or RDB), Redis's persistence status (INFO persistence), and "
               "the least free space its directory had")
        return effect({"free_bytes": free}, measured, refused / writes if writes else 0.0, how,
                      effective=refused > 0)

    return during
