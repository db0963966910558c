"""The experiment runner through its public interface (``run``) on a fake lab: a run that keeps its hypothesis, one
that does not, an error in the fault phase and Ctrl-C in every phase. Whatever happens, the fault is cleared, the
load stopped and the ledgers collected, and the exit code says how the run ended."""

from __future__ import annotations

import io
import json
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
from rich.console import Console

from chaoslab import clock
from chaoslab.broker_state import BrokerState, TaskMeta
from chaoslab.experiment import runner, series
from chaoslab.experiment.ansible_runner import AnsibleError
from chaoslab.experiment.lab import Lab, LabInfo, TaskCounter
from chaoslab.experiment.redis_snapshot import BrokerInfo
from chaoslab.experiment.scenario import load_scenario
from chaoslab.ledger import LedgerWriter
from tests.conftest import ROOT

WORKERS = ("worker-1", "worker-2")
NODES = ("redis", "monitor", *WORKERS)
PIDS = {"worker-1": 101, "worker-2": 102}
RESTARTED_PID = 201
"""worker-1's main process after worker-kill killed it."""
PUBLISH_EVERY_S = 0.01
PHASE_S = 0.3
SCENARIO = f"""
name: fake-worker-kill
description: worker-1 killed under load, on a fake lab
celery: {{task_acks_late: false, worker_prefetch_multiplier: 4}}
load: {{rate: 100, seed: 1, mix: [{{kind: noop, weight: 1}}]}}
phases:
  - {{name: baseline, duration: {PHASE_S}s}}
  - name: fault
    duration: {PHASE_S}s
    fault: {{playbook: worker-kill, target: "workers[0]", params: {{mode: main}}}}
  - {{name: recovery, duration: {PHASE_S}s}}
  - {{name: drain, duration: {PHASE_S}s}}
hypothesis: {{lost: 0, publish_failed: 0}}
"""
STAGES = ("baseline", "fault", "recovery", "drain")
SETTINGS = {"task_acks_late": False, "worker_prefetch_multiplier": 4}


class FakeInfo(LabInfo):
    """The fake lab's addresses: nothing listens there, and it has no Redis to ask."""

    def redis(self, db: int = 0, timeout: float = 5.0) -> redis.Redis:
        raise redis.ConnectionError("the fake lab has no Redis")


