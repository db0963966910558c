"""The task ledger: record formats and durable, append-only JSON-lines files.

Every line of a ledger file is one JSON object (a *record*), written compactly and
terminated by ``\\n``. The kinds of record:

``publish``
    Written by the load generator after it tried to publish a task.
``received``
    Written by a worker's main process when a message of a task reaches it (prefetched).
``start``
    Written by a worker when an execution of a task begins.
``end``
    Written by a worker when that execution ends.
``revoked``
    Written by a worker's main process when it discarded a task instead of running it (revoked, or past its
    ``expires``: ``expired``) or terminated it (``terminated``).
``alive``
    Appended when the ledgers are collected: the node's live worker processes.
``fault``, ``clock``
    In each node's event ledger: a fault taking effect and being reverted (by the fault agent),
    and the node's clock offset to the broker (see :mod:`chaoslab.clock`).

Durability model
----------------
:class:`LedgerWriter` opens the file with ``O_APPEND | O_CREAT`` (``O_RDWR``: it reads
the last byte once, on opening) and writes each record as **one** ``os.write`` call
carrying one complete line, with no buffering in the process. Consequences:

* A record is in the kernel's page cache as soon as ``write`` returns, so a SIGKILL or
  an OOM kill of the writing process loses nothing already written. ``fsync`` only
  matters for a crash of the whole machine (power loss, kernel panic); the ``fsync``
  policy chooses how much of that to pay for.
* A killed process can at worst leave its *last* line incomplete. :func:`read_records`
  skips an incomplete trailing line, and a new :class:`LedgerWriter` on the same file
  first terminates such a line so that later records stay on lines of their own.

Sharing a file between processes
--------------------------------
Several processes (e.g. the children of a prefork worker) may append to the same path,
each with its own :class:`LedgerWriter`. With ``O_APPEND`` the kernel moves the offset
to the end of the file and writes the data as one step, so lines from different
processes never overwrite each other. To keep each line from being interleaved with
another process's line, a line is kept at or below :data:`MAX_LINE_BYTES` (4096 bytes,
Linux's ``PIPE_BUF``): over-long ``error``/``error_type`` texts are clipped, and a record
that is still too long is refused with :class:`ValueError`. Local file systems
(ext4, xfs, btrfs, tmpfs) write such a line atomically; NFS does not honour
``O_APPEND`` across clients, so keep one ledger per node there.

Open the writer *after* forking (e.g. in Celery's ``worker_process_init``); a writer
inherited across ``fork`` still appends correctly, but its batch-``fsync`` clock is
then shared by accident.
"""

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, NotRequired, Self, TypedDict, get_args

PublishOutcome = Literal["ok", "error", "timeout"]
ExecutionOutcome = Literal["success", "failure", "retry"]
FsyncPolicy = Literal["always", "batch", "never"]
StrPath = str | os.PathLike[str]

FSYNC_POLICIES: Final = frozenset(get_args(FsyncPolicy))
MAX_LINE_BYTES: Final = 4096
"""Largest line written; at or below PIPE_BUF so concurrent appends stay whole lines."""
MAX_ERROR_CHARS: Final = 1024
"""Error texts longer than this are clipped when a record would exceed MAX_LINE_BYTES."""

LAB_TASK_PREFIX: Final = "chaoslab."
"""The lab's own tasks are named ``chaoslab.<kind>``."""

_CLIPPABLE_FIELDS: Final = ("error", "error_type")
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_OPEN_FLAGS: Final = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
_READ_CHUNK_BYTES: Final = 1 << 20
MAX_READ_LINE_BYTES: Final = 1 << 16
"""A line longer than this is no record a writer made (they stay within MAX_LINE_BYTES): it is skipped unread, so a
file of one huge line costs linear time and bounded memory."""


class PublishRecord(TypedDict):
    """The load generator's record of one publish attempt."""

    type: Literal["publish"]
    id: str
    kind: str
    node: str
    scheduled: float
    """When the task was due (the load's schedule)."""
    t: float
    """When the publish returned."""
    outcome: PublishOutcome
    error: str | None


class ReceivedRecord(TypedDict):
    """A worker main process's record of a message reaching it."""

    type: Literal["received"]
    id: str
    node: str
    pid: int
    ps: float
    """When the process started (tells a reused pid apart)."""
    t: float


