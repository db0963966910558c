"""The checker on synthetic histories and broker snapshots with known answers, and on generated ground truth."""

import random
from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaoslab.analysis.checker import (
    CLASSES,
    FaultWindow,
    Phase,
    RecoveryParams,
    check,
    delivery_guarantee,
    fault_windows,
    latency_stats,
    nearest_rank,
)
from chaoslab.broker_state import BrokerState, TaskMeta
from chaoslab.clock import Correction

PHASES = [Phase("baseline", 0, 30), Phase("fault", 30, 60), Phase("recovery", 60, 100)]
RUN_END = 100.0
LIVE_PS = 100.0  # when the live worker processes of the alive records started
DEAD_PS = 50.0  # an earlier process that had the same pid


# --- record builders ------------------------------------------------------------------------


def pub(task_id, t, outcome="ok", kind="noop", scheduled=None, node="monitor"):
    error = None if outcome == "ok" else "ConnectionError"
    return {"type": "publish", "id": task_id, "kind": kind, "node": node,
            "scheduled": t if scheduled is None else scheduled, "t": t, "outcome": outcome, "error": error}


def received(task_id, t, node="w1", pid=1, ps=None):
    return {"type": "received", "id": task_id, "node": node, "pid": pid, "ps": ps, "t": t}


def start(task_id, t, attempt=0, node="w1", pid=1, redelivered=False, kind="noop", ps=None):
    return {"type": "start", "id": task_id, "kind": kind, "node": node, "pid": pid, "ps": ps, "attempt": attempt,
            "redelivered": redelivered, "received": None, "t": t}


def end(task_id, t, outcome="success", attempt=0, node="w1", pid=1, kind="noop", ps=None, error_type=None):
    if error_type is None and outcome != "success":
        error_type = "RuntimeError"
    return {"type": "end", "id": task_id, "kind": kind, "node": node, "pid": pid, "ps": ps, "attempt": attempt,
            "t": t, "outcome": outcome, "error_type": error_type}


def alive(node, *procs):
    """An alive record: procs are (pid, process start) pairs."""
    return {"type": "alive", "node": node, "pids": [pid for pid, _ in procs], "procs": [list(p) for p in procs],
            "t": RUN_END}


def fault_event(event, t, fault="worker-kill", node="w1"):
    return {"type": "fault", "event": event, "fault": fault, "node": node, "t": t}


def snap(queued=(), reserved=(), results=None, broker_started=None, evicted=0):
    return BrokerState(taken=RUN_END + 1, queued=dict.fromkeys(queued, "celery"),
                       reserved=dict.fromkeys(reserved, 99.0), results=dict(results or {}),
                       result_lookups=len(results or {}), broker_started=broker_started, evicted_keys=evicted)


def failure(exc_type, worker="celery@w1", done=80.0):
    return TaskMeta("FAILURE", exc_type, worker, done)


def success(worker="celery@w1", done=80.0):
    return TaskMeta("SUCCESS", None, worker, done)


def run(records, phases=PHASES, faults=(), run_end=RUN_END, **kwargs):
    return check(records, phases, faults, run_end, **kwargs)


def only_task(summary):
    (task,) = summary.tasks
    return task


def judged(records, snapshot=None, **kwargs):
    """(class, cause) of the only task."""
    task = only_task(run(records, snapshot=snapshot, **kwargs))
    return task.cls, task.cause


# --- one task per class ---------------------------------------------------------------------


def test_completed_task_and_its_latencies():
    summary = run([pub("a", 1.0, scheduled=0.9), start("a", 1.25), end("a", 2.0)])
    task = only_task(summary)
    assert (task.cls, task.executions, task.final, task.successes, task.retries) == ("completed", 1, "success", 1, 0)
    assert task.queue_wait == pytest.approx(0.25)  # from when the publish returned
    assert task.run_time == pytest.approx(0.75)
    assert task.end_to_end == pytest.approx(1.1)  # from when it was due: the schedule lag counts
    assert (task.publish_t, task.published_at) == (0.9, 1.0)
    assert (task.first_start, task.last_end, task.completed_at, task.finished_at) == (1.25, 2.0, 2.0, 2.0)
    assert (task.nodes, task.phase, task.cause) == ("w1", "baseline", None)


def test_duplicated_by_redelivery_of_the_same_attempt_that_completed():
    records = [pub("a", 1.0), start("a", 2.0, node="w1"), start("a", 40.0, node="w2"), end("a", 41.0, node="w2")]
    summary = run(records, snapshot=snap())
    task = only_task(summary)
    assert (task.cls, task.executions, task.final) == ("duplicated_completed", 2, "success")
    assert task.nodes == "w1;w2"
    assert task.queue_wait == pytest.approx(1.0)  # of the first execution
    assert task.run_time == pytest.approx(1.0)  # of the successful one
    assert task.end_to_end == pytest.approx(40.0)
    assert summary.duplicated == 1
    assert summary.delivery.redelivered == 1


def test_redelivered_flag_marks_redelivery_even_with_distinct_attempts():
    records = [pub("a", 1.0), start("a", 2), end("a", 3, "retry"), start("a", 5, attempt=1, redelivered=True)]
    records.append(end("a", 6, attempt=1))
    assert only_task(run(records)).cls == "duplicated_completed"


def test_redelivered_flag_on_a_single_execution_is_not_a_duplicate():
    summary = run([pub("a", 1.0), start("a", 2.0, redelivered=True), end("a", 3.0)])
    assert only_task(summary).cls == "completed"
    assert summary.delivery.guarantee == "exactly-once"


def test_retries_the_task_asked_for_are_one_completed_task_with_its_retries():
    records = [pub("a", 1), start("a", 2), end("a", 3, "retry"), start("a", 5, attempt=1), end("a", 6, "retry",
                                                                                                attempt=1)]
    records += [start("a", 8, attempt=2), end("a", 9, attempt=2)]
    summary = run(records)
    task = only_task(summary)
    assert (task.cls, task.retries, task.executions, task.final) == ("completed", 2, 3, "success")
    assert task.end_to_end == pytest.approx(8.0)
    assert summary.to_dict()["retried"] == 1
    assert summary.delivery.guarantee == "exactly-once"


def test_a_retry_chain_that_finally_failed_is_failed():
    records = [pub("a", 1), start("a", 2), end("a", 3, "retry"), start("a", 5, attempt=1)]
    records.append(end("a", 7, "failure", attempt=1, error_type="ValueError"))
    task = only_task(run(records))
    assert (task.cls, task.cause, task.final, task.retries, task.end_to_end) == ("failed", "ValueError", "failure", 1,
                                                                                 None)


