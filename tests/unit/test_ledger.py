"""The task ledger: real files, real child processes killed with SIGKILL."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaoslab import ledger
from chaoslab.ledger import MAX_LINE_BYTES, LedgerWriter, ReadStats, encode_record, read_records

APP_DIR = Path(__file__).resolve().parents[2] / "app"


def make_record(writer: str, seq: int) -> dict:
    """A deterministic end record whose size varies (up to ~2.5 KiB) with *seq*."""
    return {
        "type": "end",
        "id": f"{writer}-{seq}",
        "kind": "noop",
        "node": writer,
        "pid": 4000 + seq % 7,
        "attempt": seq % 3,
        "t": 1_700_000_000.0 + seq / 1000,
        "outcome": "success",
        "error_type": "x" * (seq * 37 % 2500),
    }


def start_record(task_id: str, t: float = 1.0) -> dict:
    return {
        "type": "start",
        "id": task_id,
        "kind": "noop",
        "node": "worker-1",
        "pid": 42,
        "attempt": 0,
        "redelivered": False,
        "received": None,
        "t": t,
    }


def write_all(path: Path, records: list[dict], fsync: str = "never") -> None:
    with LedgerWriter(path, fsync=fsync) as writer:
        for record in records:
            writer.write(record)


# --- format ------------------------------------------------------------------------------


def test_encode_record_is_one_compact_line():
    line = encode_record(start_record("a"))
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert b": " not in line
    assert b", " not in line
    assert json.loads(line) == start_record("a")


def test_encode_record_escapes_newlines_and_non_ascii_in_text():
    record = {**make_record("w", 1), "error_type": "boom\nsecond line ünïcode"}
    line = encode_record(record)
    assert line.count(b"\n") == 1
    assert line.isascii()
    assert json.loads(line) == record


def test_encode_record_clips_long_error_text_to_fit_one_atomic_line():
    record = {"type": "publish", "id": "a", "kind": "k", "t": 1.0, "outcome": "error", "error": "e" * 10_000}
    line = encode_record(record)
    assert len(line) <= MAX_LINE_BYTES
    decoded = json.loads(line)
    assert decoded["error"].startswith("e" * 1000)
    assert decoded["error"].endswith("[clipped]")
    assert {k: v for k, v in decoded.items() if k != "error"} == {k: v for k, v in record.items() if k != "error"}


def test_encode_record_refuses_a_record_that_cannot_fit():
    with pytest.raises(ValueError, match="bytes, more than"):
        encode_record({**start_record("a"), "kind": "k" * 5000})


def test_encode_record_refuses_nan():
    with pytest.raises(ValueError):
        encode_record(start_record("a", t=float("nan")))


# --- writing and reading -------------------------------------------------------------------


def test_records_round_trip_through_a_file(tmp_path):
    path = tmp_path / "worker-1.jsonl"
    records = [make_record("w", seq) for seq in range(200)]
    write_all(path, records)
    assert list(read_records(path)) == records
    assert path.read_bytes().count(b"\n") == 200


def test_reopening_appends_after_existing_records(tmp_path):
    path = tmp_path / "ledger.jsonl"
    write_all(path, [start_record("a")])
    write_all(path, [start_record("b")])
    assert [record["id"] for record in read_records(path)] == ["a", "b"]


def test_read_records_reads_several_files_in_order(tmp_path):
    paths = [tmp_path / f"{name}.jsonl" for name in ("one", "two", "three")]
    for index, path in enumerate(paths):
        write_all(path, [start_record(f"{index}-{n}") for n in range(3)])
    ids = [record["id"] for record in read_records(paths)]
    assert ids == [f"{index}-{n}" for index in range(3) for n in range(3)]
    assert [r["id"] for r in read_records(str(paths[1]))] == ["1-0", "1-1", "1-2"]


def test_read_records_spans_chunk_boundaries(tmp_path):
    path = tmp_path / "big.jsonl"
    records = [make_record("w", seq) for seq in range(3000)]  # ~3.7 MiB: several read chunks
    write_all(path, records)
    stats = ReadStats()
    assert list(read_records(path, stats)) == records
    assert stats == ReadStats(records=3000)


@settings(max_examples=50, deadline=None)
@given(
    texts=st.lists(st.one_of(st.none(), st.text(max_size=300)), min_size=1, max_size=20),
    times=st.floats(min_value=0, max_value=4e9, allow_nan=False),
)
def test_any_error_text_round_trips(tmp_path_factory, texts, times):
    path = tmp_path_factory.mktemp("rt") / "ledger.jsonl"
    records = [
        {"type": "publish", "id": str(n), "kind": "k", "t": times, "outcome": "error", "error": text}
        for n, text in enumerate(texts)
    ]
    write_all(path, records)
    assert list(read_records(path)) == records


# --- torn and corrupt lines -----------------------------------------------------------------


def test_torn_trailing_line_is_skipped(tmp_path):
    path = tmp_path / "ledger.jsonl"
    records = [start_record(str(n)) for n in range(5)]
    write_all(path, records)
    with path.open("ab") as handle:
        handle.write(encode_record(start_record("torn"))[:-20])
    stats = ReadStats()
    assert list(read_records(path, stats)) == records
    assert stats == ReadStats(records=5, torn_tails=1, corrupt_lines=0)


def test_complete_json_without_newline_is_still_a_torn_line(tmp_path):
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(encode_record(start_record("a")) + encode_record(start_record("b"))[:-1])
    stats = ReadStats()
    assert [record["id"] for record in read_records(path, stats)] == ["a"]
    assert stats.torn_tails == 1


def test_file_with_only_a_torn_line_yields_nothing(tmp_path):
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(b'{"type":"start","id":"x","ki')
    stats = ReadStats()
    assert list(read_records(path, stats)) == []
    assert stats == ReadStats(records=0, torn_tails=1)


def test_corrupt_and_blank_lines_are_skipped_and_counted(tmp_path):
    path = tmp_path / "ledger.jsonl"
    good = [start_record(str(n)) for n in range(4)]
    lines = [encode_record(good[0]), b"\n", b'{"type":"sta\n', encode_record(good[1]), b"[1, 2]\n"]
    lines += [encode_record(good[2]), b"\xff\xfe\n", encode_record(good[3])]
    path.write_bytes(b"".join(lines))
    stats = ReadStats()
    assert list(read_records(path, stats)) == good
    assert stats == ReadStats(records=4, torn_tails=0, corrupt_lines=3)


def test_new_writer_ends_a_torn_line_so_new_records_stay_whole(tmp_path):
    path = tmp_path / "ledger.jsonl"
    write_all(path, [start_record("before")])
    with path.open("ab") as handle:
        handle.write(encode_record(start_record("killed"))[:30])
    write_all(path, [start_record("after")])
    stats = ReadStats()
    assert [record["id"] for record in read_records(path, stats)] == ["before", "after"]
    assert stats == ReadStats(records=2, torn_tails=0, corrupt_lines=1)


# --- SIGKILL of real writer processes --------------------------------------------------------


def _spawn_writer(path: Path, name: str, fsync: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(APP_DIR), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(
        [sys.executable, __file__, str(path), name, fsync],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )


def _await_acks(process: subprocess.Popen, count: int) -> int:
    """Read the child's acknowledgements until *count*; return the last seq acknowledged."""
    last = -1
    while last + 1 < count:
        line = process.stdout.readline()
        assert line, f"writer exited early with {process.wait()}"
        last = int(line)
    return last


