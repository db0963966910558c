"""The load generator against a real redis-server on loopback: records, schedule, and broker outages."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from chaoslab.ledger import LedgerWriter, read_records
from chaoslab.node.loadgen import LoadGenerator, LoadProfile, MixEntry, profile_from_mapping
from chaoslab.node.publisher import Publisher

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from local_redis import local_redis

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server (make install)")

MIX = (MixEntry("noop", 3), MixEntry("sleep", 1, {"ms": 5}))


def generate(url: str, ledger: Path, rate: float, duration: float, timeout: float = 0.5, seed: int = 3):
    profile = LoadProfile(rate=rate, mix=MIX, seed=seed, publish_timeout=timeout, duration=duration)
    with LedgerWriter(ledger, "never") as writer:
        generator = LoadGenerator(profile, Publisher(url, timeout), writer)
        start = time.monotonic()
        stats = generator.run()
        elapsed = time.monotonic() - start
    return stats, elapsed, list(read_records([ledger]))


def test_every_task_gets_an_id_and_a_publish_record_and_reaches_the_queue(tmp_path):
    with local_redis() as server:
        stats, elapsed, records = generate(server.url(), tmp_path / "p.jsonl", rate=200, duration=1.0)
        queued = [json.loads(raw) for raw in server.client().lrange("celery", 0, -1)]
    assert stats.published == len(records) == 200 and stats.errors == 0
    assert 0.9 <= elapsed <= 1.5
    ids = [record["id"] for record in records]
    assert len(set(ids)) == 200
    assert {record["outcome"] for record in records} == {"ok"}
    # The broker holds exactly those tasks, as Celery's protocol-2 messages.
    assert sorted(message["headers"]["id"] for message in queued) == sorted(ids)
    kinds = {message["headers"]["id"]: message["headers"]["task"] for message in queued}
    assert all(kinds[record["id"]] == f"chaoslab.{record['kind']}" for record in records)


def test_the_mix_follows_the_seed_and_the_weights(tmp_path):
    with local_redis() as server:
        _s1, _e1, first = generate(server.url(), tmp_path / "a.jsonl", rate=2000, duration=0.5, seed=11)
        _s2, _e2, second = generate(server.url(), tmp_path / "b.jsonl", rate=2000, duration=0.5, seed=11)
    assert [r["kind"] for r in first] == [r["kind"] for r in second]
    share = sum(r["kind"] == "noop" for r in first) / len(first)
    assert 0.68 <= share <= 0.82  # weights 3:1


def test_a_dead_broker_gives_error_records_and_the_schedule_goes_on(tmp_path):
    url = "redis://:x@127.0.0.1:1/0"  # nothing listens on port 1
    stats, elapsed, records = generate(url, tmp_path / "p.jsonl", rate=50, duration=1.0)
    assert len(records) == stats.published == 50
    assert {record["outcome"] for record in records} == {"error"}
    assert all(record["error"] for record in records)
    assert elapsed <= 2.0


def test_a_frozen_broker_gives_timeouts_bounded_by_the_publish_timeout(tmp_path):
    with local_redis() as server:
        pid = int(server.client().info("server")["process_id"])
        os.kill(pid, signal.SIGSTOP)
        try:
            stats, elapsed, records = generate(server.url(), tmp_path / "p.jsonl", rate=20, duration=1.0,
                                               timeout=0.3)
        finally:
            os.kill(pid, signal.SIGCONT)
    assert len(records) == 20
    assert {record["outcome"] for record in records} == {"timeout"}
    # Each blocked publish costs at most the timeout; late tasks go out together in the next batch.
    assert elapsed <= 1.0 + 0.3 * 5
    assert stats.max_lag <= 0.3 * 2 + 0.1


def test_profile_from_mapping_and_bad_profiles():
    profile = profile_from_mapping({"rate": 2, "mix": [{"kind": "cpu", "weight": 2, "args": {"limit": 10}}],
                                    "seed": 5, "publish_timeout": 1.5}, duration=3)
    assert profile.total == 6 and profile.mix[0] == MixEntry("cpu", 2.0, {"limit": 10})
    with pytest.raises(ValueError, match="rate > 0"):
        LoadGenerator(LoadProfile(rate=0, mix=MIX), Publisher("redis://127.0.0.1:1/0", 0.1), None)