def test_redelivery_that_ran_the_task_to_success_twice():
    records = [pub("a", 1), start("a", 2), end("a", 3), start("a", 4, node="w2"), end("a", 5, node="w2")]
    task = only_task(run(records))
    assert (task.cls, task.successes) == ("duplicated_completed", 2)


def test_failed_task_names_its_exception():
    task = only_task(run([pub("a", 1), start("a", 2), end("a", 3, "failure", error_type="KeyError")]))
    assert (task.cls, task.cause, task.final, task.end_to_end, task.finished_at) == ("failed", "KeyError", "failure",
                                                                                     None, 3)


@pytest.mark.parametrize("outcome", ["error", "timeout"])
def test_publish_failed_keeps_its_class_even_if_it_executed(outcome):
    records = [pub("a", 1, outcome), pub("b", 1, outcome), start("b", 2), end("b", 3)]
    summary = run(records, snapshot=snap(queued=["a"]))
    assert [(task.cls, task.cause) for task in summary.tasks] == [("publish_failed", outcome)] * 2
    assert summary.publish_failed_executed() == ["b"]
    data = summary.to_dict()
    assert data["publish_failed_executed"] == 1
    assert data["ids"]["publish_failed"] == ["a", "b"]
    assert data["ids"]["publish_failed_executed"] == ["b"]
    assert summary.delivery.unfinished == 0  # the producer knew: not a delivery failure


# --- pending: a backlog is never a loss --------------------------------------------------------


def test_a_backlog_at_the_end_is_pending_not_lost():
    records = [pub("q", 1), pub("r", 1), received("r", 2, pid=7, ps=LIVE_PS), alive("w1", (7, LIVE_PS))]
    summary = run(records, snapshot=snap(queued=["q"], reserved=["r"]))
    assert {task.id: (task.cls, task.cause) for task in summary.tasks} == {"q": ("pending", "queued"),
                                                                          "r": ("pending", "reserved")}
    assert summary.classes["lost"] == 0
    assert summary.delivery.pending == 2
    assert summary.delivery.guarantee == "exactly-once"


def test_a_success_whose_message_is_still_unacknowledged_is_pending_a_second_run():
    # late ack: the worker acknowledges after storing the result; Redis refused the result (noeviction at its
    # limit), so the message stays in the unacked hash and is handed out again after the visibility timeout
    records = [pub("a", 1), received("a", 2, pid=7, ps=LIVE_PS), start("a", 2.1, pid=8),
               end("a", 2.5, "success", pid=8), alive("w1", (7, LIVE_PS), (8, LIVE_PS))]
    assert judged(records, snap(reserved=["a"])) == ("pending", "completed_unacked")
    assert judged(records, snap()) == ("completed", None)


def test_a_pending_task_that_ran_to_success_twice_already_shows_in_the_delivery_guarantee():
    # RabbitMQ's consumer timeout: every execution of a late-acknowledged task outlives it, the channel closes before
    # the acknowledgement, and the message is handed out again; still unacknowledged at the end, the task is pending,
    # but it did run twice: the run observed at-least-once delivery, not exactly-once
    records = [pub("a", 1), received("a", 2, pid=7, ps=LIVE_PS), start("a", 2.1, pid=8),
               end("a", 2.5, "success", pid=8), start("a", 3.1, pid=8, redelivered=True),
               end("a", 3.5, "success", pid=8), alive("w1", (7, LIVE_PS), (8, LIVE_PS))]
    summary = run(records, snapshot=snap(reserved=["a"]))
    assert (only_task(summary).cls, only_task(summary).cause) == ("pending", "completed_unacked")
    assert (summary.delivery.guarantee, summary.delivery.redelivered, summary.delivery.pending) == (
        "at-least-once", 1, 1)
    once = run(records[:4] + records[6:], snapshot=snap(reserved=["a"]))  # one execution so far: no verdict yet
    assert (once.delivery.guarantee, once.delivery.redelivered) == ("exactly-once", 0)


def test_the_unacked_message_of_a_killed_main_process_is_pending_until_the_visibility_timeout():
    # worker-1's main process received it, was SIGKILLed (a new main runs now), and kombu keeps it unacked
    records = [pub("a", 1), received("a", 2, pid=7, ps=DEAD_PS), alive("w1", (8, LIVE_PS))]
    assert judged(records, snap(reserved=["a"])) == ("pending", "reserved")
    # without the broker's word, the same history is a loss: the prefetching process is gone
    assert judged(records, snap()) == ("lost", "prefetched_by_dead_worker")


def test_a_task_running_at_the_end_is_pending():
    records = [pub("a", 1), start("a", 2, pid=7, ps=LIVE_PS), alive("w1", (7, LIVE_PS))]
    assert judged(records, snap(results={"a": TaskMeta("STARTED", None, "celery@w1", None)})) == ("pending", "running")
    assert judged(records[:2], snap()) == ("pending", "running_unverified")  # no alive record to tell


def test_a_completed_task_whose_message_is_back_in_the_broker_is_pending():
    records = [pub("a", 1), start("a", 2), end("a", 3)]
    task = only_task(run(records, snapshot=snap(queued=["a"])))
    assert (task.cls, task.cause, task.final) == ("pending", "queued", "success")


# --- failures Celery reported -----------------------------------------------------------------


@pytest.mark.parametrize("exc_type", ["WorkerLostError", "TimeLimitExceeded", "Terminated"])
def test_a_failure_celery_recorded_without_an_end_record_is_failed_by_worker(exc_type):
    records = [pub("a", 1), start("a", 2, pid=7, ps=DEAD_PS), alive("w1", (7, LIVE_PS))]
    task = only_task(run(records, snapshot=snap(results={"a": failure(exc_type, done=2.5)})))
    assert (task.cls, task.cause, task.final, task.finished_at) == ("failed_by_worker", exc_type, "failure", 2.5)


def test_a_failure_only_the_result_backend_knows_that_the_task_raised_is_failed():
    records = [pub("a", 1), start("a", 2, pid=7, ps=DEAD_PS), alive("w1", (7, LIVE_PS))]
    assert judged(records, snap(results={"a": failure("ValueError")})) == ("failed", "ValueError")


def test_worker_lost_counts_as_cut_short_in_the_delivery_guarantee():
    records = [pub("a", 1), start("a", 2, pid=7), alive("w1", (8, LIVE_PS)), pub("b", 1), start("b", 2), end("b", 3)]
    summary = run(records, snapshot=snap(results={"a": failure("WorkerLostError")}))
    assert summary.delivery.guarantee == "at-most-once"
    assert summary.delivery.unfinished == 1


# --- completed by the result backend ----------------------------------------------------------


def test_success_after_the_run_seen_in_the_result_backend_is_completed():
    records = [pub("a", 90), alive("w1", (7, LIVE_PS))]
    task = only_task(run(records, snapshot=snap(results={"a": success(done=101.5)})))
    assert (task.cls, task.final, task.completed_at, task.successes) == ("completed", "success", 101.5, 1)
    assert task.end_to_end == pytest.approx(11.5)