class StartRecord(TypedDict):
    """A worker's record of an execution beginning."""

    type: Literal["start"]
    id: str
    kind: str
    node: str
    pid: int
    ps: float
    attempt: int
    """Celery's ``request.retries``."""
    redelivered: bool
    received: float | None
    t: float
    parent: NotRequired[str]
    """The task that published this one (a chain's earlier link, a task calling ``apply_async``)."""
    root: NotRequired[str]
    """The first task of the workflow (absent when it is this task)."""
    group: NotRequired[str]
    """The group (or chord header) the task belongs to."""


class EndRecord(TypedDict):
    """A worker's record of an execution ending."""

    type: Literal["end"]
    id: str
    kind: str
    node: str
    pid: int
    ps: float
    attempt: int
    t: float
    outcome: ExecutionOutcome
    error_type: str | None


Record = PublishRecord | ReceivedRecord | StartRecord | EndRecord


def task_kind(name: str) -> str:
    """A task's ``kind`` in the ledger: the lab's own tasks by their short name (``chaoslab.cpu`` -> ``cpu``), the
    tasks of an app under test by their full name."""
    return name.removeprefix(LAB_TASK_PREFIX)


def encode_record(record: Mapping[str, Any]) -> bytes:
    """Return *record* as one compact JSON line (ASCII, ending in ``\\n``).

    Raises ValueError if the line cannot be kept within MAX_LINE_BYTES, or if the record
    holds NaN or infinity (not JSON).
    """
    line = _ENCODER.encode(record).encode("ascii") + b"\n"
    if len(line) <= MAX_LINE_BYTES:
        return line
    return _encode_clipped(record)


def _encode_clipped(record: Mapping[str, Any]) -> bytes:
    clipped = {key: _clip(value) if key in _CLIPPABLE_FIELDS else value for key, value in record.items()}
    line = _ENCODER.encode(clipped).encode("ascii") + b"\n"
    if len(line) > MAX_LINE_BYTES:
        raise ValueError(f"ledger record is {len(line)} bytes, more than {MAX_LINE_BYTES}: {line[:200]!r}")
    return line


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_ERROR_CHARS:
        return value[:MAX_ERROR_CHARS] + "...[clipped]"
    return value