def _kill(process: subprocess.Popen) -> None:
    assert process.poll() is None, "the writer must still be writing when it is killed"
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    process.stdout.close()


def _seqs_by_writer(path: Path, killed: int = 0) -> dict[str, list[int]]:
    """Each writer's sequence numbers; a killed writer may leave one torn fragment before another's record."""
    stats = ReadStats()
    seqs: dict[str, list[int]] = {}
    for record in read_records(path, stats):
        writer, seq = record["id"].rsplit("-", 1)
        assert record == make_record(writer, int(seq)), "a record came back altered"
        seqs.setdefault(writer, []).append(int(seq))
    assert stats.corrupt_lines == 0
    assert stats.torn_fragments <= killed
    return seqs


@pytest.mark.parametrize("fsync", ["never", "batch"])
def test_sigkill_mid_stream_loses_no_record_already_written(tmp_path, fsync):
    path = tmp_path / "worker.jsonl"
    process = _spawn_writer(path, "w0", fsync)
    try:
        acked = _await_acks(process, 2000)
    finally:
        _kill(process)
    seqs = _seqs_by_writer(path)["w0"]
    assert seqs == list(range(len(seqs))), "records lost or reordered"
    assert len(seqs) >= acked + 1


def test_processes_sharing_one_file_are_killed_without_mixing_lines(tmp_path):
    path = tmp_path / "shared.jsonl"
    processes = {f"w{n}": _spawn_writer(path, f"w{n}", "never") for n in range(4)}
    acked = {}
    try:
        for name, process in processes.items():
            acked[name] = _await_acks(process, 800)
    finally:
        for process in processes.values():
            _kill(process)
    seqs = _seqs_by_writer(path, killed=len(processes))
    assert set(seqs) == set(processes)
    for name, written in seqs.items():
        assert written == list(range(len(written))), f"{name}: records lost or reordered"
        assert len(written) >= acked[name] + 1


def test_a_torn_fragment_before_another_writers_record_loses_only_itself(tmp_path):
    path = tmp_path / "shared.jsonl"
    whole, other = make_record("w1", 7), make_record("w2", 3)
    torn = json.dumps(make_record("w0", 5), separators=(",", ":")).encode()[:37]
    path.write_bytes(torn + json.dumps(whole).encode() + b"\n" + json.dumps(other).encode() + b"\n")
    stats = ReadStats()
    assert list(read_records(path, stats)) == [whole, other]
    assert (stats.torn_fragments, stats.corrupt_lines, stats.records) == (1, 0, 2)
    path.write_bytes(b'{"id": "x", "nested": {"a": 1}\n')  # a nested object alone is not a record
    stats = ReadStats()
    assert list(read_records(path, stats)) == [] and stats.corrupt_lines == 1


