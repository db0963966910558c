"""The checker on synthetic histories with known answers, and on generated ground truth."""

import csv
import json
import random
from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaoslab.checker import (
    CSV_HEADER,
    FaultWindow,
    Phase,
    RecoveryParams,
    check,
    delivery_guarantee,
    latency_stats,
    nearest_rank,
    write_summary,
)

PHASES = [Phase("baseline", 0, 30), Phase("fault", 30, 60), Phase("recovery", 60, 100)]
RUN_END = 100.0


# --- record builders ------------------------------------------------------------------------


def pub(task_id, t, outcome="ok", kind="noop"):
    error = None if outcome == "ok" else "ConnectionError"
    return {"type": "publish", "id": task_id, "kind": kind, "t": t, "outcome": outcome, "error": error}


def start(task_id, t, attempt=0, node="w1", pid=1, redelivered=False, kind="noop"):
    return {
        "type": "start",
        "id": task_id,
        "kind": kind,
        "node": node,
        "pid": pid,
        "attempt": attempt,
        "redelivered": redelivered,
        "received": None,
        "t": t,
    }


def end(task_id, t, outcome="success", attempt=0, node="w1", pid=1, kind="noop"):
    error_type = None if outcome == "success" else "RuntimeError"
    return {
        "type": "end",
        "id": task_id,
        "kind": kind,
        "node": node,
        "pid": pid,
        "attempt": attempt,
        "t": t,
        "outcome": outcome,
        "error_type": error_type,
    }


def run(records, phases=PHASES, faults=(), run_end=RUN_END, **kwargs):
    return check(records, phases, faults, run_end, **kwargs)


def only_task(summary):
    (task,) = summary.tasks
    return task


# --- one task per class ---------------------------------------------------------------------


def test_completed_task_and_its_latencies():
    summary = run([pub("a", 1.0), start("a", 1.25), end("a", 2.0)])
    task = only_task(summary)
    assert (task.cls, task.executions, task.final, task.successes) == ("completed", 1, "success", 1)
    assert task.queue_wait == pytest.approx(0.25)
    assert task.run_time == pytest.approx(0.75)
    assert task.end_to_end == pytest.approx(1.0)
    assert (task.first_start, task.last_end, task.completed_at, task.finished_at) == (1.25, 2.0, 2.0, 2.0)
    assert task.duplicate_cause is None
    assert task.nodes == "w1"


def test_duplicated_by_redelivery_of_the_same_attempt():
    records = [pub("a", 1.0), start("a", 2.0, node="w1"), start("a", 40.0, node="w2"), end("a", 41.0, node="w2")]
    summary = run(records)
    task = only_task(summary)
    assert (task.cls, task.duplicate_cause, task.executions, task.final) == ("duplicated", "redelivery", 2, "success")
    assert task.nodes == "w1;w2"
    assert task.queue_wait == pytest.approx(1.0)  # of the first execution
    assert task.run_time == pytest.approx(1.0)  # of the successful one
    assert task.end_to_end == pytest.approx(40.0)
    assert summary.duplicates.by_cause == {"redelivery": 1, "retry": 0}
    assert summary.duplicates.succeeded == 1


def test_redelivered_flag_marks_redelivery_even_with_distinct_attempts():
    records = [pub("a", 1.0), start("a", 2), end("a", 3, "retry"), start("a", 5, attempt=1, redelivered=True)]
    records.append(end("a", 6, attempt=1))
    assert only_task(run(records)).duplicate_cause == "redelivery"


def test_redelivered_flag_on_a_single_execution_is_not_a_duplicate():
    summary = run([pub("a", 1.0), start("a", 2.0, redelivered=True), end("a", 3.0)])
    assert only_task(summary).cls == "completed"
    assert summary.delivery.guarantee == "exactly-once"


def test_duplicated_by_retry_that_succeeded():
    records = [pub("a", 1), start("a", 2), end("a", 3, "retry"), start("a", 5, attempt=1), end("a", 7, attempt=1)]
    task = only_task(run(records))
    assert (task.cls, task.duplicate_cause, task.final, task.successes) == ("duplicated", "retry", "success", 1)
    assert task.end_to_end == pytest.approx(6.0)
    assert task.run_time == pytest.approx(2.0)


def test_duplicated_by_retry_that_finally_failed():
    records = [pub("a", 1), start("a", 2), end("a", 3, "retry"), start("a", 5, attempt=1)]
    records.append(end("a", 7, "failure", attempt=1))
    summary = run(records)
    task = only_task(summary)
    assert (task.cls, task.final, task.successes, task.end_to_end) == ("duplicated", "failure", 0, None)
    assert summary.duplicates.succeeded == 0