class Events:
    """The live display's task counts: what the fake lab's workers have completed so far."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.running = False

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False


class FakeLab:
    """A lab in memory, in the shape of :class:`chaoslab.experiment.lab.LabControl`.

    It records every call the runner makes (``calls``), follows the run's stage from those calls, and keeps a history
    as the nodes would: while the load is on a task is published every PUBLISH_EVERY_S and run on the workers in turn;
    the fault writes its report and its records on worker-1. Its collection writes the ledgers where the real one
    fetches them (``publish.jsonl``, ``<worker>.jsonl`` with its ``alive`` record, ``<node>.events.jsonl`` with clock
    and fault records, ``<worker>.settings.json``). With *loses_tasks* the kill takes the tasks worker-1 was running;
    *fail* names the stage whose playbook fails, *interrupt* the stage in which Ctrl-C arrives; stopping the load
    takes *stop_s*.
    """

    def __init__(self, *, loses_tasks: bool = False, fail: str = "", interrupt: str = "", stop_s: float = 0.0,
                 killed: int = 1) -> None:
        self.info = FakeInfo(name="fake", redis_address="127.0.0.1", redis_port=1, monitor_address="127.0.0.1",
                            loadgen_metrics_port=1, workers=list(WORKERS), password="fake", prometheus_port=1,
                            groups={"redis": ["redis"], "monitor": ["monitor"], "workers": list(WORKERS),
                                    "all": list(NODES)})
        self.load_on: bool | None = None
        self.calls: list[tuple[Any, ...]] = []
        self.stage = ""
        self.loses_tasks, self.fail, self.interrupt, self.stop_s = loses_tasks, fail, interrupt, stop_s
        self.load: list[float] = []
        """When the load started and when it stopped."""
        self.fault_window: list[float] = []
        self.clock_times: list[float] = []
        self.celery: dict[str, Any] = {}
        # what worker-1's agent measured of the kill (chaoslab.node.fault_effect.worker_kill's shape)
        self.effect = {"asked": {"killed": "at least one worker process"},
                       "measured": {"killed": killed, "worker_back_after_s": 1.5}, "ratio": float(killed > 0),
                       "effective": killed > 0, "how": "processes the kill reached"}

    # --- the stage and what goes wrong in it ---------------------------------------------------------------------

    def _call(self, *call: Any) -> None:
        self.calls.append(call)
        if self.fail and self.fail == self.stage:
            self.fail = ""
            self.calls.append(("error", self.stage))
            raise AnsibleError(f"faults/worker-kill.yml: fatal: [worker-1]: failed in the {self.stage} stage")

    def _ctrl_c(self) -> None:
        """Ctrl-C: what Python's SIGINT handler raises in the main thread, once, in the chosen stage."""
        if self.interrupt and self.interrupt == self.stage:
            self.interrupt = ""
            self.calls.append(("SIGINT", self.stage))
            raise KeyboardInterrupt

    # --- the lab's interface --------------------------------------------------------------------------------------

    def apply_broker_settings(self, settings: dict[str, Any]) -> None:
        self._call("apply_broker_settings", settings)

    def size(self, sizes: dict[str, dict[str, Any]]) -> None:
        self._call("size", sizes)

    def apply_broker(self, broker: str) -> None:
        self._call("apply_broker", broker)
        self.info = replace(self.info, broker=broker)

    def apply_app(self, app: dict[str, Any]) -> None:
        self._call("apply_app", app)
        self.app_tasks = {"minimal_app.add", "chaoslab.noop"} if app else None

    def registered(self) -> set[str] | None:
        return getattr(self, "app_tasks", None)

    def set_load(self, enabled: bool, profile: dict[str, Any] | None = None) -> None:
        if enabled:
            self.stage = "baseline"
        elif self.stage == "recovery":
            self.stage = "drain"
        self._call("set_load", enabled)
        if not enabled and self.load_on is False:
            return
        if not enabled:
            time.sleep(self.stop_s)
        if enabled:
            self.load = [time.time()]
        elif len(self.load) == 1:
            self.load.append(time.time())
        self.load_on = enabled

    def background_load(self) -> None:
        self._call("background_load")
        self.load_on = True

    def prepare(self, celery: dict[str, Any]) -> None:
        self._call("prepare", celery)
        self.celery = dict(celery)
        self.clock_times.append(time.time())
        self.load_on = False

    def fault(self, playbook_name: str, target: str | None, params: dict[str, Any], duration: float,
              report_dir: Path | None = None) -> list[dict[str, Any]]:
        self.stage = "fault"
        self._call("fault", playbook_name, target)
        start = time.time()
        self.fault_window = [start]
        report = {"fault": playbook_name, "node": "worker-1", "start": start, "deadline": start + duration,
                  "detail": {"signal": "KILL", "mode": "main"}}
        if report_dir is not None:
            report_dir.mkdir(parents=True, exist_ok=True)
            (report_dir / f"worker-1-{playbook_name}.json").write_text(json.dumps(report), encoding="utf-8")
        return [report]

    def clear(self) -> None:
        self._call("clear")
        if len(self.fault_window) == 1:
            self.fault_window.append(time.time())
        if self.stage == "fault":
            self.stage = "recovery"

    def collect(self, dest: Path, background_load: bool = False) -> list[Path]:
        self._call("collect", background_load)
        self.clock_times.append(time.time())
        self._write_ledgers(dest)
        if background_load:
            self.load_on = True
        return sorted(dest.glob("*.jsonl"))

    def store_metrics(self, start: float, end: float, directory: Path) -> Path:
        self._call("store_metrics")
        return series.store(self.info.prometheus_url, start, end, directory)  # nothing listens: every query failed

    def idle(self) -> bool:
        return True

    def broker_info(self) -> BrokerInfo:
        return BrokerInfo("fake-redis", time.time() - 3600, 0)

    def snapshot_broker(self, before: BrokerInfo | None) -> BrokerState:
        self._call("snapshot_broker")
        return BrokerState(taken=time.time())

    def task_results(self, ids: Iterable[str]) -> dict[str, TaskMeta]:
        self._call("task_results", sorted(ids))
        return {}

    def controller_clock(self) -> clock.Offset:
        return clock.Offset(t=time.time(), offset=0.0, uncertainty=0.0005)

    def task_events(self) -> TaskCounter:
        return Events()

    def published(self) -> Counter[str]:
        self._ctrl_c()
        if not self.load:
            return Counter()
        return Counter(ok=int(((self.load[1] if len(self.load) > 1 else time.time()) - self.load[0]) / PUBLISH_EVERY_S))

    # --- the history ----------------------------------------------------------------------------------------------

    def killed(self, node: str, t: float) -> bool:
        """Whether the execution of a task published at *t* on *node* was killed by the fault."""
        if not self.loses_tasks or node != "worker-1" or not self.fault_window:
            return False
        return self.fault_window[0] <= t < (self.fault_window[1] if len(self.fault_window) > 1 else time.time())

    def tasks(self) -> list[tuple[str, float, str]]:
        """(id, publish time, worker) of every task the load published."""
        if not self.load:
            return []
        stop = self.load[1] if len(self.load) > 1 else time.time()
        return [(f"task-{i:05d}", self.load[0] + i * PUBLISH_EVERY_S, WORKERS[i % len(WORKERS)])
                for i in range(int((stop - self.load[0]) / PUBLISH_EVERY_S))]

    def lost(self) -> list[str]:
        return [task_id for task_id, t, node in self.tasks() if self.killed(node, t)]

    def _pid(self, node: str, t: float) -> int:
        restarted = self.loses_tasks and node == "worker-1" and len(self.fault_window) > 1
        return RESTARTED_PID if restarted and t >= self.fault_window[1] else PIDS[node]

    def _write_ledgers(self, dest: Path) -> None:
        now = time.time()
        records: dict[str, list[dict[str, Any]]] = {"publish": [], **{node: [] for node in WORKERS}}
        events: dict[str, list[dict[str, Any]]] = {
            node: [{"type": "clock", "node": node, "t": t, "offset": 0.0, "uncertainty": 0.0005}
                   for t in self.clock_times] for node in NODES}
        for task_id, t, node in self.tasks():
            records["publish"].append({"type": "publish", "id": task_id, "kind": "noop", "scheduled": t,
                                       "t": t + 0.001, "outcome": "ok", "error": None})
            execution = {"id": task_id, "kind": "noop", "node": node, "pid": self._pid(node, t), "attempt": 0}
            records[node].append({"type": "start", **execution, "redelivered": False, "received": None,
                                  "t": t + 0.002})
            if not self.killed(node, t):
                records[node].append({"type": "end", **execution, "t": t + 0.004, "outcome": "success",
                                      "error_type": None})
        for node in WORKERS:
            records[node].append({"type": "alive", "node": node, "pids": [self._pid(node, now)], "t": now})
        if self.fault_window:
            fault = {"type": "fault", "fault": "worker-kill", "node": "worker-1"}
            events["worker-1"].append({**fault, "event": "applied", "t": self.fault_window[0], "params": {}})
            events["worker-1"].append({**fault, "event": "kill", "t": self.fault_window[0], "main": True,
                                       "pids": [PIDS["worker-1"]]})
            if len(self.fault_window) > 1:
                events["worker-1"].append({**fault, "event": "measured", "t": self.fault_window[1],
                                           "effect": self.effect})
                events["worker-1"].append({**fault, "event": "reverted", "t": self.fault_window[1], "by": "stop"})
        dest.mkdir(parents=True, exist_ok=True)
        for name, ledger in [*records.items(), *((f"{node}.events", lines) for node, lines in events.items())]:
            with LedgerWriter(dest / f"{name}.jsonl", fsync="never") as writer:
                for record in ledger:
                    writer.write(record)
        for node in WORKERS:
            (dest / f"{node}.settings.json").write_text(json.dumps(self.celery), encoding="utf-8")