# --- fsync policies --------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fsync_calls(monkeypatch):
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(ledger.os, "fsync", counting_fsync)
    return calls


@pytest.fixture
def existing(tmp_path):
    path = tmp_path / "ledger.jsonl"
    path.touch()
    return path


def test_fsync_always_syncs_after_every_record(existing, fsync_calls):
    writer = LedgerWriter(existing, fsync="always")
    for n in range(5):
        writer.write(start_record(str(n)))
        assert len(fsync_calls) == n + 1
    writer.close()
    assert len(fsync_calls) == 6


def test_fsync_never_never_syncs(existing, fsync_calls):
    with LedgerWriter(existing, fsync="never") as writer:
        for n in range(5):
            writer.write(start_record(str(n)))
    assert fsync_calls == []


def test_fsync_batch_syncs_at_most_once_per_interval(existing, fsync_calls):
    clock = FakeClock()
    writer = LedgerWriter(existing, fsync="batch", batch_interval_s=1.0, clock=clock)
    expected_after = {0.0: 0, 0.5: 0, 0.99: 0, 1.0: 1, 1.2: 1, 1.9: 1, 2.0: 2, 5.0: 3, 5.5: 3}
    for now, expected in expected_after.items():
        clock.now = now
        writer.write(start_record(str(now)))
        assert len(fsync_calls) == expected, f"at t={now}"
    writer.close()
    assert len(fsync_calls) == 4  # close syncs what the last interval held


def test_sync_forces_an_fsync_and_restarts_the_interval(existing, fsync_calls):
    clock = FakeClock()
    writer = LedgerWriter(existing, fsync="batch", batch_interval_s=1.0, clock=clock)
    clock.now = 0.8
    writer.sync()
    clock.now = 1.5
    writer.write(start_record("a"))
    assert len(fsync_calls) == 1
    clock.now = 1.8
    writer.write(start_record("b"))
    assert len(fsync_calls) == 2
    writer.close()


@pytest.mark.parametrize(("fsync", "directory_syncs"), [("always", 1), ("batch", 1), ("never", 0)])
def test_creating_a_ledger_syncs_its_directory_unless_never(tmp_path, fsync_calls, fsync, directory_syncs):
    writer = LedgerWriter(tmp_path / "new.jsonl", fsync=fsync)
    assert len(fsync_calls) == directory_syncs
    writer.close()


# --- misuse ----------------------------------------------------------------------------------


def test_unknown_fsync_policy_is_refused(tmp_path):
    with pytest.raises(ValueError, match="fsync must be one of"):
        LedgerWriter(tmp_path / "x.jsonl", fsync="sometimes")


def test_writing_after_close_is_refused_and_close_is_idempotent(tmp_path):
    writer = LedgerWriter(tmp_path / "x.jsonl", fsync="never")
    writer.close()
    writer.close()
    assert writer.closed
    with pytest.raises(ValueError, match="closed"):
        writer.write(start_record("a"))


def _child_main(path: str, name: str, fsync: str) -> None:
    """Write records forever, acknowledging each on stdout once it is written."""
    writer = LedgerWriter(path, fsync=fsync)
    seq = 0
    while True:
        writer.write(make_record(name, seq))
        sys.stdout.write(f"{seq}\n")
        sys.stdout.flush()
        seq += 1


if __name__ == "__main__":
    _child_main(*sys.argv[1:4])


def test_a_huge_record_and_a_file_without_newlines_are_skipped_and_counted(tmp_path, monkeypatch):
    """10 MB in one record, and 30 MB with no newline at all: skipped and counted, never held whole."""
    huge = tmp_path / "huge.jsonl"
    record = {"type": "start", "id": "a", "t": 1.0}
    huge.write_bytes(encode_record(record) + b'{"type": "x", "blob": "' + b"x" * 10_000_000 + b'"}\n'
                     + encode_record({**record, "id": "b"}))
    endless = tmp_path / "endless.jsonl"
    endless.write_bytes(b"y" * 30_000_000)
    parsed: list[int] = []
    parse = ledger._parse_lines
    monkeypatch.setattr(ledger, "_parse_lines", lambda lines, stats: parsed.append(max(map(len, lines), default=0))
                        or parse(lines, stats))
    stats = ReadStats()
    records = list(read_records([huge, endless], stats))
    assert [r["id"] for r in records] == ["a", "b"]
    assert stats.oversized_lines == 2 and stats.torn_tails == 0
    assert max(parsed) <= ledger.MAX_READ_LINE_BYTES  # the huge line never reached the parser
