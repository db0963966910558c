"""The checker's verdicts on canvases (chains, groups, chords) and on duplicates an ETA beyond the visibility timeout
caused: pure logic over hand-made ledgers."""

from test_checker import alive, end, pub, run, snap, start

from chaoslab.analysis.checker import WORKFLOW_HEADER


def workflow(wid, shape, ids, callback=None, t=10.0, outcome="ok", kind="shop.step"):
    return {"type": "workflow", "id": wid, "shape": shape, "node": "monitor", "scheduled": t, "t": t,
            "tasks": [[task_id, kind] for task_id in ids], "callback": [callback, "shop.done"] if callback else None,
            "outcome": outcome}


def ran(task_id, t, outcome="success", **kwargs):
    """A start and an end record of one execution."""
    return [start(task_id, t, kind="shop.step", **kwargs), end(task_id, t + 1, outcome, kind="shop.step", **kwargs)]


def verdict(records, **kwargs):
    summary = run(records, **kwargs)
    (result,) = summary.workflow_results
    return summary, result


def test_a_chain_whose_links_all_ran_finished_and_its_later_links_count_as_published_by_the_workers():
    records = [workflow("w", "chain", ["a", "b", "c"]), pub("a", 10, kind="shop.step"),
               *ran("a", 11), *ran("b", 13), *ran("c", 15)]
    summary, result = verdict(records)
    assert (result.verdict, result.tasks, result.completed, result.link) == ("finished", 3, 3, None)
    by_id = {task.id: task for task in summary.tasks}
    assert {task.cls for task in summary.tasks} == {"completed"} and len(by_id) == 3
    # b was published when a succeeded (its end at 12): its end to end counts from there
    assert by_id["b"].publish_t == 12 and by_id["c"].publish_t == 14
    assert summary.workflows == {"chain": {"finished": 1}} and summary.unknown_ids == []


def test_a_chain_whose_second_link_was_lost_is_broken_there_and_its_third_link_was_never_reached():
    records = [workflow("w", "chain", ["a", "b", "c"]), pub("a", 10, kind="shop.step"), *ran("a", 11),
               start("b", 13, kind="shop.step", pid=7, ps=1.0), alive("w1", (1, 1.0))]
    summary, result = verdict(records)
    assert (result.verdict, result.link, result.link_class, result.link_cause) == ("broken", 2, "lost",
                                                                                   "killed_running")
    assert "c" not in {task.id for task in summary.tasks}  # never published: no verdict of its own
    assert summary.to_dict()["workflow_ids"]["broken"] == ["w"]


def test_a_chain_whose_link_failed_is_broken_at_that_link():
    records = [workflow("w", "chain", ["a", "b"]), pub("a", 10, kind="shop.step"), *ran("a", 11, "failure")]
    _summary, result = verdict(records)
    assert (result.verdict, result.link, result.link_class, result.link_cause) == ("broken", 1, "failed",
                                                                                   "RuntimeError")


def test_a_chain_whose_next_link_is_still_queued_is_pending():
    records = [workflow("w", "chain", ["a", "b"]), pub("a", 10, kind="shop.step"), *ran("a", 11)]
    _summary, result = verdict(records, snapshot=snap(queued=["b"]))
    assert (result.verdict, result.link, result.link_class) == ("pending", 2, "pending")


def test_a_group_with_a_member_lost_is_broken_at_that_member():
    records = [workflow("w", "group", ["a", "b", "c"]), *(pub(i, 10, kind="shop.step") for i in "abc"),
               *ran("a", 11), *ran("c", 11)]
    _summary, result = verdict(records)
    assert (result.verdict, result.link, result.link_class, result.completed) == ("broken", 2, "lost", 2)


def test_a_chord_whose_callback_ran_once_finished():
    records = [workflow("w", "chord", ["a", "b"], callback="cb"), *(pub(i, 10, kind="shop.step") for i in "ab"),
               *ran("a", 11), *ran("b", 12), *ran("cb", 14)]
    summary, result = verdict(records)
    assert (result.verdict, result.callback_runs, result.completed, result.tasks) == ("finished", 1, 3, 3)
    callback = next(task for task in summary.tasks if task.id == "cb")
    assert callback.kind == "shop.done" and callback.publish_t == 13  # when the header's last member succeeded