def names(calls: list[tuple[Any, ...]]) -> list[str]:
    return [str(call[0]) for call in calls]


def after(calls: list[tuple[Any, ...]], marker: str) -> list[tuple[Any, ...]]:
    """The calls that came after the first *marker* call."""
    return calls[names(calls).index(marker) + 1:]


def in_order(calls: list[tuple[Any, ...]], *expected: tuple[Any, ...]) -> bool:
    """Whether *expected* appear among *calls* in this order (others may come between)."""
    remaining = iter(calls)
    return all(any(call == wanted for call in remaining) for wanted in expected)


def run_on(lab: Lab, tmp_path: Path, extra: str = "") -> tuple[int, Path, str]:
    """Run the scenario (with *extra* lines) on *lab*: the exit code, the run directory and what the runner
    printed."""
    path = tmp_path / "fake-worker-kill.yml"
    path.write_text(SCENARIO + extra, encoding="utf-8")
    output = io.StringIO()
    code = runner.run(load_scenario(path, ROOT), lab, tmp_path / "results", Console(file=output, width=200),
                      run_id="run-1")
    return code, tmp_path / "results" / "run-1", output.getvalue()


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def condition(verdict: dict[str, Any], figure: str) -> dict[str, Any]:
    return next(item for item in verdict["conditions"] if item["figure"] == figure)


def test_a_run_whose_hypothesis_holds_exits_0_with_its_verdict(tmp_path: Path) -> None:
    lab = FakeLab()
    code, run_dir, output = run_on(lab, tmp_path)
    assert code == runner.EXIT_PASS
    run = read_json(run_dir / "run.json")
    assert run["status"] == "completed" and run["error"] == ""
    assert [phase["name"] for phase in run["phases"]] == list(STAGES)
    assert all(phase["end"] >= phase["start"] + PHASE_S for phase in run["phases"])
    assert run["effective_settings"] == {node: SETTINGS for node in WORKERS}
    assert run["versions"]["lab"] == "fake" and run["versions"]["redis"] == "unknown (ConnectionError)"
    verdict = read_json(run_dir / "verdict.json")
    assert verdict["passed"] is True and verdict["headline"] == "hypothesis held"
    assert condition(verdict, "lost")["actual"] == 0
    assert verdict["figures"]["completed"] == len(lab.tasks()) > 50
    assert "hypothesis held" in output
    assert f"report: {run_dir / 'report.html'}" in output
    # the fault cleared once (after its phase, not again at the end), the load stopped before the drain
    assert in_order(lab.calls, ("prepare", SETTINGS),
                    ("set_load", True), ("fault", "worker-kill", "workers[0]"), ("clear",), ("set_load", False),
                    ("snapshot_broker",), ("collect", False), ("store_metrics",), ("background_load",))
    assert names(lab.calls).count("clear") == 1
    assert lab.load_on is True  # the lab's background load runs again


def test_a_run_whose_hypothesis_fails_exits_1_naming_the_lost_tasks(tmp_path: Path) -> None:
    lab = FakeLab(loses_tasks=True)
    code, run_dir, output = run_on(lab, tmp_path)
    assert code == runner.EXIT_FAIL
    lost = lab.lost()
    assert len(lost) >= 5
    verdict = read_json(run_dir / "verdict.json")
    assert verdict["passed"] is False and verdict["headline"] == "hypothesis did not hold"
    assert (condition(verdict, "lost")["holds"], condition(verdict, "lost")["actual"]) == (False, len(lost))
    assert condition(verdict, "publish_failed")["holds"] is True
    assert read_json(run_dir / "run.json")["status"] == "completed"
    assert "hypothesis did not hold" in output
    assert f"lost task ids ({len(lost)}): {lost[0]}" in output
    assert ("task_results", lost) in lab.calls  # the result backend asked about exactly the unfinished tasks


