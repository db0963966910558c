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
    assert profile.delivery_mode == 2  # persistent unless the run says otherwise
    assert profile_from_mapping({"rate": 1, "mix": [{"kind": "noop"}], "delivery_mode": 1}).delivery_mode == 1
    with pytest.raises(ValueError, match="persistent or transient"):
        profile_from_mapping({"rate": 1, "mix": [{"kind": "noop"}], "delivery_mode": 0})
    with pytest.raises(ValueError, match="rate > 0"):
        LoadGenerator(LoadProfile(rate=0, mix=MIX), Publisher("redis://127.0.0.1:1/0", 0.1), None)


def test_canvases_are_published_through_celery_with_their_ids_known_in_advance(tmp_path):
    from base64 import b64decode

    from chaoslab.node.canvas_publisher import CanvasPublisher
    from chaoslab.node.load_mix import mix_item

    mix = tuple(mix_item(data) for data in (
        {"chain": [{"task": "shop.reserve", "args": [1]}, {"task": "shop.charge"},
                   {"task": "shop.ship", "options": {"eta": "1h"}}]},
        {"group": [{"task": "shop.line"}, {"task": "shop.line"}]},
        {"chord": [{"task": "shop.line"}, {"task": "shop.line"}], "callback": {"task": "shop.total"},
         "immutable": True},
        {"task": "shop.remind", "options": {"countdown": "1h", "expires": "2h"}},
    ))
    with local_redis() as server:
        profile = LoadProfile(rate=40, mix=mix, seed=1, publish_timeout=1.0, duration=0.5)
        with LedgerWriter(tmp_path / "p.jsonl", "never") as writer:
            stats = LoadGenerator(profile, Publisher(server.url(), 1.0), writer,
                                  canvases=CanvasPublisher.bounded_to(server.url(), server.url(), 1.0)).run()
        queued = {message["headers"]["id"]: message for message in map(json.loads,
                                                                        server.client().lrange("celery", 0, -1))}
        chord_sizes = {key.decode(): int(server.client().get(key)) for key in server.client().keys("*.s")}
        subscribed = server.client().pubsub_channels()
    assert subscribed == []  # a publisher never subscribes to the results of what it publishes
    records = list(read_records([tmp_path / "p.jsonl"]))
    workflows = [record for record in records if record["type"] == "workflow"]
    publishes = {record["id"]: record for record in records if record["type"] == "publish"}
    assert stats.published == 20 and stats.errors == 0
    assert {w["shape"] for w in workflows} == {"chain", "group", "chord"}
    for flow in workflows:
        ids = [task_id for task_id, _kind in flow["tasks"]]
        sent = ids[:1] if flow["shape"] == "chain" else ids
        # the load publishes what it sends itself, and the broker holds exactly that, under the ids recorded
        assert set(sent) <= set(publishes) and set(sent) <= set(queued) and flow["outcome"] == "ok"
        body = json.loads(b64decode(queued[sent[0]]["body"]))
        embed = body[2]
        if flow["shape"] == "chain":  # the later links ride in the first link's message, last first
            assert [link["options"]["task_id"] for link in embed["chain"]] == ids[:0:-1]
            # an eta is a moment (an hour after the load's start), not a countdown from when the link is published
            assert "countdown" not in embed["chain"][0]["options"] and embed["chain"][0]["options"]["eta"]
            assert not set(ids[1:]) & set(queued)
        if flow["shape"] == "chord":  # each header task carries the callback, its size is in the result backend
            assert embed["chord"]["options"]["task_id"] == flow["callback"][0] and embed["chord"]["immutable"]
            group_id = queued[sent[0]]["headers"]["group"]
            assert chord_sizes[f"celery-taskset-meta-{group_id}.s"] == 2
    single = next(message for message in queued.values() if message["headers"]["task"] == "shop.remind")
    assert single["headers"]["eta"] and single["headers"]["expires"] > single["headers"]["eta"]