def test_redelivery_that_ran_the_task_to_success_twice():
    records = [pub("a", 1), start("a", 2), end("a", 3), start("a", 4, node="w2"), end("a", 5, node="w2")]
    summary = run(records)
    assert only_task(summary).successes == 2
    assert summary.duplicates.succeeded_more_than_once == 1


def test_failed_task():
    task = only_task(run([pub("a", 1), start("a", 2), end("a", 3, "failure")]))
    assert (task.cls, task.final, task.end_to_end, task.finished_at) == ("failed", "failure", None, 3)


def test_lost_task_never_started():
    summary = run([pub("a", 1)])
    task = only_task(summary)
    assert (task.cls, task.executions, task.final, task.queue_wait, task.nodes) == ("lost", 0, "none", None, "")
    assert summary.to_dict()["ids"]["lost"] == ["a"]


def test_a_retry_that_never_started_again_is_lost():
    assert only_task(run([pub("a", 1), start("a", 2), end("a", 3, "retry")])).cls == "lost"


def test_stuck_task_started_and_never_ended():
    task = only_task(run([pub("a", 1), start("a", 2)]))
    assert (task.cls, task.final, task.last_end, task.run_time) == ("stuck", "unfinished", None, None)


def test_an_end_after_the_run_end_is_ignored():
    summary = run([pub("a", 1), start("a", 99.0), end("a", 100.5)])
    assert only_task(summary).cls == "stuck"
    assert summary.records["after_run_end"] == 1


@pytest.mark.parametrize("outcome", ["error", "timeout"])
def test_publish_failed_keeps_its_class_even_if_it_executed(outcome):
    records = [pub("a", 1, outcome), pub("b", 1, outcome), start("b", 2), end("b", 3)]
    summary = run(records)
    assert [task.cls for task in summary.tasks] == ["publish_failed", "publish_failed"]
    assert summary.publish_failed_executed() == ["b"]
    data = summary.to_dict()
    assert data["publish_failed_executed"] == 1
    assert data["ids"]["publish_failed"] == ["a", "b"]
    assert data["ids"]["publish_failed_executed"] == ["b"]
    assert summary.delivery.missing == 0  # the producer knew: not a delivery failure


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
        "completed",
        1,
        None,
        None,
        None,
    )
    assert task.end_to_end == pytest.approx(2.0)


def test_ends_pair_with_starts_of_the_same_process():
    records = [pub("a", 1), start("a", 2, pid=1), start("a", 3, pid=2), end("a", 10, pid=1), end("a", 4, pid=2)]
    task = only_task(run(records))
    assert task.executions == 2
    assert task.run_time == pytest.approx(8.0)  # the latest-ended success: pid 1, 2 -> 10
    assert task.completed_at == 4


def test_an_ok_publish_wins_over_an_earlier_failed_one():
    summary = run([pub("a", 1, "timeout"), pub("a", 2), start("a", 3), end("a", 4)])
    task = only_task(summary)
    assert (task.cls, task.publish_t) == ("completed", 2)
    assert summary.records["repeated_publish"] == 1


def test_record_order_does_not_matter():
    records = [pub("a", 1), start("a", 2), end("a", 3, "retry"), start("a", 5, attempt=1), end("a", 6, attempt=1)]
    records += [pub("b", 1), start("b", 2), pub("c", 1, "error"), start("d", 1)]
    expected = run(records).to_dict()
    for seed in range(5):
        shuffled = records[:]
        random.Random(seed).shuffle(shuffled)
        assert run(shuffled).to_dict() == expected


def test_malformed_record_is_reported():
    with pytest.raises(ValueError, match="malformed ledger record"):
        run([{"type": "start", "id": "a"}])


def test_overlapping_phases_are_refused():
    with pytest.raises(ValueError, match="time order"):
        run([], phases=[Phase("a", 0, 10), Phase("b", 5, 20)])


# --- phases ----------------------------------------------------------------------------------