def assert_wound_down(lab: FakeLab, run_dir: Path, marker: str) -> dict[str, Any]:
    """After *marker*: the fault cleared, the load stopped and the ledgers collected, in this order; run.json says
    the run was aborted, every phase it began has an end, and no verdict was written."""
    assert in_order(after(lab.calls, marker), ("clear",), ("set_load", False), ("snapshot_broker",),
                    ("collect", False), ("background_load",))
    assert len(lab.load) == 2  # the load did stop
    ledgers = run_dir / "ledgers"
    assert sorted(path.name for path in ledgers.glob("*.jsonl")) == sorted(
        ["publish.jsonl", *(f"{node}.jsonl" for node in WORKERS), *(f"{node}.events.jsonl" for node in NODES)])
    assert len((ledgers / "publish.jsonl").read_text(encoding="utf-8").splitlines()) == len(lab.tasks())
    run = read_json(run_dir / "run.json")
    assert run["status"] == "aborted"
    assert all(phase["end"] is not None for phase in run["phases"])
    assert not (run_dir / "verdict.json").exists()
    return run


def test_an_error_in_the_fault_phase_exits_2_with_the_fault_cleared(tmp_path: Path) -> None:
    lab = FakeLab(fail="fault")
    code, run_dir, output = run_on(lab, tmp_path)
    assert code == runner.EXIT_ERROR
    run = assert_wound_down(lab, run_dir, "error")
    assert run["error"] == "AnsibleError: faults/worker-kill.yml: fatal: [worker-1]: failed in the fault stage"
    assert [phase["name"] for phase in run["phases"]] == ["baseline", "fault"]
    assert "run aborted" in output and "failed in the fault stage" in output


@pytest.mark.parametrize("stage", STAGES)
def test_ctrl_c_in_any_phase_exits_130_with_the_fault_cleared(tmp_path: Path, stage: str) -> None:
    lab = FakeLab(interrupt=stage)
    code, run_dir, output = run_on(lab, tmp_path)
    assert ("SIGINT", stage) in lab.calls
    assert code == runner.EXIT_INTERRUPTED
    run = assert_wound_down(lab, run_dir, "SIGINT")
    assert run["error"] == "interrupted (SIGINT)"
    assert [phase["name"] for phase in run["phases"]] == list(STAGES[:STAGES.index(stage) + 1])
    assert "run aborted" in output and "interrupted (SIGINT)" in output


def test_the_drain_lasts_its_duration_from_when_the_load_stopped(tmp_path: Path) -> None:
    """Stopping the load takes minutes on emulated VMs: the workers still get the drain's whole duration."""
    lab = FakeLab(stop_s=0.5)
    code, run_dir, _ = run_on(lab, tmp_path)
    assert code == runner.EXIT_PASS
    drain = read_json(run_dir / "run.json")["phases"][-1]
    assert drain["name"] == "drain"
    assert drain["end"] - drain["start"] >= 0.5 + PHASE_S
    assert drain["end"] - lab.load[1] >= PHASE_S


def test_output_that_is_no_terminal_gets_a_line_per_phase(tmp_path: Path) -> None:
    """A run piped to a log shows its progress as it goes (a live table writes nothing there until the end)."""
    _, _, output = run_on(FakeLab(), tmp_path)
    lines = [line for line in output.splitlines() if re.match(r"^\w+: elapsed \d+s, remaining \d+s, published", line)]
    assert [stage for stage in STAGES if any(line.startswith(f"{stage}: ") for line in lines)] == list(STAGES)