def test_a_canvas_publish_to_a_dead_broker_is_recorded_as_failed_in_bounded_time(tmp_path):
    from chaoslab.node.canvas_publisher import CanvasPublisher
    from chaoslab.node.load_mix import mix_item

    with local_redis() as server:
        url = server.url()
    mix = (mix_item({"chain": [{"task": "shop.reserve"}, {"task": "shop.charge"}]}),)
    profile = LoadProfile(rate=4, mix=mix, seed=1, publish_timeout=0.5, duration=0.5)
    with LedgerWriter(tmp_path / "p.jsonl", "never") as writer:
        start = time.monotonic()
        canvases = CanvasPublisher.bounded_to(url, url, 0.5)
        stats = LoadGenerator(profile, Publisher(url, 0.5), writer, canvases=canvases).run()
        elapsed = time.monotonic() - start
    records = list(read_records([tmp_path / "p.jsonl"]))
    assert stats.errors == 2 and elapsed < 5
    assert {record["outcome"] for record in records} == {"error"}
    assert [record["type"] for record in records].count("workflow") == 2


def test_the_celery_publisher_goes_through_the_apps_own_apply_async(tmp_path, monkeypatch):
    from chaoslab.node import app_under_test
    from chaoslab.node.canvas_publisher import CanvasPublisher
    from chaoslab.node.celery_publisher import CeleryPublisher
    from chaoslab.node.config import LabConfig
    from chaoslab.node.load_mix import mix_item

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "examples" / "shop"))
    mix = tuple(mix_item(data) for data in (
        {"task": "shop.charge_payment", "args": [{"order": 1}], "options": {"countdown": "30s"}},
        {"task": "shop.not_in_the_app", "options": {"priority": 9}},
        {"chain": [{"task": "shop.reserve_stock", "args": [1]}, {"task": "shop.charge_payment"}]},
    ))
    with local_redis() as server:
        lab = LabConfig(node="monitor", broker_url=server.url(0), result_backend=server.url(1), app="shop.celery:app")
        app = app_under_test.load(lab)
        assert app.main == "shop" and app.conf.broker_url == server.url(0)  # the app's own, pointed at the lab
        profile = LoadProfile(rate=30, mix=mix, seed=2, publish_timeout=1.0, duration=0.5, publisher="celery")
        with LedgerWriter(tmp_path / "p.jsonl", "never") as writer:
            stats = LoadGenerator(profile, Publisher(server.url(), 1.0), writer, canvases=CanvasPublisher.through(app),
                                  tasks=CeleryPublisher(app)).run()
        lists = [key for key in server.client().keys("celery*") if key.startswith(b"celery")]
        queued = {message["headers"]["id"]: message for key in lists
                  for message in map(json.loads, server.client().lrange(key, 0, -1))}
        prioritised = {json.loads(raw)["headers"]["task"]
                       for raw in server.client().lrange(b"celery\x06\x169", 0, -1)}
    records = [record for record in read_records([tmp_path / "p.jsonl"]) if record["type"] == "publish"]
    assert prioritised == {"shop.not_in_the_app"}  # kombu's Redis transport keeps a list per priority
    assert stats.published == 15 and stats.errors == 0 and {r["outcome"] for r in records} == {"ok"}
    assert {r["id"] for r in records} == set(queued)
    by_task = {message["headers"]["task"] for message in queued.values()}
    assert by_task == {"shop.charge_payment", "shop.not_in_the_app", "shop.reserve_stock"}
    charge = next(m for m in queued.values() if m["headers"]["task"] == "shop.charge_payment")
    assert charge["headers"]["eta"] and charge["headers"]["chaoslab_sent"]