def test_tasks_count_in_the_phase_they_were_published_completions_where_they_ended():
    records = [pub("a", 10), start("a", 20), end("a", 35)]  # published in baseline, done in fault
    records += [pub("b", 40, kind="sleep"), start("b", 41, kind="sleep")]
    records += [pub("c", 150)]  # outside every phase
    summary = run(records, run_end=200)
    baseline, fault, recovery = summary.phases
    assert (baseline.published, baseline.completed, baseline.classes["completed"]) == (1, 0, 1)
    assert (fault.published, fault.completed, fault.classes["stuck"]) == (1, 1, 1)
    assert fault.throughput == pytest.approx(1 / 30)
    assert baseline.throughput == 0
    assert recovery.published == 0
    assert summary.overall.published == 3
    assert summary.overall.completed == 1
    assert (summary.overall.start, summary.overall.end) == (0, 200)


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
    assert summary.faults == [FaultWindow("kill", 10, 20)]


# --- delivery guarantee ----------------------------------------------------------------------


COMPLETED = [pub("ok", 1), start("ok", 2), end("ok", 3)]
LOST = [pub("lost", 1)]
STUCK = [pub("stuck", 1), start("stuck", 2)]
REDELIVERED = [pub("dup", 1), start("dup", 2), start("dup", 4, node="w2"), end("dup", 5, node="w2")]
RETRIED = [pub("re", 1), start("re", 2), end("re", 3, "retry"), start("re", 4, attempt=1), end("re", 5, attempt=1)]
FAILED = [pub("bad", 1), start("bad", 2), end("bad", 3, "failure")]


@pytest.mark.parametrize(
    ("records", "guarantee"),
    [
        (COMPLETED + FAILED + RETRIED, "exactly-once"),
        (COMPLETED + REDELIVERED, "at-least-once"),
        (COMPLETED + LOST, "at-most-once"),
        (COMPLETED + STUCK, "at-most-once"),
        (COMPLETED + LOST + REDELIVERED, "none"),
    ],
    ids=["exactly-once", "at-least-once", "at-most-once-lost", "at-most-once-stuck", "none"],
)
def test_delivery_guarantee(records, guarantee):
    assert run(records).delivery.guarantee == guarantee


def test_delivery_guarantee_table():
    assert [delivery_guarantee(m, r) for m, r in [(0, 0), (0, 2), (3, 0), (1, 1)]] == [
        "exactly-once",
        "at-least-once",
        "at-most-once",
        "none",
    ]


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


def half_lost_after_fault():
    """The fault's tasks are lost, and after it only half the tasks run: 5/s against 10/s."""
    records = steady_history(lambda j: None)
    after_fault = {f"{second}-{i}" for second in range(30, 80) for i in range(0, BASE_RATE, 2)}
    return [r for r in records if r["type"] == "publish" or r["id"] not in after_fault]


def test_no_recovery_when_throughput_stays_low():
    recovery = recovery_of(half_lost_after_fault())
    assert recovery.time_s is None
    assert recovery.note == "not recovered by the run end"


def test_recovery_tolerance_is_a_parameter():
    loose = RecoveryParams(tolerance=0.6)  # 5/s is within 60 % of 10/s
    summary = run(half_lost_after_fault(), phases=RECOVERY_PHASES, faults=[FAULT], run_end=80.0, recovery=loose)
    assert summary.recovery.time_s == 0.0


def test_recovery_needs_a_baseline_and_a_fault():
    records = steady_history(lambda j: 30.06 + j / BASE_RATE)
    assert run(records, phases=RECOVERY_PHASES, faults=[], run_end=80.0).recovery.time_s is None
    no_baseline = [Phase("warmup", 0, 20), *RECOVERY_PHASES[1:]]
    assert run(records, phases=no_baseline, faults=[FAULT], run_end=80.0).recovery.note == "no 'baseline' phase"


# --- writing the summary ---------------------------------------------------------------------


def test_write_summary_writes_json_and_one_csv_row_per_task(tmp_path):
    records = COMPLETED + LOST + STUCK + REDELIVERED + FAILED + [pub("pf", 1, "error"), start("ghost", 2)]
    summary = run(records)
    summary_path, tasks_path = write_summary(summary, tmp_path / "out")
    data = json.loads(summary_path.read_text())
    assert data["tasks"] == 6
    assert data["classes"] == {
        "completed": 1,
        "duplicated": 1,
        "failed": 1,
        "lost": 1,
        "stuck": 1,
        "publish_failed": 1,
    }
    assert data["ids"] == {
        "duplicated": ["dup"],
        "failed": ["bad"],
        "lost": ["lost"],
        "stuck": ["stuck"],
        "publish_failed": ["pf"],
        "publish_failed_executed": [],
        "unknown": ["ghost"],
    }
    assert data["delivery"] == {"guarantee": "none", "missing": 2, "redelivered": 1}
    with tasks_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_HEADER
    assert {row["id"]: row["class"] for row in rows} == {
        "ok": "completed",
        "lost": "lost",
        "stuck": "stuck",
        "dup": "duplicated",
        "bad": "failed",
        "pf": "publish_failed",
    }
    dup = next(row for row in rows if row["id"] == "dup")
    assert (dup["executions"], dup["nodes"], dup["duplicate_cause"], dup["queue_wait"]) == (
        "2",
        "w1;w2",
        "redelivery",
        "1",
    )
    assert next(row for row in rows if row["id"] == "lost")["first_start"] == ""