def test_a_child_that_died_between_storing_its_result_and_writing_its_end_record_completed():
    records = [pub("a", 1), start("a", 2, pid=7, ps=LIVE_PS), alive("w1", (8, LIVE_PS))]
    assert judged(records, snap(results={"a": success(done=2.4)})) == ("completed", None)


# --- lost: gone, with the cause ---------------------------------------------------------------


def test_twice_killed_then_never_completed_is_a_duplicate_that_never_completed():
    records = [pub("a", 1), start("a", 2, pid=7, ps=DEAD_PS), start("a", 20, node="w2", pid=9, ps=DEAD_PS)]
    records += [alive("w1", (7, LIVE_PS)), alive("w2", (8, LIVE_PS))]
    assert judged(records, snap()) == ("duplicated_not_completed", "gone")
    assert judged(records, snap(results={"a": failure("WorkerLostError")})) == ("duplicated_not_completed",
                                                                                "failed_by_worker")
    summary = run(records, snapshot=snap())
    assert summary.delivery.guarantee == "none"  # cut short, and ran twice


def test_a_pid_reused_by_another_process_does_not_keep_a_killed_execution_running():
    # pid 7 ran the task and was killed; the kernel gave pid 7 to the pool child that replaced it
    records = [pub("a", 1), start("a", 2, pid=7, ps=DEAD_PS), alive("w1", (7, LIVE_PS))]
    assert judged(records, snap()) == ("lost", "killed_running")


def test_records_without_process_start_times_fall_back_to_pids():
    records = [pub("a", 1), start("a", 2, pid=7), {"type": "alive", "node": "w1", "pids": [7], "t": 100.0}]
    assert judged(records, snap()) == ("pending", "running")
    records[-1] = {"type": "alive", "node": "w1", "pids": [8], "t": 100.0}
    assert judged(records, snap()) == ("lost", "killed_running")


def test_lost_causes():
    history = [pub("retry", 1), start("retry", 2), end("retry", 3, "retry"), alive("w1", (1, LIVE_PS))]
    history += [pub("before", 10), pub("after", 80), pub("taken", 10), received("taken", 11, pid=5, ps=LIVE_PS)]
    # received by a worker that lived on: dropped when its connection broke, forgotten by the restarted broker
    history += [pub("held", 10), received("held", 12, pid=1, ps=LIVE_PS)]
    # received after the restart: the restart did not take it, and nothing says what did
    history += [pub("later", 40), received("later", 60, pid=1, ps=LIVE_PS)]
    found = {t.id: (t.cls, t.cause) for t in run(history, snapshot=snap(broker_started=50.0)).tasks}
    assert found == {"retry": ("lost", "retry_never_ran"), "before": ("lost", "broker_data_loss"),
                     "after": ("lost", "never_delivered"), "taken": ("lost", "prefetched_by_dead_worker"),
                     "held": ("lost", "prefetched_broker_data_loss"), "later": ("lost", "received_never_started")}
    evicted = {t.id: t.cause for t in run(history, snapshot=snap(evicted=3)).tasks}
    assert evicted["after"] == "broker_data_loss"


def test_a_task_never_received_before_a_main_process_kill_was_taken_by_the_killed_worker():
    # kombu pops a message from the queue, then records it unacked: a main process killed in between takes it along
    kill = {"type": "fault", "event": "kill", "fault": "worker-kill", "node": "w1", "t": 50.0, "pids": [7],
            "main": True}
    child_kill = {**kill, "t": 80.0, "main": False}
    # pushed 2 ms after the kill: Redis still served the dead process's blocked BRPOP (seen on the lab)
    records = [pub("before", 49.9), pub("just_after", 50.002), pub("after", 60.0), kill, child_kill]
    found = {t.id: (t.cls, t.cause) for t in run(records, snapshot=snap()).tasks}
    assert found == {"before": ("lost", "taken_by_killed_worker"), "just_after": ("lost", "taken_by_killed_worker"),
                     "after": ("lost", "never_delivered")}


def test_a_task_never_received_published_during_a_partition_was_taken_by_the_cut_off_worker():
    # a worker waiting in BRPOP when the cut began has the next message popped for it; the reply is lost in the cut
    cut = [fault_event("applied", 40.0, fault="network-partition"),
           fault_event("reverted", 55.0, fault="network-partition")]
    records = [*cut, pub("before", 39.0), pub("during", 41.2), pub("after", 56.0)]
    found = {t.id: (t.cls, t.cause) for t in run(records, snapshot=snap()).tasks}
    assert found == {"before": ("lost", "never_delivered"), "during": ("lost", "taken_by_cut_off_worker"),
                     "after": ("lost", "never_delivered")}
    paused = [{**record, "fault": "worker-pause"} if record["type"] == "fault" else record for record in records]
    assert {t.cause for t in run(paused, snapshot=snap()).tasks} == {"never_delivered"}  # a pause cuts nothing


def test_without_a_snapshot_only_the_ledgers_judge():
    summary = run([pub("a", 1), pub("b", 1), start("b", 2, pid=7, ps=DEAD_PS), alive("w1", (8, LIVE_PS))])
    assert [(t.cls, t.cause) for t in summary.tasks] == [("lost", "never_delivered"), ("lost", "killed_running")]
    assert summary.snapshot is None


def test_records_after_the_run_end_still_count_for_the_class_but_not_for_the_phases():
    summary = run([pub("a", 90), start("a", 99.0), end("a", 100.5)], snapshot=snap())
    assert only_task(summary).cls == "completed"
    assert summary.records["after_run_end"] == 1
    assert summary.phases[-1].completed == 0
    assert summary.overall.completed == 0


# --- clocks ---------------------------------------------------------------------------------


def test_a_node_clock_200_ms_ahead_is_corrected_before_anything_is_judged():
    # w1's clock ran 200 ms ahead: its start record says 30.1 for what happened at 29.9 (baseline) on the
    # controller's clock, and its end says 30.15 (29.95): the task completed in the baseline phase
    records = [pub("a", 29.85), start("a", 30.1, node="w1"), end("a", 30.15, node="w1")]
    records += [pub("b", 29.85), start("b", 29.9, node="w2"), end("b", 29.95, node="w2")]
    skewed = {"w1": Correction(0.0, 0.2, 100.0, 0.2, 0.001)}
    plain = run(records)
    corrected = run(records, clocks=skewed)
    a, b = corrected.tasks
    assert a.queue_wait == pytest.approx(b.queue_wait) == pytest.approx(0.05)
    assert a.end_to_end == pytest.approx(b.end_to_end) == pytest.approx(0.1)
    assert [phase.completed for phase in corrected.phases] == [2, 0, 0]
    assert [phase.completed for phase in plain.phases] == [1, 1, 0]
    assert corrected.clocks["w1"]["offset0"] == 0.2