def test_a_chord_whose_callback_ran_twice_is_callback_repeated():
    records = [workflow("w", "chord", ["a", "b"], callback="cb"), *(pub(i, 10, kind="shop.step") for i in "ab"),
               *ran("a", 11), *ran("b", 12), *ran("cb", 14), *ran("cb", 16, pid=2)]
    summary, result = verdict(records)
    assert (result.verdict, result.callback_runs, result.duplicated) == ("callback_repeated", 2, 1)
    assert summary.workflows == {"chord": {"callback_repeated": 1}}


def test_a_chord_whose_header_completed_and_whose_callback_never_ran_is_callback_never():
    records = [workflow("w", "chord", ["a", "b"], callback="cb"), *(pub(i, 10, kind="shop.step") for i in "ab"),
               *ran("a", 11), *ran("b", 12)]
    _summary, result = verdict(records)
    assert (result.verdict, result.callback_runs, result.link, result.link_class) == ("callback_never", 0, 3,
                                                                                      "lost")


def test_a_chord_whose_header_member_failed_is_broken_and_its_callback_was_never_reached():
    records = [workflow("w", "chord", ["a", "b"], callback="cb"), *(pub(i, 10, kind="shop.step") for i in "ab"),
               *ran("a", 11), *ran("b", 12, "failure")]
    summary, result = verdict(records)
    assert (result.verdict, result.link, result.link_class, result.callback_runs) == ("broken", 2, "failed", 0)
    assert "cb" not in {task.id for task in summary.tasks}


def main_kill(t):
    return {"type": "fault", "event": "kill", "fault": "worker-kill", "node": "w1", "t": t, "pids": [7], "main": True}


def test_a_chains_link_lost_after_its_predecessors_run_was_killed_was_sent_again_by_the_next_run():
    # a's first run (pid 7) was killed at 11.6 before its end record; its next run (after the visibility timeout)
    # succeeded at 23 and sent b again (the same id): the kill does not explain b's loss, a kill after 23 would
    records = [workflow("w", "chain", ["a", "b"]), pub("a", 10, kind="shop.step"),
               start("a", 11, kind="shop.step", pid=7), *ran("a", 22, pid=2)]
    for kill, expected in ((11.6, "never_delivered"), (23.5, "taken_by_killed_worker")):
        summary, result = verdict([*records, main_kill(kill)], snapshot=snap())
        b = next(task for task in summary.tasks if task.id == "b")
        assert (b.cls, b.cause, b.publish_t) == ("lost", expected, 23), kill
        assert (result.verdict, result.link, result.link_cause) == ("broken", 2, expected), kill


def test_a_chords_callback_lost_when_the_run_that_completed_its_header_was_killed_was_lost_with_its_publisher():
    # b's first run began at 12.5, a had succeeded at 12 and b was killed at 13: that run may have completed the
    # header and sent the callback; its second run (after the visibility timeout) finds the chord done
    header = [workflow("w", "chord", ["a", "b"], callback="cb"), *(pub(i, 10, kind="shop.step") for i in "ab"),
              *ran("a", 11), start("b", 12.5, kind="shop.step", pid=7), *ran("b", 24, pid=2)]
    summary, result = verdict([*header, main_kill(13.0)], snapshot=snap())
    callback = next(task for task in summary.tasks if task.id == "cb")
    assert (callback.cls, callback.cause, callback.publish_t) == ("lost", "publisher_killed", 25)
    assert (result.verdict, result.link_cause) == ("callback_never", "publisher_killed")
    # killed before a succeeded, b's first run could not have completed the header; nor could a run that ended
    # (here in failure); and without a kill nothing explains the loss
    late_a = [*header[:3], *ran("a", 14), *header[5:], main_kill(13.0)]
    ended = [*header[:5], end("b", 12.8, "failure", kind="shop.step", pid=7), *header[5:], main_kill(13.0)]
    for records in (late_a, ended, header):
        summary, _result = verdict(records, snapshot=snap())
        assert next(task.cause for task in summary.tasks if task.id == "cb") == "never_delivered"


def test_a_canvas_whose_publish_failed_is_publish_failed():
    records = [workflow("w", "group", ["a"], outcome="timeout"), pub("a", 10, "timeout", kind="shop.step")]
    _summary, result = verdict(records)
    assert (result.verdict, result.link_cause) == ("publish_failed", "timeout")
    assert result._fields == WORKFLOW_HEADER


def held(task_id, t, eta, vt, **kwargs):
    record = start(task_id, t, kind="shop.step", **kwargs)
    record.update(eta=eta, vt=vt)
    return record