# --- property: generated ground truth --------------------------------------------------------

NODES = ("w1", "w2")
PIDS = (11, 12)


@dataclass
class Truth:
    """What a task really did, and what the checker must conclude from its records."""

    id: str
    kind: str
    publish_t: float
    publish_outcome: str
    cls: str
    cause: str | None
    final: str
    executions: list[dict] = field(default_factory=list)  # attempt, redelivered, node, pid, start, end, outcome

    @property
    def successes(self) -> list[dict]:
        return [e for e in self.executions if e["outcome"] == "success"]

    @property
    def finished(self) -> bool:
        return any(e["outcome"] in ("success", "failure") for e in self.executions)

    def records(self) -> list[dict]:
        out = [pub(self.id, self.publish_t, self.publish_outcome, self.kind)]
        for e in self.executions:
            where = {"attempt": e["attempt"], "node": e["node"], "pid": e["pid"], "kind": self.kind}
            out.append(start(self.id, e["start"], redelivered=e["redelivered"], **where))
            if e["outcome"] is not None:
                out.append(end(self.id, e["end"], e["outcome"], **where))
        return out


# Each scenario: (class, cause, outcomes of the executions as a strategy, how attempts go)
OUTCOME = st.sampled_from(["success", "failure", None])
SCENARIOS = {
    "completed": st.just(["success"]),
    "failed": st.just(["failure"]),
    "stuck": st.just([None]),
    "lost": st.just([]),
    "lost_retry": st.just(["retry"]),
    "dup_retry": st.tuples(st.integers(1, 3), st.sampled_from(["success", "failure", "retry", None])).map(
        lambda t: ["retry"] * t[0] + [t[1]]
    ),
    "dup_redelivery": st.tuples(st.lists(st.sampled_from(["success", None]), min_size=1, max_size=3), OUTCOME).map(
        lambda t: [*t[0], t[1]]
    ),
    "publish_failed": st.lists(st.sampled_from(["success", "failure", "retry", None]), max_size=2),
}


def _expected(scenario: str, outcomes: list) -> tuple[str, str | None, str]:
    """The class, duplicate cause and final state, stated per scenario (not computed like the checker)."""
    if "success" in outcomes:
        final = "success"
    elif outcomes:
        final = outcomes[-1] or "unfinished"
    else:
        final = "none"
    if scenario == "publish_failed":
        return "publish_failed", _cause_of_chain(outcomes), final
    cause = {"dup_retry": "retry", "dup_redelivery": "redelivery"}.get(scenario)
    cls = {"lost_retry": "lost", "dup_retry": "duplicated", "dup_redelivery": "duplicated"}.get(scenario, scenario)
    return cls, cause, final


def _cause_of_chain(outcomes: list) -> str | None:
    return "retry" if len(outcomes) > 1 else None  # publish_failed tasks run as a retry chain


@st.composite
def truths(draw, index: int) -> Truth:
    scenario = draw(st.sampled_from(sorted(SCENARIOS)))
    outcomes = draw(SCENARIOS[scenario])
    publish_outcome = draw(st.sampled_from(["error", "timeout"])) if scenario == "publish_failed" else "ok"
    cls, cause, final = _expected(scenario, outcomes)
    truth = Truth(
        id=f"t{index}",
        kind=draw(st.sampled_from(["noop", "sleep"])),
        publish_t=draw(st.floats(0, 60, allow_nan=False)),
        publish_outcome=publish_outcome,
        cls=cls,
        cause=cause,
        final=final,
    )
    clock = truth.publish_t
    flag_redelivery = scenario == "dup_redelivery" and draw(st.booleans())
    for number, outcome in enumerate(outcomes):
        attempt = number if scenario != "dup_redelivery" or flag_redelivery else 0
        begin = clock + draw(st.floats(0.001, 5))
        finish = begin + draw(st.floats(0.001, 3))
        truth.executions.append(
            {
                "attempt": attempt,
                "redelivered": flag_redelivery and number > 0,
                "node": draw(st.sampled_from(NODES)),
                "pid": draw(st.sampled_from(PIDS)),
                "start": begin,
                "end": finish,
                "outcome": outcome,
            }
        )
        clock = finish
    return truth