def test_a_clock_offset_within_its_uncertainty_is_not_applied():
    records = [pub("a", 10.0), start("a", 10.5, node="w1"), end("a", 11.0, node="w1")]
    noise = {"w1": Correction(0.0, 0.0002, 100.0, 0.0001, 0.0005)}
    assert only_task(run(records, clocks=noise)).run_time == 0.5
    assert only_task(run(records, clocks=noise)).queue_wait == 0.5


def test_a_drifting_clock_is_corrected_by_interpolation():
    correction = Correction(0.0, 0.1, 100.0, 0.3, 0.001)
    assert correction.at(50.0) == pytest.approx(0.2)
    assert correction.at(-10.0) == pytest.approx(0.1)
    assert correction.at(200.0) == pytest.approx(0.3)


def test_the_result_backends_done_time_is_on_the_reporting_workers_clock():
    records = [pub("a", 1.0), start("a", 2.0, node="w1", pid=7, ps=DEAD_PS), alive("w1", (8, LIVE_PS))]
    skewed = {"w1": Correction(0.0, 0.5, 100.0, 0.5, 0.001)}
    task = only_task(run(records, snapshot=snap(results={"a": success("celery@w1", done=3.5)}), clocks=skewed))
    assert task.completed_at == pytest.approx(3.0)


# --- executions ------------------------------------------------------------------------------


def test_executions_of_unpublished_ids_are_unknown():
    records = [pub("a", 1), start("a", 2), end("a", 3), start("x", 2), end("x", 3), start("x", 4, node="w2")]
    summary = run(records)
    assert [task.id for task in summary.tasks] == ["a"]
    assert summary.unknown_ids == ["x"]
    assert summary.unknown_executions == 2
    assert summary.to_dict()["unknown"] == {"ids": 1, "executions": 2}


def test_an_end_without_its_start_still_counts_as_an_execution():
    task = only_task(run([pub("a", 1), end("a", 3)]))
    assert (task.cls, task.executions, task.first_start, task.queue_wait, task.run_time) == (
        "completed", 1, None, None, None)
    assert task.end_to_end == pytest.approx(2.0)


def test_ends_pair_with_starts_of_the_same_process():
    records = [pub("a", 1), start("a", 2, pid=1), start("a", 3, pid=2), end("a", 10, pid=1), end("a", 4, pid=2)]
    task = only_task(run(records))
    assert task.executions == 2
    assert task.run_time == pytest.approx(8.0)  # the latest-ended success: pid 1, 2 -> 10
    assert task.completed_at == 4


def test_an_end_of_a_new_process_with_a_reused_pid_does_not_close_the_old_execution():
    records = [pub("a", 1), start("a", 2, pid=7, ps=DEAD_PS), end("a", 5, pid=7, ps=LIVE_PS)]
    assert only_task(run(records)).executions == 2


def test_an_ok_publish_wins_over_an_earlier_failed_one():
    summary = run([pub("a", 1, "timeout"), pub("a", 2), start("a", 3), end("a", 4)])
    task = only_task(summary)
    assert (task.cls, task.publish_t) == ("completed", 2)
    assert summary.records["repeated_publish"] == 1


def test_received_records_count_deliveries():
    records = [pub("a", 1), received("a", 2), received("a", 5, node="w2"), start("a", 6, node="w2")]
    records.append(end("a", 7, node="w2"))
    assert only_task(run(records)).deliveries == 2


def test_record_order_does_not_matter():
    records = [pub("a", 1), start("a", 2), end("a", 3, "retry"), start("a", 5, attempt=1), end("a", 6, attempt=1)]
    records += [pub("b", 1), start("b", 2), pub("c", 1, "error"), start("d", 1), received("e", 2), pub("e", 1)]
    records += [alive("w1", (1, LIVE_PS)), fault_event("applied", 30), fault_event("reverted", 40)]
    snapshot = snap(queued=["e"])
    expected = run(records, snapshot=snapshot).to_dict()
    for seed in range(5):
        shuffled = records[:]
        random.Random(seed).shuffle(shuffled)
        assert run(shuffled, snapshot=snapshot).to_dict() == expected


@pytest.mark.parametrize("bad", [
    {"type": "start", "id": "a"},  # fields missing
    {"type": "publish", "id": ["a"], "kind": "noop", "t": 1, "outcome": "ok"},  # an id that is no text
    {"type": "end", "id": "a", "node": "w1", "pid": "seven", "attempt": 0, "t": 2, "outcome": "success"},
    {"type": "start", "id": "a", "node": "w1", "pid": 1, "attempt": 0, "t": "never", "redelivered": False},
    {"type": "start", "id": "a", "node": "w1", "pid": 1, "attempt": 0, "t": float("nan"), "redelivered": False},
    {"type": "alive", "node": "w1", "pids": None},
    {"id": "no type"},
    "not a mapping",
], ids=["missing", "id-list", "pid-text", "t-text", "t-nan", "alive-pids", "no-type", "not-a-mapping"])
def test_a_malformed_record_is_counted_and_the_check_goes_on(bad):
    summary = run([pub("a", 1), bad, start("a", 2), end("a", 3)])
    assert only_task(summary).cls == "completed"
    assert summary.records["malformed"] == 1
    assert len(summary.malformed) == 1 and summary.to_dict()["malformed"] == summary.malformed


def test_overlapping_phases_are_refused():
    with pytest.raises(ValueError, match="time order"):
        run([], phases=[Phase("a", 0, 10), Phase("b", 5, 20)])


def test_results_are_looked_up_once_for_the_tasks_without_a_successful_end():
    records = [pub("a", 1), start("a", 2), end("a", 3), pub("b", 1), pub("c", 1, "error"), pub("d", 1)]
    records += [start("d", 2, pid=7, ps=DEAD_PS), alive("w1", (8, LIVE_PS))]
    asked = []

    def lookup(ids):
        asked.append(sorted(ids))
        return {"d": failure("WorkerLostError")}

    summary = run(records, snapshot=snap(), results=lookup)
    assert asked == [["b", "d"]]
    assert {t.id: t.cls for t in summary.tasks} == {"a": "completed", "b": "lost", "c": "publish_failed",
                                                    "d": "failed_by_worker"}
    assert summary.snapshot["result_lookups"] == 2


# --- fault windows -----------------------------------------------------------------------------


