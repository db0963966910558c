"""The lab's RabbitMQ pieces against a real rabbitmq-server on loopback: the load generator's AMQP publisher (confirms,
unroutable messages, a broker that blocks publishers), and the runner's view of the broker (backlog, snapshot,
flush)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import amqp
import pytest

from chaoslab.experiment.lab_broker import CUT_ATTEMPTS, RabbitBroker
from chaoslab.experiment.rabbitmq_snapshot import CutBroken, unacked_of
from chaoslab.ledger import LedgerWriter, read_records
from chaoslab.node.amqp_publisher import AmqpPublisher, connection_params
from chaoslab.node.loadgen import LoadGenerator, LoadProfile, MixEntry
from chaoslab.node.publisher import for_broker

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from local_rabbitmq import available, local_rabbitmq

pytestmark = pytest.mark.skipif(not available(), reason="needs rabbitmq-server (make test-packages)")


@pytest.fixture(scope="module")
def broker():
    with local_rabbitmq() as server:
        declare(server, "celery")
        yield server


def declare(server, queue: str, **arguments) -> None:
    with amqp.Connection(**connection_params(server.url(), 5.0)) as connection:
        connection.channel().queue_declare(queue, durable=True, auto_delete=False, arguments=arguments or None)


def view(server) -> RabbitBroker:
    def unacked() -> int:
        return unacked_of(server.ctl("list_queues", "-p", server.vhost, "name", "messages_unacknowledged",
                                     "--formatter", "json"))

    return RabbitBroker(server.url(), server.management_port, unacked)


def test_an_amqp_url_picks_the_confirming_publisher_and_its_connection():
    publisher = for_broker("amqp://lab:s3cret@198.18.0.10:5672/chaoslab", 2.0)
    assert isinstance(publisher, AmqpPublisher)
    params = connection_params("amqp://lab:s%40cret@198.18.0.10/chaoslab", 2.0)
    assert (params["host"], params["userid"], params["password"], params["virtual_host"]) == (
        "198.18.0.10:5672", "lab", "s@cret", "chaoslab")
    assert params["connect_timeout"] == params["read_timeout"] == params["write_timeout"] == 2.0
    with pytest.raises(ValueError, match="not an AMQP broker URL"):
        connection_params("redis://198.18.0.10/0", 2.0)


def test_the_load_reaches_the_queue_as_celerys_messages_each_confirmed(broker, tmp_path):
    view(broker).flush()
    profile = LoadProfile(rate=200, mix=(MixEntry("noop", 3), MixEntry("sleep", 1, {"ms": 5})), seed=3,
                          publish_timeout=2.0, duration=1.0)
    with LedgerWriter(tmp_path / "p.jsonl", "never") as writer:
        stats = LoadGenerator(profile, for_broker(broker.url(), 2.0), writer).run()
    records = list(read_records([tmp_path / "p.jsonl"]))
    assert stats.published == len(records) == 200 and stats.errors == 0
    assert {record["outcome"] for record in records} == {"ok"}
    # the snapshot names every message, and reading them requeued them all
    snapshot = view(broker).snapshot(None, dict)
    assert sorted(snapshot.queued) == sorted(record["id"] for record in records)
    assert snapshot.queues == {"celery": 200} and snapshot.broker == "rabbitmq"
    assert view(broker).backlog() == (200, 0)
    with amqp.Connection(**connection_params(broker.url(), 5.0)) as connection:
        message = connection.channel().basic_get("celery", no_ack=True)
    headers = message.properties["application_headers"]
    assert message.properties["content_type"] == "application/json" and message.properties["delivery_mode"] == 2
    assert headers["task"] in ("chaoslab.noop", "chaoslab.sleep") and headers["id"] == message.properties[
        "correlation_id"]
    assert json.loads(message.body)[2] == {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    view(broker).flush()
    assert view(broker).backlog() == (0, 0)


def test_a_queue_that_does_not_exist_fails_the_publish_and_the_next_one_succeeds(broker):
    publisher = AmqpPublisher(broker.url(), 2.0)
    template = publisher.template("chaoslab.noop", {})
    failed = publisher.publish([template.render("lost-1")], queue="no-such-queue")
    assert failed.outcome == "error" and "NO_ROUTE" in (failed.error or "")
    assert publisher.publish([template.render("kept-1")]).outcome == "ok"
    assert "kept-1" in view(broker).snapshot(None, dict).queued
    view(broker).flush()


def test_a_broker_that_blocks_publishers_makes_a_bounded_timeout(broker):
    """A memory alarm (high watermark near zero) blocks publishing connections: the publish gives up within its
    timeout, and publishes again once the alarm clears."""
    publisher = AmqpPublisher(broker.url(), 1.0)
    template = publisher.template("chaoslab.noop", {})
    assert publisher.publish([template.render("before")]).outcome == "ok"
    broker.ctl("set_vm_memory_high_watermark", "0.0000001")
    try:
        time.sleep(2)
        start = time.monotonic()
        blocked = publisher.publish([template.render(f"blocked-{i}") for i in range(3)])
        elapsed = time.monotonic() - start
    finally:
        broker.ctl("set_vm_memory_high_watermark", "0.4")
    assert blocked.outcome == "timeout", blocked
    assert elapsed < 3.0
    deadline = time.monotonic() + 20
    while (after := publisher.publish([template.render("after")])).outcome != "ok" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert after.outcome == "ok"
    view(broker).flush()


def publish_three(server) -> None:
    """Three task messages, t0 to t2, in the emptied celery queue."""
    view(server).flush()
    publisher = AmqpPublisher(server.url(), 2.0)
    template = publisher.template("chaoslab.noop", {})
    assert publisher.publish([template.render(f"t{i}") for i in range(3)]).outcome == "ok"


def test_the_snapshot_names_what_workers_hold_and_counts_what_they_did_not(broker):
    """An unacknowledged message is named by its holder (the workers' inspect replies); one nobody names is counted."""
    publish_three(broker)
    with amqp.Connection(**connection_params(broker.url(), 5.0)) as connection:
        channel = connection.channel()
        held = channel.basic_get("celery", no_ack=False)  # delivered, not acknowledged
        named = view(broker).snapshot(None, lambda: {held.properties["correlation_id"]: "celery"})
        unnamed = view(broker).snapshot(None, dict)
    assert set(named.queued) == {"t1", "t2"} and set(named.reserved) == {"t0"} and named.unnamed_unacked == 0
    assert unnamed.reserved == {} and unnamed.unnamed_unacked == 1
    view(broker).flush()


@pytest.fixture(scope="module")
def impatient():
    """A broker whose channels give up on an unacknowledged delivery after 1 s (consumer_timeout), checked every
    100 ms, as a run's rabbitmq: settings can make the lab's."""
    with local_rabbitmq({"consumer_timeout": 1000}, "-rabbit channel_tick_interval 100") as server:
        declare(server, "celery")
        yield server


def slow_first(calls: list[int], slow: int) -> Callable[[], dict[str, str]]:
    """Workers that name nothing, and take 2.5 s (beyond the 1 s timeout) to say so the first *slow* times."""
    def held() -> dict[str, str]:
        calls.append(1)
        if len(calls) <= slow:
            time.sleep(2.5)
        return {}
    return held


def test_a_cut_whose_channel_the_consumer_timeout_closed_is_taken_again(impatient):
    """The first cut holds the ready messages longer than the consumer timeout: RabbitMQ closes its channel and
    requeues them before the workers have answered (one could have taken a message meanwhile), so that cut is not
    used; the second, quick enough, is. Every message is ready again afterwards."""
    publish_three(impatient)
    calls: list[int] = []
    state = view(impatient).snapshot(None, slow_first(calls, 1))
    assert len(calls) == 2
    assert sorted(state.queued) == ["t0", "t1", "t2"] and state.unnamed_unacked == 0 and state.reserved == {}
    assert view(impatient).backlog()[0] == 3


def test_a_cut_the_consumer_timeout_closes_each_time_is_a_one_line_error_that_says_why(impatient):
    publish_three(impatient)
    calls: list[int] = []
    with pytest.raises(CutBroken, match=f"closed the snapshot's channel before each of {CUT_ATTEMPTS} cuts had "
                                        r"ended \(the last took \d+\.\d s: .*timed out.*consumer_timeout") as err:
        view(impatient).snapshot(None, slow_first(calls, CUT_ATTEMPTS))
    assert len(calls) == CUT_ATTEMPTS and "\n" not in str(err.value)
    assert view(impatient).backlog()[0] == 3  # all requeued


def test_a_slow_cut_of_a_broker_whose_queues_are_empty_holds_nothing_the_timeout_could_close(impatient):
    view(impatient).flush()
    calls: list[int] = []
    state = view(impatient).snapshot(None, slow_first(calls, 1))
    assert len(calls) == 1 and state.queued == {}


def test_a_restart_changes_the_brokers_identity_and_keeps_only_what_the_queues_type_keeps(broker):
    """A new broker process is a restart (its identity and start move); asking twice without one is not. The restart
    drops the transient messages (task_default_delivery_mode) of a durable classic queue and keeps its persistent
    ones; a quorum queue keeps both."""
    view(broker).flush()
    declare(broker, "celery-q", **{"x-queue-type": "quorum"})
    sent = {}
    for mode in (2, 1):
        publisher = for_broker(broker.url(), 2.0, delivery_mode=mode)
        template = publisher.template("chaoslab.noop", {})
        for queue in ("celery", "celery-q"):
            ids = [f"{queue}-{mode}-{i}" for i in range(3)]
            assert publisher.publish([template.render(task) for task in ids], queue=queue).outcome == "ok"
            sent[queue, mode] = ids
    kept = view(broker).snapshot(None, dict)
    assert kept.queue_types == {"celery": "classic durable", "celery-q": "quorum durable"}
    assert sorted(kept.queued) == sorted(task for ids in sent.values() for task in ids)
    before = view(broker).info()
    assert view(broker).info().run_id == before.run_id
    assert view(broker).snapshot(before, dict).broker_started is None
    broker.restart()
    after = view(broker).info()
    assert after.started > before.started and after.run_id != before.run_id
    started = view(broker).snapshot(before, dict).broker_started
    assert started is not None and abs(started - after.started) < 2  # now less the uptime its statistics last read
    declare(broker, "celery")
    survived = view(broker).snapshot(None, dict).queued
    assert sorted(survived) == sorted(sent["celery", 2] + sent["celery-q", 2] + sent["celery-q", 1])
    with amqp.Connection(**connection_params(broker.url(), 5.0)) as connection:
        connection.channel().queue_delete("celery-q")
    view(broker).flush()