@st.composite
def histories(draw) -> tuple[list[Truth], list[dict]]:
    count = draw(st.integers(0, 25))
    tasks = [draw(truths(index)) for index in range(count)]
    records = [record for task in tasks for record in task.records()]
    ghosts = draw(st.integers(0, 3))
    records += [start(f"ghost{n}", 50.0 + n) for n in range(ghosts)]
    return tasks, draw(st.permutations(records))


@settings(max_examples=300, deadline=None)
@given(histories())
def test_checker_recovers_the_ground_truth(history):
    truth, records = history
    summary = run(records)
    by_id = {task.id: task for task in summary.tasks}
    assert sorted(by_id) == sorted(t.id for t in truth)
    for t in truth:
        got = by_id[t.id]
        assert (got.cls, got.duplicate_cause, got.final) == (t.cls, t.cause, t.final), t
        assert (got.executions, got.successes, got.kind) == (len(t.executions), len(t.successes), t.kind)
        assert got.nodes == ";".join(sorted({e["node"] for e in t.executions}))
        if t.executions:
            assert got.queue_wait == pytest.approx(t.executions[0]["start"] - t.publish_t)
        if t.successes:
            assert got.end_to_end == pytest.approx(t.successes[-1]["end"] - t.publish_t)
            assert got.completed_at == t.successes[0]["end"]
        else:
            assert got.end_to_end is None
    assert summary.classes == {cls: Counter(t.cls for t in truth)[cls] for cls in summary.classes}
    duplicated = [t for t in truth if t.cls == "duplicated"]
    assert summary.duplicates.by_cause == {
        "redelivery": sum(t.cause == "redelivery" for t in duplicated),
        "retry": sum(t.cause == "retry" for t in duplicated),
    }
    assert summary.duplicates.succeeded == sum(bool(t.successes) for t in duplicated)
    accepted = [t for t in truth if t.publish_outcome == "ok"]
    assert summary.delivery.missing == sum(not t.finished for t in accepted)
    assert summary.delivery.redelivered == sum(t.cause == "redelivery" for t in accepted)
    assert sorted(summary.publish_failed_executed()) == sorted(
        t.id for t in truth if t.cls == "publish_failed" and t.executions
    )
    assert summary.unknown_executions == len(summary.unknown_ids)
    for phase, stats in zip(PHASES, summary.phases, strict=True):
        mine = [t for t in truth if phase.start <= t.publish_t < phase.end]
        assert stats.published == len(mine)
        assert stats.classes == {cls: sum(t.cls == cls for t in mine) for cls in stats.classes}
        done = [t.successes[0]["end"] for t in truth if t.successes]
        assert stats.completed == sum(phase.start <= d < phase.end for d in done)
    assert summary.overall.published == len(truth)


def alive(node: str, *pids: int) -> dict:
    return {"type": "alive", "node": node, "pids": list(pids), "t": 100.0}


@pytest.mark.parametrize(
    ("alive_records", "cls", "cause"),
    [
        ([], "stuck", None),  # nothing says the process is gone
        ([alive("w1", 41)], "stuck", None),  # its process still runs: hung or still running
        ([alive("w1", 99)], "lost", "killed"),  # its process is gone: the work is lost
        ([alive("w2", 7)], "stuck", None),  # no record for its own node
    ],
)
def test_an_unfinished_execution_whose_process_is_gone_is_lost(alive_records, cls, cause):
    records = [pub("t", 1), {**start("t", 2), "node": "w1", "pid": 41}, *alive_records]
    summary = check(records, [], [], run_end=100.0)
    task = only_task(summary)
    assert (task.cls, task.lost_cause) == (cls, cause)
    assert summary.classes[cls] == 1


def test_never_started_and_retry_never_ran_are_lost_with_their_cause():
    records = [pub("a", 1), pub("b", 1), start("b", 2), {**end("b", 3), "outcome": "retry"}]
    causes = {task.id: (task.cls, task.lost_cause) for task in check(records, [], [], run_end=10.0).tasks}
    assert causes == {"a": ("lost", "never_started"), "b": ("lost", "retry_never_ran")}