def test_fault_windows_are_what_the_agents_recorded_not_the_plan():
    records = [fault_event("applied", 31.5), fault_event("reverted", 52.0), fault_event("applied", 33.0, node="w2"),
               fault_event("reverted", 50.0, node="w2")]
    summary = run(records, faults=[FaultWindow("worker-kill", 30, 60)])
    assert summary.fault_source == "agents"
    assert [(w.target, w.start, w.end) for w in summary.faults] == [("w1", 31.5, 52.0), ("w2", 33.0, 50.0)]


def test_the_planned_windows_stand_in_only_without_agent_records():
    summary = run([pub("a", 1)], faults=[{"fault": "kill", "start": 10, "end": 20}])
    assert summary.fault_source == "planned"
    assert summary.faults == [FaultWindow("kill", 10, 20, "", "planned")]
    assert run([pub("a", 1)]).fault_source == "none"


def test_a_fault_never_reverted_is_open_until_the_run_end():
    assert fault_windows([(40.0, "applied", "cpu", "w1")], 90.0) == [FaultWindow("cpu", 40.0, 90.0, "w1")]


def test_fault_throughput_counts_completions_inside_the_windows():
    records = [fault_event("applied", 40.0), fault_event("reverted", 50.0)]
    for i in range(30):  # one completion a second from 31 s to 60 s; 10 of them in [40, 50)
        records += [pub(f"t{i}", 30.0 + i), start(f"t{i}", 30.5 + i), end(f"t{i}", 31.0 + i)]
    assert run(records).fault_throughput == pytest.approx(1.0)
    overlapping = [*records, fault_event("applied", 45.0, node="w2"), fault_event("reverted", 55.0, node="w2")]
    assert run(overlapping).fault_throughput == pytest.approx(15 / 15)


def test_target_throughput_counts_the_faulted_nodes_completions_in_their_windows_against_their_baseline():
    records = [fault_event("applied", 40.0, node="w1"), fault_event("reverted", 50.0, node="w1")]
    for i in range(60):  # each node completes one task a second from 1 s to 60 s
        for node in ("w1", "w2"):
            task = f"{node}-{i}"
            records += [pub(task, i + 0.2), start(task, i + 0.5, node=node), end(task, i + 1.0, node=node)]
    records += [pub("twice", 41.0), start("twice", 41.2, node="w1"), end("twice", 41.5, node="w1"),  # first success
                start("twice", 42.0, node="w2", attempt=1), end("twice", 42.5, node="w2", attempt=1)]
    found = run(records).target_throughput
    # ends at 1 s ... 29 s in the baseline [0, 30): 29 in 30 s; in the window [40, 50): 40 ... 49 s, and "twice"
    assert (found.nodes, found.baseline, found.fault) == (["w1"], pytest.approx(29 / 30), pytest.approx(11 / 10))
    assert run(records).fault_throughput == pytest.approx(21 / 10)  # both nodes, "twice" once, as before
    # a node that stopped: nothing of its own completes inside its window
    stopped = [r for r in records if not (r.get("node") == "w1" and r["type"] == "end" and 40 <= r["t"] < 50)]
    assert run(stopped).target_throughput.fault == 0.0
    summary = run(stopped).to_dict()
    assert summary["target_throughput"] == {"nodes": ["w1"], "baseline": pytest.approx(29 / 30), "fault": 0.0}
    # no window naming a node (planned, or none), or a target that ran nothing in the baseline (Redis): no figure
    assert run(records[2:], faults=[FaultWindow("kill", 40, 50)]).target_throughput is None
    assert run(records[2:]).target_throughput is None
    broker = [fault_event("applied", 40.0, node="redis"), fault_event("reverted", 50.0, node="redis"), *records[2:]]
    assert run(broker).target_throughput is None


# --- phases ----------------------------------------------------------------------------------


def test_tasks_count_in_the_phase_they_were_due_completions_where_they_ended():
    records = [pub("a", 10), start("a", 20), end("a", 35)]  # due in baseline, done in fault
    records += [pub("b", 40, kind="sleep"), start("b", 41, kind="sleep")]
    records += [pub("c", 150)]  # outside every phase
    records += [pub("late", 31.0, scheduled=29.0), start("late", 32), end("late", 33)]  # due in baseline
    summary = run(records, run_end=200, snapshot=snap())
    baseline, fault, recovery = summary.phases
    assert (baseline.published, baseline.completed, baseline.classes["completed"]) == (2, 0, 2)
    assert (fault.published, fault.completed, fault.classes["pending"]) == (1, 2, 1)
    assert fault.throughput == pytest.approx(2 / 30)
    assert recovery.published == 0
    assert summary.overall.published == 4
    assert summary.overall.completed == 2
    assert (summary.overall.start, summary.overall.end) == (0, 200)
    assert {task.id: task.phase for task in summary.tasks} == {"a": "baseline", "b": "fault", "c": "",
                                                               "late": "baseline"}


def test_run_time_counts_in_the_phase_a_task_started_in():
    # "q" is due in the baseline, queued, and runs under the fault: its run time is the fault phase's
    records = [pub("q", 10, kind="cpu"), start("q", 35, kind="cpu"), end("q", 39, kind="cpu")]
    records += [pub("b", 11, kind="cpu"), start("b", 12, kind="cpu"), end("b", 13, kind="cpu")]
    records += [pub("f", 40), start("f", 41), end("f", 41.5)]
    records += [pub("never", 45, kind="sleep")]  # never started: no run time anywhere
    baseline, fault, _recovery = run(records, run_end=200, snapshot=snap()).phases
    assert (baseline.published, baseline.latency["run_time"].count, baseline.latency["run_time"].max) == (2, 1, 1.0)
    assert (fault.latency["run_time"].count, fault.latency["run_time"].max) == (2, 4.0)
    assert baseline.latency["end_to_end"].max == pytest.approx(29.0)  # end to end stays with when it was due
    assert (baseline.kinds["cpu"].published, baseline.kinds["cpu"].run_time.mean) == (2, 1.0)
    cpu = fault.kinds["cpu"]  # started here, published earlier: in the phase's kinds for its run time only
    assert (cpu.published, cpu.success_ratio, cpu.run_time.mean, cpu.end_to_end.count) == (0, None, 4.0, 0)
    assert fault.kinds["sleep"].run_time.count == 0 and fault.kinds["sleep"].published == 1


def test_a_retried_task_counts_its_run_time_where_the_measured_execution_started():
    # started in the baseline, retried; the successful execution ran 40 -> 50 s, under the fault
    records = [pub("r", 10, kind="cpu"), start("r", 11, kind="cpu"), end("r", 12, "retry", kind="cpu"),
               start("r", 40, attempt=1, kind="cpu"), end("r", 50, attempt=1, kind="cpu")]
    summary = run(records, run_end=200, snapshot=snap())
    baseline, fault, _recovery = summary.phases
    assert baseline.latency["run_time"].count == 0 and baseline.kinds["cpu"].published == 1
    assert (fault.latency["run_time"].max, fault.kinds["cpu"].run_time.mean) == (10.0, 10.0)
    (task,) = summary.tasks
    assert (task.first_start, task.run_start, task.run_time) == (11, 40, 10.0)