def test_the_celery_publisher_reports_what_the_apps_producer_raised(tmp_path, monkeypatch):
    from chaoslab.node import app_under_test
    from chaoslab.node.celery_publisher import CeleryPublisher
    from chaoslab.node.config import LabConfig
    from chaoslab.node.load_mix import mix_item

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "examples" / "shop"))
    with local_redis() as server:
        url = server.url()
    app = app_under_test.load(LabConfig(node="monitor", broker_url=url, result_backend=url, app="shop.celery:app"))
    result = CeleryPublisher(app).publish(mix_item({"task": "shop.reserve_stock", "args": [1]}), "id-1")
    assert result.outcome == "error" and "OperationalError" in (result.error or "")


def test_generated_arguments_are_made_for_each_task_from_the_seed(tmp_path):
    from base64 import b64decode

    from chaoslab.node.load_mix import mix_item

    mix = (mix_item({"task": "shop.charge", "args": [{"$seq": 100}], "kwargs": {"ref": {"$id": "r-"}}}),
           mix_item({"task": "shop.plain", "args": [1]}))

    def bodies(seed: int) -> list[tuple[str, list, dict]]:
        with local_redis() as server:
            profile = LoadProfile(rate=100, mix=mix, seed=seed, publish_timeout=1.0, duration=0.3)
            LoadGenerator(profile, Publisher(server.url(), 1.0), None).run()
            messages = [json.loads(raw) for raw in reversed(server.client().lrange("celery", 0, -1))]
        return [(m["headers"]["task"], *json.loads(b64decode(m["body"]))[:2]) for m in messages]

    first = bodies(5)
    charges = [(args, kwargs) for task, args, kwargs in first if task == "shop.charge"]
    assert len(charges) > 10 and all(kwargs["ref"].startswith("r-") for _args, kwargs in charges)
    assert len({kwargs["ref"] for _args, kwargs in charges}) == len(charges)
    seqs = [args[0] for args, _kwargs in charges]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs) and seqs[0] >= 100  # numbered in publish order
    assert {tuple(args) for task, args, _kwargs in first if task == "shop.plain"} == {(1,)}
    assert bodies(5) == first  # the same seed publishes the same values


def test_a_trace_is_replayed_in_its_own_time(tmp_path):
    trace = tmp_path / "trace.jsonl"
    offsets = [0.0, 0.05, 0.05, 0.3, 0.6]
    trace.write_text("".join(json.dumps({"offset": offset, "task": f"shop.t{index}", "args": [index]}) + "\n"
                             for index, offset in reversed(list(enumerate(offsets)))), encoding="utf-8")
    # with no duration the generator idles after the trace until stopped (a service); a run gives it one
    assert profile_from_mapping({"replay": str(trace)}).total == 5
    profile = profile_from_mapping({"replay": str(trace), "publish_timeout": 1.0}, duration=10.0)
    assert profile.total == 5 and profile.rate == 0
    with local_redis() as server, LedgerWriter(tmp_path / "p.jsonl", "never") as writer:
        start = time.time()
        stats = LoadGenerator(profile, Publisher(server.url(), 1.0), writer).run()
        elapsed = time.time() - start
        queued = [json.loads(raw)["headers"]["task"] for raw in reversed(server.client().lrange("celery", 0, -1))]
    records = list(read_records([tmp_path / "p.jsonl"]))
    # in order of offset, lines of the same offset in the file's order (written last first here)
    assert stats.published == 5 and queued == ["shop.t0", "shop.t2", "shop.t1", "shop.t3", "shop.t4"]
    assert 0.6 <= elapsed < 1.2
    due = [record["scheduled"] - records[0]["scheduled"] for record in records]
    assert due == pytest.approx(offsets, abs=1e-6)  # each task due at its offset
    assert all(record["t"] >= record["scheduled"] - 0.01 for record in records)  # none went out early
    short = profile_from_mapping({"replay": str(trace)}, duration=0.2)
    assert short.total == 3  # a run shorter than the trace publishes what falls in it