def test_a_countdown_beyond_the_visibility_timeout_that_ran_twice_is_a_duplicate_with_that_cause():
    # published at 10 with an ETA at 50; the visibility timeout is 20 s: the message was handed out again at ~30
    records = [pub("a", 10, kind="shop.step"), held("a", 50, 50, 20), end("a", 51, kind="shop.step"),
               held("a", 50.5, 50, 20, pid=2, redelivered=True), end("a", 51.5, kind="shop.step", pid=2)]
    summary = run(records)
    (task,) = summary.tasks
    assert (task.cls, task.cause) == ("duplicated_completed", "eta_beyond_visibility_timeout")
    assert summary.causes == {"duplicated_completed": {"eta_beyond_visibility_timeout": 1}}


def test_a_countdown_within_the_visibility_timeout_is_no_such_cause():
    records = [pub("a", 10, kind="shop.step"), held("a", 20, 20, 3600), end("a", 21, kind="shop.step"),
               held("a", 20.5, 20, 3600, pid=2, redelivered=True), end("a", 21.5, kind="shop.step", pid=2)]
    (task,) = run(records).tasks
    assert (task.cls, task.cause) == ("duplicated_completed", None)


def test_workflows_csv_reads_back_and_the_report_says_where_a_chain_stopped(tmp_path):
    from chaoslab.analysis.run_dir import read_workflows, write_check
    from chaoslab.report.report import _workflows_section

    records = [workflow("w", "chain", ["a", "b", "c"]), pub("a", 10, kind="shop.step"), *ran("a", 11),
               start("b", 13, kind="shop.step", pid=7, ps=1.0), alive("w1", (1, 1.0)),
               workflow("v", "chain", ["d"]), pub("d", 10, kind="shop.step"), *ran("d", 11)]
    summary = run(records)
    output = write_check(summary, tmp_path)
    assert read_workflows(tmp_path) == summary.workflow_results
    assert output.summary["workflow_gaps"] == {"chain": {"2: lost (killed_running)": 1}}
    html = _workflows_section(output.summary)
    assert "task 2: lost (killed_running) x1" in html and "<td>chain</td>" in html
    assert _workflows_section(run([pub("x", 10), *ran("x", 11)]).to_dict()) == ""  # no canvases, no section
    assert read_workflows(tmp_path / "none") is None


def test_a_malformed_workflow_record_is_counted_never_fatal():
    bad = [workflow("w", "chord", [], callback="cb"), {**workflow("v", "chord", ["a"]), "callback": "xy"},
           workflow("u", "spiral", ["a"]), {**workflow("t", "chain", ["a"]), "tasks": "ab"}]
    summary = run([*bad, pub("a", 10, kind="shop.step"), *ran("a", 11)])
    assert summary.records["malformed"] == 4 and summary.workflow_results == []
    assert [task.cls for task in summary.tasks] == ["completed"]


def test_a_link_whose_predecessor_only_the_result_backend_saw_succeed_was_published():
    from chaoslab.broker_state import TaskMeta

    # a stored its result and its process died before the end record; b ran, and the chain finished
    records = [workflow("w", "chain", ["a", "b"]), pub("a", 10, kind="shop.step"),
               start("a", 11, kind="shop.step"), *ran("b", 13)]
    looked_up: list[list[str]] = []

    def results(ids):
        looked_up.append(sorted(ids))
        return {task_id: TaskMeta("SUCCESS", None, "celery@w1", 12.0) for task_id in ids}

    summary, result = verdict(records, snapshot=snap(), results=results)
    assert result.verdict == "finished" and summary.unknown_ids == []
    assert {task.id: task.cls for task in summary.tasks} == {"a": "completed", "b": "completed"}
    assert next(task for task in summary.tasks if task.id == "b").publish_t == 12.0


def test_a_terminated_task_with_no_alive_record_is_the_workers_not_pending():
    revoked = {"type": "revoked", "id": "a", "node": "w1", "pid": 1, "ps": None, "t": 20, "expired": False,
               "terminated": True}
    (task,) = run([pub("a", 10, kind="shop.step"), start("a", 11, kind="shop.step"), revoked]).tasks
    assert (task.cls, task.cause) == ("failed_by_worker", "terminated")


def test_an_unreadable_eta_is_no_eta_and_the_execution_still_counts():
    records = [pub("a", 10, kind="shop.step"), held("a", 20, "soon", 10), end("a", 21, kind="shop.step")]
    summary = run(records)
    assert summary.records["malformed"] == 0 and [task.cls for task in summary.tasks] == ["completed"]