def test_phases_are_half_open():
    summary = run([pub("edge", 30.0), start("edge", 30.5), end("edge", 60.0)])
    assert [stats.published for stats in summary.phases] == [0, 1, 0]
    assert [stats.completed for stats in summary.phases] == [0, 0, 1]


def test_success_ratio_per_kind():
    records = [pub(f"n{i}", 1, kind="noop") for i in range(4)]
    records += [start(f"n{i}", 2, kind="noop") for i in range(4)]
    records += [end("n0", 3, kind="noop"), end("n1", 3, kind="noop"), end("n2", 3, "failure", kind="noop")]
    records += [pub("s0", 1, kind="sleep"), start("s0", 2, kind="sleep"), end("s0", 3, kind="sleep")]
    records += [pub("p0", 1, "error", kind="cpu")]
    ratios = run(records).phases[0].success_ratio
    assert ratios == {"cpu": 0.0, "noop": 0.5, "sleep": 1.0}
    assert run(records).phases[0].published_ok == 5


def test_latency_percentiles_are_nearest_rank():
    records = []
    for i in range(1, 101):
        records += [pub(f"t{i}", 1.0), start(f"t{i}", 1.0 + i / 1000), end(f"t{i}", 2.0 + i / 1000)]
    wait = run(records).phases[0].latency["queue_wait"]
    assert wait.count == 100
    assert (wait.p50, wait.p95, wait.p99, wait.max) == pytest.approx((0.050, 0.095, 0.099, 0.100))