class LedgerWriter:
    """Append records to a JSON-lines ledger, one ``os.write`` per record.

    ``fsync``: ``"always"`` syncs after every record, ``"batch"`` at most once per
    ``batch_interval_s`` (checked when a record is written; :meth:`sync` and
    :meth:`close` sync too), ``"never"`` leaves it to the kernel. All three survive
    a kill of the writing process; they differ only for a crash of the machine.
    """

    def __init__(
        self,
        path: StrPath,
        fsync: FsyncPolicy = "batch",
        batch_interval_s: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {sorted(FSYNC_POLICIES)}, not {fsync!r}")
        if batch_interval_s < 0:
            raise ValueError(f"batch_interval_s must be >= 0, not {batch_interval_s!r}")
        self.path = Path(path)
        self.fsync_policy: FsyncPolicy = fsync
        self._interval = batch_interval_s
        self._clock = clock
        created = not self.path.exists()
        self._fd: int | None = os.open(self.path, _OPEN_FLAGS, 0o644)
        if created and fsync != "never":
            _sync_directory(self.path.parent)
        self._terminate_torn_line()
        self._last_sync = clock()

    @property
    def closed(self) -> bool:
        return self._fd is None

    def write(self, record: Mapping[str, Any]) -> None:
        """Append *record* as one line, then fsync as the policy says."""
        self._append(encode_record(record))
        if self.fsync_policy == "always":
            os.fsync(self._require_fd())
        elif self.fsync_policy == "batch":
            self._sync_if_due()

    def sync(self) -> None:
        """fsync now, whatever the policy."""
        os.fsync(self._require_fd())
        self._last_sync = self._clock()

    def close(self) -> None:
        """Sync (unless the policy is ``"never"``) and close; closing twice is harmless."""
        if self._fd is None:
            return
        try:
            if self.fsync_policy != "never":
                os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _require_fd(self) -> int:
        if self._fd is None:
            raise ValueError(f"ledger {self.path} is closed")
        return self._fd

    def _append(self, line: bytes) -> None:
        fd = self._require_fd()
        written = os.write(fd, line)
        if written != len(line):
            os.write(fd, b"\n")  # end the torn line so the next record starts on its own line
            raise OSError(f"short write to ledger {self.path}: {written} of {len(line)} bytes")

    def _sync_if_due(self) -> None:
        now = self._clock()
        if now - self._last_sync >= self._interval:
            os.fsync(self._require_fd())
            self._last_sync = now

    def _terminate_torn_line(self) -> None:
        """If a killed writer left the file without a final newline, end that line."""
        fd = self._require_fd()
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            self._append(b"\n")


def _sync_directory(directory: Path) -> None:
    """fsync a directory so that a newly created file's name survives a machine crash."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(slots=True)
class ReadStats:
    """What :func:`read_records` met: records yielded and lines skipped."""

    records: int = 0
    torn_tails: int = 0
    """Files whose last line had no newline (a write cut short by a kill); skipped."""
    corrupt_lines: int = 0
    """Complete lines that are not a JSON object (e.g. a torn line a later writer ended)."""
    torn_fragments: int = 0
    """Lines that began with a fragment of a record cut short by a kill and went on with a whole record of another
    writer sharing the file (the kernel may stop a write to a killed process between pages): the fragment is
    skipped, the record kept."""
    oversized_lines: int = 0
    """Lines longer than MAX_READ_LINE_BYTES (no writer makes them): skipped without being read whole."""


def read_records(
    paths: StrPath | Iterable[StrPath],
    stats: ReadStats | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield the records of one or more ledger files, file after file, in file order.

    An incomplete trailing line (no newline) is skipped, and so is any complete line that
    is not a JSON object, and any line longer than MAX_READ_LINE_BYTES (without reading it
    whole); all are counted in *stats* when given. Blank lines are ignored. Reading takes
    time linear in the files' size and memory bounded by the chunk and line limits.
    """
    counts = stats if stats is not None else ReadStats()
    for path in _path_list(paths):
        yield from _read_file(Path(path), counts)


def _path_list(paths: StrPath | Iterable[StrPath]) -> list[StrPath]:
    if isinstance(paths, str | os.PathLike):
        return [paths]
    return list(paths)


def _read_file(path: Path, stats: ReadStats) -> Iterator[dict[str, Any]]:
    with path.open("rb") as handle:
        tail = b""
        skipping = False  # inside an oversized line: drop bytes up to its newline
        while chunk := handle.read(_READ_CHUNK_BYTES):
            if skipping:
                newline = chunk.find(b"\n")
                if newline == -1:
                    continue
                chunk, skipping = chunk[newline + 1:], False
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()  # b"" when the chunk ended with a newline
            if len(tail) > MAX_READ_LINE_BYTES:
                stats.oversized_lines += 1
                tail, skipping = b"", True
            long = [line for line in lines if len(line) > MAX_READ_LINE_BYTES]
            if long:
                stats.oversized_lines += len(long)
                lines = [line for line in lines if len(line) <= MAX_READ_LINE_BYTES]
            yield from _parse_lines(lines, stats)
    if tail:
        stats.torn_tails += 1


def _parse_lines(lines: list[bytes], stats: ReadStats) -> list[dict[str, Any]]:
    """Parse complete lines (newline removed); one JSON array per chunk is much faster.

    Any blank, corrupt or non-object line makes the batch fail its checks, and then the
    lines are parsed one by one. A torn fragment joined to the next line never forms
    valid JSON, because every record line starts with an object key.
    """
    try:
        records = json.loads(b"[" + b",".join(lines) + b"]")
    except ValueError:
        return _parse_one_by_one(lines, stats)
    if len(records) != len(lines) or not all(type(record) is dict for record in records):
        return _parse_one_by_one(lines, stats)
    stats.records += len(records)
    return records


def _json_object(text: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if type(record) is dict else None


def _after_fragment(line: bytes) -> dict[str, Any] | None:
    """The whole record that follows a torn fragment on *line*: the first suffix starting an object key that
    parses as a JSON object with a record's ``type`` and ``id`` (so that a nested object ending a torn record
    is not taken for one)."""
    start = line.find(b'{"', 1)
    while start != -1:
        record = _json_object(line[start:])
        if record is not None and "type" in record and "id" in record:
            return record
        start = line.find(b'{"', start + 1)
    return None


def _parse_one_by_one(lines: list[bytes], stats: ReadStats) -> list[dict[str, Any]]:
    records = []
    for line in lines:
        if not line.strip():
            continue
        record = _json_object(line)
        if record is None and (record := _after_fragment(line)) is not None:
            stats.torn_fragments += 1
        if record is not None:
            records.append(record)
        else:
            stats.corrupt_lines += 1
    stats.records += len(records)
    return records


def parse_records(lines: list[bytes]) -> list[dict[str, Any]]:
    """The records of complete lines (newline removed), as :func:`read_records` reads them (torn fragments
    skipped): for a reader that follows a ledger while it grows."""
    return _parse_lines(lines, ReadStats())