def test_a_long_phase_gets_a_progress_line_every_interval(monkeypatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(runner.time, "monotonic", lambda: clock[0])
    output = io.StringIO()
    lab = FakeLab()
    events = lab.task_events()
    events.counts.update(succeeded=7, failed=1)
    run = runner.Runner(lab, Console(file=output, width=200))
    display = runner.Display(lambda: Counter(ok=9, error=2), events, run.console)
    display.start_phase("fault", 60.0)
    for _ in range(25):  # 25 s of waiting, a look every second
        run._show(None, display)  # type: ignore[arg-type]  # no live table when the output is no terminal
        clock[0] += 1.0
    assert output.getvalue().splitlines() == [
        f"fault: elapsed {elapsed}s, remaining {60 - elapsed}s, published 9, publish errors 2, completed 7, failed 1"
        for elapsed in (0, 10, 20)]


class LabWithoutLedgers(FakeLab):
    """A lab whose ledger collection fails: the playbook stops before anything is fetched."""

    def collect(self, dest: Path, background_load: bool = False) -> list[Path]:
        self._call("collect", background_load)
        raise RuntimeError("playbooks/ledgers.yml: fatal: [monitor]: unreachable")


def test_a_run_whose_ledgers_were_not_collected_is_no_verdict(tmp_path: Path) -> None:
    """Judging an empty history would say "nothing lost": the run fails instead, and says why."""
    code, run_dir, output = run_on(LabWithoutLedgers(), tmp_path)
    assert code == runner.EXIT_ERROR
    run = read_json(run_dir / "run.json")
    assert run["status"] == "failed"
    assert run["error"] == ("the ledgers were not collected (collect ledgers: RuntimeError: playbooks/ledgers.yml: "
                            "fatal: [monitor]: unreachable)")
    assert not (run_dir / "verdict.json").exists()
    assert "run failed: the ledgers were not collected" in output


class LabWithoutLoad(FakeLab):
    """A lab whose load generator publishes nothing (it did not start, or crashed at once)."""

    def tasks(self) -> list[tuple[str, float, str]]:
        return []


def test_a_run_in_which_nothing_was_published_holds_no_hypothesis(tmp_path: Path) -> None:
    """"Nothing lost" of nothing published would read as a system that loses nothing."""
    code, run_dir, output = run_on(LabWithoutLoad(), tmp_path)
    assert code == runner.EXIT_FAIL
    verdict = read_json(run_dir / "verdict.json")
    assert verdict["passed"] is False and condition(verdict, "lost")["holds"] is True
    assert any(warning.startswith("no task was published") for warning in verdict["warnings"])
    assert "no task was published" in output


def test_a_run_sizes_the_nodes_its_scenario_names_and_puts_the_inventorys_back(tmp_path: Path) -> None:
    lab = FakeLab()
    code, _, _ = run_on(lab, tmp_path, "nodes: {workers: {memory: 1000MiB, cpus: 1}}\n")
    assert code == runner.EXIT_PASS
    sized = {worker: {"memory_mib": 1000, "cpus": 1.0} for worker in WORKERS}
    assert in_order(lab.calls, ("set_load", False), ("size", sized), ("prepare", SETTINGS), ("set_load", True),
                    ("collect", False), ("size", {}))


def test_a_studys_runner_sizes_once_for_runs_that_want_the_same_and_restores_at_the_end(tmp_path: Path) -> None:
    lab = FakeLab()
    (tmp_path / "sized.yml").write_text(SCENARIO + "nodes: {workers: {memory: 1000MiB}}\n", encoding="utf-8")
    (tmp_path / "plain.yml").write_text(SCENARIO.replace("name: fake-worker-kill", "name: plain"), encoding="utf-8")
    sized, plain = load_scenario(tmp_path / "sized.yml", ROOT), load_scenario(tmp_path / "plain.yml", ROOT)
    worker = runner.Runner(lab, Console(file=io.StringIO()), background_load=False, restore=False)
    for index, scenario in enumerate((sized, sized, plain, sized)):
        assert worker.run_cell(scenario, tmp_path / f"r{index}", f"r{index}") == runner.EXIT_PASS
    sizes = [call[1] for call in lab.calls if call[0] == "size"]
    wanted = {worker_name: {"memory_mib": 1000} for worker_name in WORKERS}
    assert sizes == [wanted, {}, wanted]  # the repeats share one sizing; the plain run gets the inventory's back
    worker.restore_settings()
    worker.restore_settings()
    assert [call[1] for call in lab.calls if call[0] == "size"] == [wanted, {}, wanted, {}]


def test_settings_left_changed_by_a_killed_study_are_put_back_by_the_next_runner(tmp_path: Path) -> None:
    lab = FakeLab()
    lab.info = replace(lab.info, secrets_file=str(tmp_path / "secrets.yml"))
    marker = tmp_path / runner.SETTINGS_MARKER
    (tmp_path / "sized.yml").write_text(SCENARIO + "nodes: {workers: {memory: 1000MiB}}\n", encoding="utf-8")
    (tmp_path / "plain.yml").write_text(SCENARIO.replace("name: fake-worker-kill", "name: plain"), encoding="utf-8")
    sized, plain = load_scenario(tmp_path / "sized.yml", ROOT), load_scenario(tmp_path / "plain.yml", ROOT)
    killed = runner.Runner(lab, Console(file=io.StringIO()), background_load=False, restore=False)
    assert not marker.exists()
    killed.run_cell(sized, tmp_path / "r1", "r1")
    assert marker.exists()  # the study died here, before restore_settings
    lab.calls.clear()
    after = runner.Runner(lab, Console(file=io.StringIO()))
    assert after.run_cell(plain, tmp_path / "r2", "r2") == runner.EXIT_PASS
    # what the lab runs on is not known either: site.yml provisions it all again (Redis's settings with it)
    assert in_order(lab.calls, ("set_load", False), ("apply_broker", "redis"), ("size", {}), ("prepare", SETTINGS))
    assert not marker.exists()
    lab.calls.clear()
    runner.Runner(lab, Console(file=io.StringIO())).run_cell(plain, tmp_path / "r3", "r3")
    assert not [call for call in lab.calls if call[0] in ("apply_broker_settings", "size")]  # back at the inventory's


def test_a_fault_that_did_nothing_holds_no_hypothesis_unless_the_scenario_accepts_it(tmp_path: Path) -> None:
    (tmp_path / "strict").mkdir()
    code, run_dir, output = run_on(FakeLab(killed=0), tmp_path / "strict")
    assert code == runner.EXIT_FAIL
    verdict = read_json(run_dir / "verdict.json")
    assert verdict["passed"] is False and condition(verdict, "lost")["holds"] is True
    assert verdict["figures"]["faults_not_effective"] == 1 and verdict["figures"]["fault_effect"] == 0
    warning = next(w for w in verdict["warnings"] if w.startswith("fault not effective"))
    assert warning.startswith("fault not effective: worker-kill on worker-1: asked killed at least one worker "
                              "process; measured killed 0, worker_back_after_s 1.5 (ratio 0)")
    assert "fault not effective" in output
    summary = read_json(run_dir / "summary.json")
    assert summary["faults"][0]["effect"]["effective"] is False
    accepted = SCENARIO.replace("params: {mode: main}}", "params: {mode: main}, accept_ineffective: true}")
    assert accepted != SCENARIO
    (tmp_path / "accepting").mkdir()
    path = tmp_path / "accepting" / "fake-worker-kill.yml"
    path.write_text(accepted, encoding="utf-8")
    code = runner.run(load_scenario(path, ROOT), FakeLab(killed=0), tmp_path / "accepting" / "results",
                      Console(file=io.StringIO(), width=200), run_id="run-1")
    assert code == runner.EXIT_PASS


def test_an_effective_fault_is_shown_with_what_was_asked_and_measured(tmp_path: Path) -> None:
    code, run_dir, _ = run_on(FakeLab(), tmp_path)
    assert code == runner.EXIT_PASS
    verdict = read_json(run_dir / "verdict.json")
    assert verdict["figures"]["faults_not_effective"] == 0 and verdict["figures"]["fault_effect"] == 1
    assert not any(w.startswith("fault not effective") for w in verdict["warnings"])
    report = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "asked" in report and "&quot;worker_back_after_s&quot;: 1.5" in report and "1, effective" in report


class TimedFakeLab(FakeLab):
    """The fake lab, noting when each fault was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[str | None, float, float]] = []

    def fault(self, playbook_name: str, target: str | None, params: dict[str, Any], duration: float,
              report_dir: Path | None = None) -> list[dict[str, Any]]:
        self.asked.append((target, time.time(), duration))
        return super().fault(playbook_name, target, params, duration, report_dir)


def test_several_faults_start_at_their_offsets_each_for_its_length(tmp_path: Path) -> None:
    lab = TimedFakeLab()
    text = SCENARIO.replace(
        '    fault: {playbook: worker-kill, target: "workers[0]", params: {mode: main}}\n',
        '    faults:\n'
        '      - {playbook: worker-kill, target: "workers[0]", params: {mode: main}}\n'
        '      - {playbook: worker-kill, target: "workers[1]", params: {mode: child}, at: 0.15s, duration: 0.1s}\n')
    assert text != SCENARIO
    path = tmp_path / "several.yml"
    path.write_text(text, encoding="utf-8")
    code = runner.run(load_scenario(path, ROOT), lab, tmp_path / "results", Console(file=io.StringIO(), width=200),
                      run_id="run-1")
    assert code == runner.EXIT_PASS
    run = read_json(tmp_path / "results" / "run-1" / "run.json")
    phase = next(phase for phase in run["phases"] if phase["name"] == "fault")
    (first, t1, d1), (second, t2, d2) = lab.asked
    assert (first, second) == ("workers[0]", "workers[1]")
    assert t1 - phase["start"] < 0.1 and 0.15 <= t2 - phase["start"] < 0.25
    assert d1 == pytest.approx(PHASE_S, abs=0.05) and d2 == pytest.approx(0.1)
    assert [(fault["target"], fault["at"], round(fault["duration"], 2)) for fault in run["faults"]] == [
        ("workers[0]", 0.0, round(d1, 2)), ("workers[1]", 0.15, 0.1)]
    assert names(lab.calls).count("clear") == 1


def test_a_drain_after_a_partition_lasts_as_long_again_as_the_cut(tmp_path: Path, monkeypatch) -> None:
    """A message popped for a cut-off worker's BRPOP sits in TCP's retransmission queue, whose backoff doubles: it
    may arrive as long after the cut as the cut lasted, so the drain does not end at the first quiet moment."""
    assert runner.drain_not_before([{"fault": "network-partition", "end": 100.0, "duration": 15.0},
                                    {"fault": "worker-pause", "end": 200.0, "duration": 50.0}]) == 115.0
    assert runner.drain_not_before([{"fault": "worker-pause", "end": 200.0, "duration": 50.0}]) == 0.0
    # armed by a trigger, its end unknown to the runner: its deadline bounds it
    assert runner.drain_not_before([{"fault": "network-partition", "armed": 90.0, "end": None, "duration": 15.0}]) \
        == 120.0
    monkeypatch.setattr(runner, "DRAIN_QUIET_S", 0.0)  # the fake lab is always idle: the drain could end at once
    path = tmp_path / "cut.yml"
    path.write_text("""
name: fake-partition
description: worker-1 cut off from Redis, on a fake lab
celery: {task_acks_late: false}
load: {rate: 100, seed: 1, mix: [{kind: noop, weight: 1}]}
phases:
  - {name: baseline, duration: 0.2s}
  - name: fault
    duration: 1s
    fault: {playbook: network-partition, target: "workers[0]", params: {peers: redis}}
  - {name: recovery, duration: 0.1s}
  - {name: drain, duration: 5s}
hypothesis: {publish_failed: 0}
""", encoding="utf-8")
    lab = FakeLab()
    runner.run(load_scenario(path, ROOT), lab, tmp_path / "results", Console(file=io.StringIO()), run_id="run-1")
    run = read_json(tmp_path / "results" / "run-1" / "run.json")
    (fault,) = run["faults"]
    drain = run["phases"][-1]
    assert drain["name"] == "drain" and run["drain"]["drained"] is True
    assert run["drain"]["at"] >= fault["end"] + fault["duration"] > drain["start"] + 0.5


def test_a_scenarios_app_is_put_on_the_workers_before_its_settings_and_taken_off_after(tmp_path: Path) -> None:
    source = ROOT / "examples" / "minimal"
    (tmp_path / "app.yml").write_text(SCENARIO + f"app: {{app: 'minimal_app:app', source: '{source}'}}\n",
                                      encoding="utf-8")
    scenario = load_scenario(tmp_path / "app.yml", ROOT)
    assert scenario.app == {"app": "minimal_app:app", "source": str(source), "requirements": []}
    lab = FakeLab()
    runner.Runner(lab, Console(file=io.StringIO())).run_cell(scenario, tmp_path / "r1", "r1")
    assert in_order(lab.calls, ("set_load", False), ("apply_app", scenario.app), ("prepare", SETTINGS),
                    ("set_load", True), ("apply_app", {}))
    # a task the app turns out not to have, once it is on the workers: the run stops before the load starts
    (tmp_path / "missing.yml").write_text(SCENARIO.replace("kind: noop", "task: minimal_app.sub") +
                                          f"app: {{app: 'minimal_app:app', source: '{source}'}}\n", encoding="utf-8")
    lab = FakeLab()
    code = runner.Runner(lab, Console(file=io.StringIO())).run_cell(load_scenario(tmp_path / "missing.yml", ROOT),
                                                                    tmp_path / "r2", "r2")
    assert code == runner.EXIT_ERROR and ("set_load", True) not in lab.calls
    state = json.loads((tmp_path / "r2" / "run.json").read_text())
    assert "has no task 'minimal_app.sub'" in state["error"] and ("apply_app", {}) in lab.calls


def test_a_broker_axis_runs_each_cell_on_its_broker_and_gives_the_lab_its_own_back_once(tmp_path: Path) -> None:
    """matrix: {broker: [...]}: the lab is switched to a cell's broker before its settings, the cells after it on the
    same broker are not switched again, and the lab's own comes back once, after the last cell, before its background
    load starts again."""
    lab = FakeLab()
    code, run, _ = run_on(lab, tmp_path, "matrix: {broker: [redis, rabbitmq], task_acks_late: [false, true]}\n")
    assert code == runner.EXIT_PASS
    assert [call[1] for call in lab.calls if call[0] == "apply_broker"] == ["rabbitmq", "redis"]
    assert in_order(lab.calls, ("prepare", SETTINGS), ("apply_broker", "rabbitmq"), ("prepare", SETTINGS),
                    ("prepare", {**SETTINGS, "task_acks_late": True}), ("apply_broker", "redis"), ("background_load",))
    assert names(lab.calls).count("background_load") == 1 and names(lab.calls)[-1] == "background_load"
    cells = sorted(path.name for path in (run / "cells").iterdir())
    assert cells == ["broker=rabbitmq,task_acks_late=false", "broker=rabbitmq,task_acks_late=true",
                     "broker=redis,task_acks_late=false", "broker=redis,task_acks_late=true"]
    scenario = (run / "cells" / "broker=rabbitmq,task_acks_late=true" / "scenario.yml").read_text()
    assert "broker: rabbitmq" in scenario and "task_acks_late: true" in scenario


def test_a_lab_left_on_another_broker_by_a_killed_run_gets_its_own_back_from_the_next_runner(tmp_path: Path) -> None:
    lab = FakeLab()
    lab.info = replace(lab.info, secrets_file=str(tmp_path / "secrets.yml"))
    (tmp_path / "rabbit.yml").write_text(SCENARIO + "broker: rabbitmq\n", encoding="utf-8")
    (tmp_path / "plain.yml").write_text(SCENARIO, encoding="utf-8")
    killed = runner.Runner(lab, Console(file=io.StringIO()), background_load=False, restore=False)
    killed.run_cell(load_scenario(tmp_path / "rabbit.yml", ROOT), tmp_path / "r1", "r1")
    marker = tmp_path / runner.SETTINGS_MARKER
    assert lab.info.broker == "rabbitmq" and json.loads(marker.read_text())["home_broker"] == "redis"
    lab.calls.clear()
    after = runner.Runner(lab, Console(file=io.StringIO()))
    assert after.home_broker == "redis"
    assert after.run_cell(load_scenario(tmp_path / "plain.yml", ROOT), tmp_path / "r2", "r2") == runner.EXIT_PASS
    assert in_order(lab.calls, ("apply_broker", "redis"), ("prepare", SETTINGS))
    assert lab.info.broker == "redis" and not marker.exists()


class HalfSwitchingLab(FakeLab):
    """A lab whose switch to RabbitMQ fails halfway (its kept broker file names RabbitMQ already), and whose switch
    back fails too."""

    def apply_broker(self, broker: str) -> None:
        if broker == "rabbitmq":
            self.info = replace(self.info, broker=broker)
        self.calls.append(("apply_broker", broker))
        raise AnsibleError("playbooks/site.yml: fatal: [worker-1]: failed halfway")


def test_a_switch_that_failed_halfway_is_made_again_by_the_next_runner(tmp_path: Path) -> None:
    """The lab's broker file says rabbitmq after a failed switch, but its workers may still be on Redis: the next
    runner does not take the file's word for it and provisions the broker again."""
    lab = HalfSwitchingLab()
    lab.info = replace(lab.info, secrets_file=str(tmp_path / "secrets.yml"))
    (tmp_path / "rabbit.yml").write_text(SCENARIO + "broker: rabbitmq\n", encoding="utf-8")
    rabbit = load_scenario(tmp_path / "rabbit.yml", ROOT)
    assert runner.Runner(lab, Console(file=io.StringIO())).run_cell(rabbit, tmp_path / "r1", "r1") != runner.EXIT_PASS
    assert lab.info.broker == "rabbitmq"
    fixed = FakeLab()
    fixed.info = lab.info
    lab.calls.clear()
    after = runner.Runner(fixed, Console(file=io.StringIO()))
    assert after.run_cell(rabbit, tmp_path / "r2", "r2") == runner.EXIT_PASS
    assert in_order(fixed.calls, ("apply_broker", "rabbitmq"), ("prepare", SETTINGS), ("apply_broker", "redis"))


def test_a_damaged_settings_marker_names_no_broker_to_switch_to(tmp_path: Path) -> None:
    lab = FakeLab()
    lab.info = replace(lab.info, secrets_file=str(tmp_path / "secrets.yml"))
    (tmp_path / runner.SETTINGS_MARKER).write_text(json.dumps({"home_broker": "redis; reboot"}), encoding="utf-8")
    assert runner.Runner(lab, Console(file=io.StringIO())).home_broker == "redis"  # the lab's, not the marker's word


def test_a_runs_rabbitmq_settings_are_applied_before_it_and_taken_back_after(tmp_path: Path) -> None:
    """rabbitmq: {...} reaches the broker node as the rabbitmq role's rabbitmq_settings (beside Redis's variables)
    before the run's Celery settings, and the inventory's come back after it."""
    lab = FakeLab()
    (tmp_path / "timeout.yml").write_text(
        SCENARIO + "broker: rabbitmq\nrabbitmq: {consumer_timeout: 5000, channel_tick_interval: 1000}\n"
                   "redis: {aof: true}\n", encoding="utf-8")
    code = runner.Runner(lab, Console(file=io.StringIO())).run_cell(load_scenario(tmp_path / "timeout.yml", ROOT),
                                                                    tmp_path / "r1", "r1")
    assert code == runner.EXIT_PASS
    wanted = {"redis_aof": True, "rabbitmq_settings": {"consumer_timeout": 5000, "channel_tick_interval": 1000}}
    assert in_order(lab.calls, ("apply_broker", "rabbitmq"), ("apply_broker_settings", wanted), ("prepare", SETTINGS),
                    ("apply_broker", "redis"))


def test_matrix_cells_with_one_app_install_it_once_and_take_it_off_after_the_last(tmp_path: Path) -> None:
    source = ROOT / "examples" / "minimal"
    lab = FakeLab()
    code, _, _ = run_on(lab, tmp_path, f"app: {{app: 'minimal_app:app', source: '{source}'}}\n"
                                       "matrix: {task_acks_late: [false, true]}\n")
    assert code == runner.EXIT_PASS
    app = {"app": "minimal_app:app", "source": str(source), "requirements": []}
    assert [call[1] for call in lab.calls if call[0] == "apply_app"] == [app, {}]
    assert in_order(lab.calls, ("apply_app", app), ("prepare", SETTINGS),
                    ("prepare", {**SETTINGS, "task_acks_late": True}), ("apply_app", {}), ("background_load",))


@pytest.mark.parametrize(("broker", "again"), [("redis", "after the visibility timeout"),
                                               ("rabbitmq", "when its channel closes")])
def test_why_tasks_were_pending_names_when_the_runs_broker_hands_them_out_again(broker: str, again: str) -> None:
    from types import SimpleNamespace

    summary = SimpleNamespace(causes={"pending": {"completed_unacked": 2, "reserved": 1}}, phases=[],
                              snapshot={"broker": broker})
    reason = runner.pending_reason(summary, None)  # type: ignore[arg-type]
    assert reason == ("reserved: delivered to a worker and not acknowledged; a killed worker's messages are handed out "
                      f"again only {again}; completed_unacked: ran to success, but its acknowledgement never reached "
                      f"the broker; it is handed out again {again} and runs again")


def test_a_sweep_runs_each_point_as_a_cell_and_the_report_draws_the_curve(tmp_path: Path) -> None:
    """sweep: {param: every, ...}: a cell per value (the fault asked for each), one settings change for all of them
    (only the dose differs), the points in run.json for the report, whose page has the dose section."""
    lab = FakeLab()
    extra = "sweep: {param: every, values: [0.1s, 0.2s]}\n"
    path = tmp_path / "fake-worker-kill.yml"
    path.write_text(SCENARIO.replace("params: {mode: main}", "params: {mode: main, duration: 0.3s}") + extra,
                    encoding="utf-8")
    code = runner.run(load_scenario(path, ROOT), lab, tmp_path / "results", Console(file=io.StringIO(), width=200),
                      run_id="run-1")
    assert code == runner.EXIT_PASS
    run = read_json(tmp_path / "results" / "run-1" / "run.json")
    assert run["cells"] == ["every=0.1s", "every=0.2s"]
    assert [(point["value"], point["dose"]) for point in run["sweep"]["points"]] == [("0.1s", 0.1), ("0.2s", 0.2)]
    for cell, every in (("every=0.1s", "0.1s"), ("every=0.2s", "0.2s")):
        written = load_scenario(tmp_path / "results" / "run-1" / "cells" / cell / "scenario.yml", ROOT)
        assert written.phases[1].faults[0].params == {"mode": "main", "duration": "0.3s", "every": every}
    assert names(lab.calls).count("fault") == 2
    assert names(lab.calls).count("prepare") == 2 and "apply_broker_settings" not in names(lab.calls)
    page = (tmp_path / "results" / "run-1" / "report.html").read_text(encoding="utf-8")
    assert "Dose and response: every" in page and (tmp_path / "results" / "run-1" / "dose.png").is_file()