def test_nearest_rank_and_empty_latencies():
    assert nearest_rank([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert nearest_rank([1.0, 2.0, 3.0, 4.0], 51) == 3.0
    assert nearest_rank([7.0], 99) == 7.0
    assert latency_stats([]).count == 0
    assert latency_stats([]).p95 is None


def test_phases_may_be_given_as_mappings():
    phases = [{"name": "baseline", "start": 0, "end": 50, "playbook": None}]
    summary = check([pub("a", 1)], phases, [{"fault": "kill", "start": 10, "end": 20}], 60)
    assert summary.phases[0].name == "baseline"
    assert summary.faults == [FaultWindow("kill", 10, 20, "", "planned")]


# --- delivery guarantee ----------------------------------------------------------------------

COMPLETED = [pub("ok", 1), start("ok", 2), end("ok", 3)]
LOST = [pub("lost", 1)]
KILLED = [pub("killed", 1), start("killed", 2, pid=9), alive("w1", (1, LIVE_PS))]
REDELIVERED = [pub("dup", 1), start("dup", 2), start("dup", 4, node="w2"), end("dup", 5, node="w2")]
RETRIED = [pub("re", 1), start("re", 2), end("re", 3, "retry"), start("re", 4, attempt=1), end("re", 5, attempt=1)]
FAILED = [pub("bad", 1), start("bad", 2), end("bad", 3, "failure")]
PENDING = [pub("wait", 1)]


@pytest.mark.parametrize(
    ("records", "guarantee"),
    [
        (COMPLETED + FAILED + RETRIED + PENDING, "exactly-once"),
        (COMPLETED + REDELIVERED, "at-least-once"),
        (COMPLETED + LOST, "at-most-once"),
        (COMPLETED + KILLED, "at-most-once"),
        (COMPLETED + LOST + REDELIVERED, "none"),
    ],
    ids=["exactly-once", "at-least-once", "at-most-once-lost", "at-most-once-killed", "none"],
)
def test_delivery_guarantee(records, guarantee):
    assert run(records, snapshot=snap(queued=["wait"])).delivery.guarantee == guarantee


def test_delivery_guarantee_table():
    assert [delivery_guarantee(m, r) for m, r in [(0, 0), (0, 2), (3, 0), (1, 1)]] == [
        "exactly-once", "at-least-once", "at-most-once", "none"]


# --- recovery time ---------------------------------------------------------------------------

BASE_RATE = 10  # tasks published per second, each done 0.03 s later in normal times
FAULT = FaultWindow("broker-delay", 20.0, 30.0)
RECOVERY_PHASES = [Phase("baseline", 0, 20), Phase("fault", 20, 30), Phase("recovery", 30, 80)]


def steady_history(fault_done_at):
    """10 tasks/s over [0, 80); tasks published during the fault finish at fault_done_at(j)
    (j = their index within the fault, or None to lose them); the others 0.03 s after publish."""
    records = []
    for second in range(80):
        for i in range(BASE_RATE):
            task_id, t = f"{second}-{i}", second + 0.05 + i / BASE_RATE
            records.append(pub(task_id, t))
            in_fault = FAULT.start <= t < FAULT.end
            done = fault_done_at((second - 20) * BASE_RATE + i) if in_fault else t + 0.03
            if done is not None:
                records += [start(task_id, done - 0.01), end(task_id, done)]
    return records


def recovery_of(records):
    return run(records, phases=RECOVERY_PHASES, faults=[FAULT], run_end=80.0).recovery


def test_recovery_is_immediate_when_the_fault_changes_nothing():
    recovery = recovery_of(steady_history(lambda j: 20.05 + j / BASE_RATE + 0.03))
    assert recovery.time_s == 0.0
    assert recovery.baseline_rate == pytest.approx(10.0)
    assert recovery.fault_end == 30.0


def test_recovery_waits_until_the_backlog_has_drained():
    # the 100 tasks held up by the fault drain at an extra 10/s over [30, 40): 20/s, then 10/s again
    recovery = recovery_of(steady_history(lambda j: 30.06 + j / BASE_RATE))
    assert recovery.time_s == 10.0
    assert recovery.note == "recovered"


def test_recovery_needs_the_backlog_back_not_only_the_rate():
    # the rate is normal right after the fault, but the held-up tasks only finish in a burst at 50 s
    recovery = recovery_of(steady_history(lambda j: 50.0 + j / 1000))
    assert recovery.time_s == 21.0


def test_wiping_the_queue_is_not_a_recovery():
    # every task of the fault is gone (a broker restart without persistence); the rate is normal right after
    recovery = recovery_of(steady_history(lambda j: None))
    assert recovery.time_s is None
    assert recovery.note == "not recovered by the run end: 100 tasks published before the fault ended never finished"


def test_recovery_tolerance_is_a_parameter():
    # tasks take 0.2 s before the fault and 0.5 s after it: the same rate, a backlog of 5 instead of 2
    records = []
    for second in range(80):
        for i in range(BASE_RATE):
            task_id, t = f"{second}-{i}", second + 0.05 + i / BASE_RATE
            records += [pub(task_id, t), start(task_id, t), end(task_id, t + (0.2 if t < 20 else 0.5))]
    strict = run(records, phases=RECOVERY_PHASES, faults=[FAULT], run_end=80.0)
    assert strict.recovery.time_s is None
    assert strict.recovery.baseline_backlog == pytest.approx(2.0)
    loose = run(records, phases=RECOVERY_PHASES, faults=[FAULT], run_end=80.0, recovery=RecoveryParams(tolerance=1.6))
    assert loose.recovery.time_s == 0.0


def test_recovery_needs_a_baseline_and_a_fault():
    records = steady_history(lambda j: 30.06 + j / BASE_RATE)
    assert run(records, phases=RECOVERY_PHASES, faults=[], run_end=80.0).recovery.time_s is None
    no_baseline = [Phase("warmup", 0, 20), *RECOVERY_PHASES[1:]]
    assert run(records, phases=no_baseline, faults=[FAULT], run_end=80.0).recovery.note == "no 'baseline' phase"


# --- executions -------------------------------------------------------------------------------


def test_executions_are_listed_in_time_order_with_their_task_and_kind():
    records = [pub("a", 1.0, kind="sleep"), start("a", 5.0, kind="sleep", node="w2", pid=7),
               end("a", 6.0, kind="sleep", node="w2", pid=7),
               pub("b", 1.0), start("b", 2.0), end("b", 3.0, "failure"), start("b", 4.0, attempt=1),
               end("ghost", 2.5), start("c", 1.5)]  # an end without a start; ids never published
    summary = run(records)
    got = [(e.id, e.kind, e.node, e.pid, e.attempt, e.start, e.end, e.outcome, e.error_type)
           for e in summary.executions]
    assert got == [("c", "", "w1", 1, 0, 1.5, None, None, None),
                   ("b", "noop", "w1", 1, 0, 2.0, 3.0, "failure", "RuntimeError"),
                   ("ghost", "", "w1", 1, 0, None, 2.5, "success", None),
                   ("b", "noop", "w1", 1, 1, 4.0, None, None, None),
                   ("a", "sleep", "w2", 7, 0, 5.0, 6.0, "success", None)]
    assert sum(task.executions for task in summary.tasks) + summary.unknown_executions == len(summary.executions)


def test_executions_are_on_the_controllers_clock():
    records = [pub("a", 1.0), start("a", 12.0, node="w2"), end("a", 13.0, node="w2")]
    (execution,) = run(records, clocks={"w2": Correction(0.0, 10.0, 100.0, 10.0, 0.001)}).executions
    assert (execution.start, execution.end) == (2.0, 3.0)


# --- property: generated ground truth, ledgers and broker snapshot -----------------------------

LIVE = {"w1": (11, LIVE_PS), "w2": (12, LIVE_PS)}
DEAD = ((11, DEAD_PS), (21, LIVE_PS), (22, DEAD_PS))  # gone at collection (11 again: its pid was reused)
BROKER_STARTED = 65.0  # the broker restarted then (without persistence)


@dataclass
class Truth:
    """What happened to one task, and what the checker must conclude from its records and the snapshot."""

    id: str
    kind: str
    publish_t: float
    publish_outcome: str
    cls: str
    cause: str | None
    final: str
    executions: list[dict] = field(default_factory=list)  # attempt, redelivered, node, pid, ps, start, end, outcome
    receiver: tuple | None = None  # (node, pid, ps) of a received record
    where: str | None = None  # queued / reserved
    meta: TaskMeta | None = None

    @property
    def successes(self) -> int:
        return sum(e["outcome"] == "success" for e in self.executions) or int(
            self.meta is not None and self.meta.state == "SUCCESS")

    def records(self) -> list[dict]:
        out = [pub(self.id, self.publish_t, self.publish_outcome, self.kind)]
        if self.receiver is not None:
            node, pid, ps = self.receiver
            out.append(received(self.id, self.publish_t + 0.001, node=node, pid=pid, ps=ps))
        for e in self.executions:
            where = {"attempt": e["attempt"], "node": e["node"], "pid": e["pid"], "ps": e["ps"], "kind": self.kind}
            out.append(start(self.id, e["start"], redelivered=e["redelivered"], **where))
            if e["outcome"] is not None:
                out.append(end(self.id, e["end"], e["outcome"], **where))
        return out


# (expected class, expected cause, outcome of each execution (None: killed or still running), process of the
# last execution (live/dead), where the message is, the result backend's record, how attempts go)
@dataclass(frozen=True)
class Case:
    cls: str
    cause: str | None
    outcomes: tuple
    last_process: str = "live"
    where: str | None = None
    meta: tuple | None = None  # (state, exc_type)
    attempts: str = "retry"  # retry: 0, 1, 2...; same: all 0 (redelivery)
    receiver: str | None = None  # live / dead: a received record by such a process
    published: str = "any"  # before / after the broker restart


CASES = {
    "completed": Case("completed", None, ("success",)),
    "completed_after_retries": Case("completed", None, ("retry", "retry", "success")),
    "completed_by_result": Case("completed", None, (None,), "dead", meta=("SUCCESS", None)),
    "failed": Case("failed", "RuntimeError", ("failure",)),
    "failed_after_retry": Case("failed", "RuntimeError", ("retry", "failure")),
    "failed_by_result": Case("failed", "ValueError", (None,), "dead", meta=("FAILURE", "ValueError")),
    "failed_by_worker": Case("failed_by_worker", "WorkerLostError", (None,), "dead",
                             meta=("FAILURE", "WorkerLostError")),
    "time_limit": Case("failed_by_worker", "TimeLimitExceeded", (None,), "dead",
                       meta=("FAILURE", "TimeLimitExceeded")),
    "pending_queued": Case("pending", "queued", (), where="queued"),
    "pending_requeued": Case("pending", "queued", (None,), "dead", where="queued"),
    "pending_reserved": Case("pending", "reserved", (), where="reserved", receiver="dead"),
    "pending_retry_eta": Case("pending", "reserved", ("retry",), where="reserved", meta=("RETRY", "Retry")),
    "pending_running": Case("pending", "running", (None,), "live", meta=("STARTED", None)),
    "pending_completed_unacked": Case("pending", "completed_unacked", ("success",), where="reserved"),
    "dup_completed": Case("duplicated_completed", None, (None, "success"), attempts="same"),
    "dup_completed_twice": Case("duplicated_completed", None, ("success", "success"), attempts="same"),
    "dup_gone": Case("duplicated_not_completed", "gone", (None, None), "dead", attempts="same"),
    "dup_worker_lost": Case("duplicated_not_completed", "failed_by_worker", (None, None), "dead",
                            meta=("FAILURE", "WorkerLostError"), attempts="same"),
    "dup_failed": Case("duplicated_not_completed", "failed", (None, "failure"), attempts="same"),
    "lost_killed": Case("lost", "killed_running", (None,), "dead"),
    "lost_retry": Case("lost", "retry_never_ran", ("retry",)),
    "lost_prefetched": Case("lost", "prefetched_by_dead_worker", (), receiver="dead"),
    "lost_broker": Case("lost", "broker_data_loss", (), published="before"),
    "lost_never_delivered": Case("lost", "never_delivered", (), published="after"),
    "lost_live_receiver": Case("lost", "received_never_started", (), receiver="live", published="after"),
    "lost_prefetched_restart": Case("lost", "prefetched_broker_data_loss", (), receiver="live", published="before"),
}


def _final(case: Case) -> str:
    outcomes = case.outcomes
    if "success" in outcomes or (case.meta and case.meta[0] == "SUCCESS"):
        return "success"
    if not outcomes:
        return "failure" if case.meta and case.meta[0] == "FAILURE" else "none"
    if outcomes[-1] is None and case.meta and case.meta[0] == "FAILURE":
        return "failure"
    return outcomes[-1] or "unfinished"


@st.composite
def truths(draw, index: int) -> Truth:
    name = draw(st.sampled_from([*sorted(CASES), "publish_failed"]))
    if name == "publish_failed":
        outcomes = tuple(draw(st.lists(st.sampled_from(["success", "failure", "retry", None]), max_size=2)))
        case = Case("publish_failed", None, outcomes, where=draw(st.sampled_from([None, "queued"])))
    else:
        case = CASES[name]
    publish_outcome = draw(st.sampled_from(["error", "timeout"])) if name == "publish_failed" else "ok"
    window = {"before": (0.0, 60.0), "after": (66.0, 90.0)}.get(case.published, (0.0, 90.0))
    truth = Truth(
        id=f"t{index}",
        kind=draw(st.sampled_from(["noop", "sleep"])),
        publish_t=draw(st.floats(*window, allow_nan=False)),
        publish_outcome=publish_outcome,
        cls=case.cls,
        cause=publish_outcome if name == "publish_failed" else case.cause,
        final=_final(case),
        where=case.where,
        meta=TaskMeta(case.meta[0], case.meta[1], "celery@w1", 95.0) if case.meta else None,
    )
    if case.receiver is not None:
        truth.receiver = ("w1", *(LIVE["w1"] if case.receiver == "live" else draw(st.sampled_from(DEAD))))
    clock = truth.publish_t
    for number, outcome in enumerate(case.outcomes):
        node = draw(st.sampled_from(sorted(LIVE)))
        last = number == len(case.outcomes) - 1
        if outcome is None and not (last and case.last_process == "live"):
            pid, ps = draw(st.sampled_from(DEAD))
        else:
            pid, ps = LIVE[node]
        begin = clock + draw(st.floats(0.001, 1))
        finish = begin + draw(st.floats(0.001, 1))
        truth.executions.append({"attempt": 0 if case.attempts == "same" else number, "redelivered": False,
                                 "node": node, "pid": pid, "ps": ps, "start": begin, "end": finish,
                                 "outcome": outcome})
        clock = finish
    return truth


@st.composite
def histories(draw) -> tuple[list[Truth], list[dict], BrokerState]:
    count = draw(st.integers(0, 25))
    tasks = [draw(truths(index)) for index in range(count)]
    records = [record for task in tasks for record in task.records()]
    records += [alive(node, proc) for node, proc in LIVE.items()]
    records += [start(f"ghost{n}", 50.0 + n) for n in range(draw(st.integers(0, 3)))]
    snapshot = BrokerState(
        taken=RUN_END + 1,
        queued={t.id: "celery" for t in tasks if t.where == "queued"},
        reserved={t.id: 90.0 for t in tasks if t.where == "reserved"},
        results={t.id: t.meta for t in tasks if t.meta is not None},
        broker_started=BROKER_STARTED,
    )
    return tasks, draw(st.permutations(records)), snapshot


@settings(max_examples=300, deadline=None)
@given(histories())
def test_checker_recovers_the_ground_truth(history):
    truth, records, snapshot = history
    summary = run(records, snapshot=snapshot)
    by_id = {task.id: task for task in summary.tasks}
    assert sorted(by_id) == sorted(t.id for t in truth)
    for t in truth:
        got = by_id[t.id]
        assert (got.cls, got.cause, got.final) == (t.cls, t.cause, t.final), t
        assert (got.executions, got.successes, got.kind) == (len(t.executions), t.successes, t.kind)
        assert got.nodes == ";".join(sorted({e["node"] for e in t.executions}))
        if t.executions:
            assert got.queue_wait == pytest.approx(t.executions[0]["start"] - t.publish_t)
        if t.cls == "lost":  # lost means gone: nowhere in the broker, no result, never completed
            assert snapshot.where(t.id) is None and t.id not in snapshot.results and got.final != "success"
        if snapshot.where(t.id) is not None and t.publish_outcome == "ok":
            assert got.cls == "pending"
    assert summary.classes == {cls: Counter(t.cls for t in truth)[cls] for cls in CLASSES}
    accepted = [t for t in truth if t.publish_outcome == "ok"]
    assert summary.delivery.redelivered == sum(t.cls.startswith("duplicated") for t in accepted)
    assert summary.delivery.pending == sum(t.cls == "pending" for t in accepted)
    assert summary.never_completed == sum(t.final != "success" for t in accepted)
    assert sorted(summary.publish_failed_executed()) == sorted(
        t.id for t in truth if t.cls == "publish_failed" and t.executions)
    assert summary.unknown_executions == len(summary.unknown_ids)
    for phase, stats in zip(PHASES, summary.phases, strict=True):
        mine = [t for t in truth if phase.start <= t.publish_t < phase.end]
        assert stats.published == len(mine)
        assert stats.classes == {cls: sum(t.cls == cls for t in mine) for cls in stats.classes}
    assert summary.overall.published == len(truth)


def test_a_task_the_worker_discarded_as_expired_is_failed_by_worker_not_lost():
    revoked = {"type": "revoked", "id": "a", "node": "w1", "pid": 1, "ps": None, "t": 20, "expired": True,
               "terminated": False}
    assert judged([pub("a", 10), received("a", 11), revoked]) == ("failed_by_worker", "expired")
    assert judged([pub("a", 10)], snap(results={"a": TaskMeta("REVOKED", None, "celery@w1", 20.0)})) == \
        ("failed_by_worker", "revoked")
    assert judged([pub("a", 10), received("a", 11)]) == ("lost", "received_never_started")  # nothing recorded it
