"""The node's ledger work in one process (chaoslab.node.ledgers): empty the ledgers, pack them for the fetch."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from chaoslab.node import ledgers


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_reset_empties_the_ledgers_that_exist_and_creates_none(tmp_path, capsys):
    task, events = tmp_path / "worker-1.jsonl", tmp_path / "events.jsonl"
    task.write_text('{"type": "start"}\n')
    events.write_text('{"type": "fault"}\n')
    assert ledgers.main(["reset", "--no-clock", "--events", str(events), "--ledger", str(task),
                         "--ledger", str(tmp_path / "absent.jsonl")]) == 0
    assert task.read_text() == "" and events.read_text() == ""
    assert not (tmp_path / "absent.jsonl").exists()
    assert json.loads(capsys.readouterr().out)["emptied"] == [str(task), str(events)]


def test_collect_records_the_live_workers_and_packs_each_file_under_its_name(tmp_path, capsys):
    task, events, settings = tmp_path / "worker-1.jsonl", tmp_path / "events.jsonl", tmp_path / "w.settings.json"
    task.write_text('{"type": "start", "id": "a"}\n')
    events.write_text('{"type": "clock"}\n')
    settings.write_text('{"worker_concurrency": 2}')
    archive = tmp_path / "collected" / "ledgers.tar"
    assert ledgers.main(["collect", "--no-clock", "--node", "worker-1", "--events", str(events), "--alive", str(task),
                         "--archive", str(archive), f"--file=worker-1.jsonl={task}",
                         f"--file=worker-1.events.jsonl={events}", f"--file=worker-1.settings.json={settings}",
                         f"--file=gone.jsonl={tmp_path / 'gone.jsonl'}"]) == 0
    assert json.loads(capsys.readouterr().out)["packed"] == [
        "worker-1.jsonl", "worker-1.events.jsonl", "worker-1.settings.json"]
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["worker-1.jsonl", "worker-1.events.jsonl", "worker-1.settings.json"]
        packed = tar.extractfile("worker-1.jsonl").read().decode().splitlines()  # type: ignore[union-attr]
    # the alive record went into the ledger before it was packed
    assert packed == lines(task) and json.loads(packed[-1])["type"] == "alive"
    assert json.loads(packed[-1])["node"] == "worker-1"
    assert not archive.with_name("ledgers.tar.part").exists()


@pytest.mark.parametrize("given", ["no-equals", "=/x", "../up=/x", "a/b=/x", ".hidden=/x"])
def test_a_name_that_is_not_a_plain_file_name_is_refused(tmp_path, given, capsys):
    with pytest.raises(SystemExit):
        ledgers.main(["collect", "--no-clock", "--events", str(tmp_path / "e"), "--archive", str(tmp_path / "a.tar"),
                      f"--file={given}"])
    assert "is not NAME=PATH" in capsys.readouterr().err
    assert not (tmp_path / "a.tar").exists()


def test_the_controller_unpacks_what_a_node_packed_and_refuses_anything_else(tmp_path):
    from chaoslab.experiment.lab import unpack_ledgers

    node = tmp_path / "node"
    node.mkdir()
    (node / "publish.jsonl").write_text('{"type": "publish"}\n')
    dest = tmp_path / "dest"
    dest.mkdir()
    ledgers.pack({"publish.jsonl": node / "publish.jsonl"}, dest / "monitor.ledgers.tar")
    unpack_ledgers(dest)
    assert sorted(path.name for path in dest.iterdir()) == ["publish.jsonl"]
    assert (dest / "publish.jsonl").read_text() == '{"type": "publish"}\n'

    with tarfile.open(dest / "evil.ledgers.tar", "w") as tar:
        tar.add(node / "publish.jsonl", arcname="../escaped.jsonl")
    with pytest.raises(ValueError, match=r"^evil\.ledgers\.tar: '\.\./escaped\.jsonl' is not a plain ledger file$"):
        unpack_ledgers(dest)
    assert not (tmp_path / "escaped.jsonl").exists()