def test_a_replayed_trace_plays_once_and_the_generator_idles_until_stopped(tmp_path):
    import threading

    trace = tmp_path / "trace.jsonl"
    trace.write_text("".join(json.dumps({"offset": 0.05 * i, "kind": "noop"}) + "\n" for i in range(3)),
                     encoding="utf-8")
    with local_redis() as server:
        generator = LoadGenerator(profile_from_mapping({"replay": str(trace)}), Publisher(server.url(), 1.0), None)
        thread = threading.Thread(target=generator.run)
        thread.start()
        time.sleep(0.6)
        assert thread.is_alive() and server.client().llen("celery") == 3  # done with the trace, not exited
        generator.stop()
        thread.join(timeout=5)
        assert not thread.is_alive() and server.client().llen("celery") == 3


def test_publish_options_queue_and_eta(tmp_path):
    from datetime import datetime

    from chaoslab.node.load_mix import mix_item

    mix = (mix_item({"task": "shop.remind", "options": {"eta": "30s", "queue": "reminders"}}),
           mix_item({"task": "shop.charge"}))
    with local_redis() as server:
        profile = LoadProfile(rate=50, mix=mix, seed=4, publish_timeout=1.0, duration=0.5)
        started = time.time()
        stats = LoadGenerator(profile, Publisher(server.url(), 1.0), None).run()
        reminders = [json.loads(raw) for raw in server.client().lrange("reminders", 0, -1)]
        default = [json.loads(raw) for raw in server.client().lrange("celery", 0, -1)]
    assert stats.published == 25 and len(reminders) + len(default) == 25
    assert {m["headers"]["task"] for m in reminders} == {"shop.remind"}
    assert {m["headers"]["task"] for m in default} == {"shop.charge"}
    assert {m["properties"]["delivery_info"]["routing_key"] for m in reminders} == {"reminders"}
    etas = [datetime.fromisoformat(m["headers"]["eta"]).timestamp() for m in reminders]
    # every reminder due at the same moment, 30 s after the load started, whenever it was published
    assert max(etas) - min(etas) < 0.05 and abs(min(etas) - (started + 30)) < 0.2


def test_generated_values_follow_the_schedule_not_the_batches_and_a_trace_is_plain_data(tmp_path):
    from base64 import b64decode

    from chaoslab.node.load_mix import mix_item

    mix = (mix_item({"task": "shop.a", "args": [{"$seq": 0}], "options": {"queue": "q1"}}),
           mix_item({"task": "shop.b", "args": [{"$seq": 0}], "options": {"queue": "q2"}}))
    with local_redis() as server, LedgerWriter(tmp_path / "p.jsonl", "never") as writer:
        LoadGenerator(LoadProfile(rate=200, mix=mix, seed=3, publish_timeout=1.0, duration=0.3),
                      Publisher(server.url(), 1.0), writer).run()
        seq = {json.loads(raw)["headers"]["id"]: json.loads(b64decode(json.loads(raw)["body"]))[0][0]
               for key in ("q1", "q2") for raw in server.client().lrange(key, 0, -1)}
    order = [record["id"] for record in read_records([tmp_path / "p.jsonl"])]
    by_schedule = sorted(order, key=lambda task_id: next(r["scheduled"] for r in read_records(
        [tmp_path / "p.jsonl"]) if r["id"] == task_id))
    assert [seq[task_id] for task_id in by_schedule] == list(range(len(seq)))  # numbered in the schedule's order

    trace = tmp_path / "trace.jsonl"
    trace.write_text(json.dumps({"offset": 0, "task": "shop.a", "args": [{"$int": 5}]}) + "\n", encoding="utf-8")
    with local_redis() as server:
        LoadGenerator(profile_from_mapping({"replay": str(trace)}, duration=1.0), Publisher(server.url(), 1.0),
                      None).run()
        (raw,) = server.client().lrange("celery", 0, -1)
    assert json.loads(b64decode(json.loads(raw)["body"]))[0] == [{"$int": 5}]  # a recorded payload, as recorded
