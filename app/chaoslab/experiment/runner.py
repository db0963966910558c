"""The experiment runner: settings, clean state, load, phases with the fault, drain, collect, check, judge, report.

Every run leaves a directory ``experiments/results/<run-id>/`` with ``run.json`` saying how it ended
(completed, failed or aborted). On Ctrl-C or an error at any point the fault is reverted, the load is
stopped, whatever can be collected is collected, and the run is marked ``aborted``.

Collection, in this order once the drain has ended: a snapshot of every message the broker still holds (before
anything else can move), the controller's clock against the broker's, the nodes' ledgers (task records, fault
records, worker processes alive, clock offsets, effective settings). The check then looks up the result backend's
record of every task the ledgers do not show completed (in the same pass over the ledgers). The snapshot, with those
records, goes to ``snapshot.json``; a later check of the run directory reads it beside the ledgers.
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from chaoslab import broker_state, brokers, celery_settings, clock
from chaoslab.analysis import checker, run_dir, run_history, verdict
from chaoslab.experiment import lab_broker
from chaoslab.experiment.ansible_runner import project_root
from chaoslab.experiment.lab import Lab, LabInfo, TaskCounter
from chaoslab.experiment.redis_snapshot import BrokerInfo
from chaoslab.experiment.scenario import PhaseSpec, Scenario, check_tasks, node_sizes, to_yaml
from chaoslab.ledger import read_records

EXIT_PASS, EXIT_FAIL, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
SETTINGS_MARKER = "run-settings.json"
DRAIN_QUIET_S = 2.0
PROGRESS_EVERY_S = 10.0  # a progress line this often when the output is not a terminal


def drain_not_before(faults: list[dict[str, Any]]) -> float:
    """The earliest time a drain may end: after a network partition, as long again as the cut lasted from its end.

    A message popped for a cut-off worker's waiting BRPOP is in neither the broker nor the worker: it sits in
    Redis's TCP retransmission queue, whose backoff doubles each time, so it may arrive about as long after the cut
    ended as the cut lasted (a 15 s cut: 27 s after it was sent). A drain that ended at the first quiet moment called
    it lost, and it ran during the next run.
    """
    ends = [(fault.get("end") or (fault["armed"] + fault["duration"] if fault.get("armed") else None), fault)
            for fault in faults if fault.get("fault") in checker.CUT_FAULTS]  # armed: at the latest its deadline
    return max((float(end) + float(fault["duration"]) for end, fault in ends if end is not None), default=0.0)


@dataclass
class RunState:
    run_id: str
    directory: Path
    scenario: Scenario
    cell: str = ""
    status: str = "running"
    started: float = field(default_factory=time.time)
    ended: float | None = None
    phases: list[dict[str, Any]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    error: str = ""
    fault_active: bool = False
    run_end: float | None = None
    drain: dict[str, Any] | None = None
    broker_before: BrokerInfo | None = None
    controller_clock: list[clock.Offset] = field(default_factory=list)
    clocks: dict[str, clock.Correction] = field(default_factory=dict)
    effective_settings: dict[str, Any] = field(default_factory=dict)
    snapshot: broker_state.BrokerState | None = None
    result_error: str = ""

    def write(self) -> None:
        """run.json, replaced whole (a reader never sees half of it)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        data = {
            "run_id": self.run_id, "scenario": self.scenario.name, "cell": self.cell, "status": self.status,
            "started": self.started, "ended": self.ended, "run_end": self.run_end, "phases": self.phases,
            "faults": self.faults, "drain": self.drain, "versions": self.versions,
            "settings": self.scenario.celery, "effective_settings": self.effective_settings,
            "broker": self.broker_before.to_dict() if self.broker_before else None,
            "clocks": {node: correction.to_dict() for node, correction in sorted(self.clocks.items())},
            "error": self.error,
        }
        run_dir.write_run(self.directory, data)


def _marker_data(marker: Path) -> dict[str, Any]:
    """What a settings marker says ({} when it cannot be read)."""
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def new_run_id(name: str) -> str:
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{name}"


def claim_run_dir(results: Path, run_id: str) -> tuple[str, Path]:
    """A run directory of its own: created here, never an existing one. Two runs of one scenario in the same
    second get ``<id>``, ``<id>-2``, ..."""
    results.mkdir(parents=True, exist_ok=True)
    for number in range(1, 1000):
        candidate = run_id if number == 1 else f"{run_id}-{number}"
        try:
            (results / candidate).mkdir()
        except FileExistsError:
            continue
        return candidate, results / candidate
    raise RuntimeError(f"no free run directory for {run_id} in {results}")


def versions(info: LabInfo) -> dict[str, str]:
    import celery
    import kombu

    found = {"celery": celery.__version__, "kombu": kombu.__version__, "kernel": platform.release(),
             "python": platform.python_version(), "lab": info.name, "workers": str(len(info.workers))}
    try:
        found["redis"] = str(info.redis().info("server").get("redis_version"))
    except Exception as err:
        found["redis"] = f"unknown ({type(err).__name__})"
    if info.broker != "redis":
        found["broker"] = info.broker
        try:
            found[info.broker] = lab_broker.for_lab(info).version()
        except Exception as err:
            found[info.broker] = f"unknown ({type(err).__name__})"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=project_root(), capture_output=True,
                            text=True, check=False, timeout=30)
    found["project_commit"] = commit.stdout.strip() or "unknown"
    return found


def load_profile(scenario: Scenario) -> dict[str, Any]:
    """The load generator's profile of a run (the loadgen role's variables without their prefix); the ``celery``
    publisher publishes through the scenario's app under test, installed on the load's node too; a trace to replay
    is copied there (its mix then only names its tasks)."""
    load = scenario.load
    return {
        "rate": load.rate, "seed": load.seed, "publish_timeout": load.publish_timeout,
        "delivery_mode": celery_settings.delivery_mode(scenario.celery.get("task_default_delivery_mode")),
        "mix": [entry.to_data() for entry in load.mix], "publisher": load.publisher,
        "app": scenario.app if load.publisher == "celery" else {}, "replay": load.replay,
    }


class Display:
    """The live progress table: phase, time, and the task counts so far."""

    def __init__(self, published: Callable[[], Counter[str]], events: TaskCounter, console: Console) -> None:
        self.published = published
        self.events = events
        self.console = console
        self.phase = ""
        self.phase_start = time.monotonic()
        self.phase_length = 0.0

    def start_phase(self, name: str, length: float) -> None:
        self.phase, self.phase_start, self.phase_length = name, time.monotonic(), length

    def figures(self) -> dict[str, str]:
        """What the display shows: the phase, its time, and the task counts so far."""
        elapsed = time.monotonic() - self.phase_start
        sent = self.published()
        return {"phase": self.phase, "elapsed": f"{elapsed:.0f}s",
                "remaining": f"{max(self.phase_length - elapsed, 0):.0f}s", "published": str(sent["ok"]),
                "publish errors": str(sent["error"] + sent["timeout"]),
                "completed": str(self.events.counts["succeeded"]), "failed": str(self.events.counts["failed"])}

    def render(self) -> Table:
        figures = self.figures()
        table = Table(show_header=True, header_style="bold")
        for column in figures:
            table.add_column(column, justify="right")
        table.add_row(*figures.values())
        return table

    def line(self) -> str:
        """The same figures as one plain line, for output that is not a terminal (a log, a pipe)."""
        figures = self.figures()
        return f"{figures.pop('phase')}: " + ", ".join(f"{name} {value}" for name, value in figures.items())


class Background:
    """A call on a thread of its own; ``join`` waits for it and raises what it raised."""

    def __init__(self, call: Callable[[], object]) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call: Callable[[], object]) -> None:
        try:
            call()
        except BaseException as err:  # handed to join's caller
            self.error = err

    def join(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error


class Runner:
    def __init__(self, control: Lab, console: Console | None = None,
                 sleep: Callable[[float], None] = time.sleep, background_load: bool = True,
                 restore: bool = True, report: Callable[[Path], object] | None = None) -> None:
        self.control = control
        self.console = console or Console()
        self.sleep = sleep
        # whether a run ends by starting the lab's background load again (a study does that once, at its end)
        self.background_load = background_load
        # whether a run ends by giving Redis and the nodes back the inventory's settings; a study keeps a run's for
        # the next run that wants the same (its repeats) and calls restore_settings once, at its end
        self.restore = restore
        # how a run's report is written: by default here and now; a study hands it to processes beside it
        self.report = report
        # the broker node's variables (Redis's, rabbitmq_settings) and node sizes the lab has now, as this runner set
        # them ({}: the inventory's); None: not known, as when a run or study that changed them ended without putting
        # them back (its marker is there)
        self.broker_vars_set: dict[str, Any] | None = {}
        self.sizes_set: dict[str, dict[str, Any]] | None = {}
        # the app under test the workers run, as this runner put it there ({}: the inventory's; None: not known)
        self.app_set: dict[str, Any] | None = {}
        # the task broker the lab was provisioned with before this runner (a run for another broker switches the lab
        # to it, and restore_settings switches it back)
        self.home_broker = control.info.broker
        # the broker the lab runs on as this runner knows it (None: not known, as after a switch that failed halfway:
        # the lab's kept broker file already names the new one)
        self.broker_set: str | None = control.info.broker
        marker = self._settings_marker()
        if marker is not None and marker.exists():
            self.broker_vars_set, self.sizes_set, self.app_set, self.broker_set = None, None, None, None
            kept = _marker_data(marker).get("home_broker")
            if kept and not brokers.broker_error(kept):  # a damaged marker's word is not a broker to switch to
                self.home_broker = str(kept)
        self.clearing: Background | None = None
        self.progress: tuple[str, float] = ("", 0.0)  # the phase and the time of the last progress line

    @property
    def info(self) -> LabInfo:
        """The lab as the control handle knows it now (a broker switch changes it)."""
        return self.control.info

    def _wait(self, seconds: float, live: Live, display: Display, until: Callable[[], bool] | None = None) -> None:
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self._show(live, display)
            if until is not None and until():
                return
            self.sleep(min(1.0, remaining))

    def _show(self, live: Live, display: Display) -> None:
        """The live table on a terminal; elsewhere (a log, a pipe) one line when a phase starts and every
        PROGRESS_EVERY_S, since a live display writes nothing there until the run ends."""
        if self.console.is_terminal:
            live.update(display.render())
            return
        now = time.monotonic()
        if display.phase != self.progress[0] or now - self.progress[1] >= PROGRESS_EVERY_S:
            self.progress = (display.phase, now)
            self.console.print(display.line(), highlight=False, soft_wrap=True)

    def _drained(self, state: RunState) -> Callable[[], bool]:
        """True once the broker has held no task message (queued or unacknowledged) and no worker has run a task
        for DRAIN_QUIET_S, as the broker and the workers themselves say (a killed execution's ledger never ends, so
        the ledgers cannot tell), and not before :func:`drain_not_before`."""
        quiet_since: list[float | None] = [None]
        not_before = drain_not_before(state.faults)

        def check() -> bool:
            if time.time() < not_before:
                return False
            try:
                idle = self.control.idle()
            except Exception:  # a broker that does not answer is not drained
                idle = False
            now = time.monotonic()
            quiet_since[0] = (quiet_since[0] or now) if idle else None
            drained = quiet_since[0] is not None and now - quiet_since[0] >= DRAIN_QUIET_S
            if drained:
                state.drain = {"drained": True, "at": time.time()}
            return drained

        return check

    def _phase(self, state: RunState, spec: PhaseSpec, live: Live, display: Display, events: TaskCounter) -> None:
        display.start_phase(spec.name, spec.duration)
        record = {"name": spec.name, "start": time.time(), "end": None}
        state.phases.append(record)
        state.write()
        if spec.name == "drain":
            self._cleared(state)
            self.control.set_load(False)
            # the drain's time counts from when the load has stopped (stopping it takes minutes on emulated VMs)
            state.drain = {"drained": False, "at": None}
            self._wait(spec.duration, live, display, self._drained(state))
        elif spec.faults:
            state.fault_active = True
            for fault_spec in sorted(spec.faults, key=lambda fault: fault.at):
                self._wait(fault_spec.at - (time.time() - record["start"]), live, display)
                # applying takes a moment: a fault never outlasts its phase
                length = min(fault_spec.length(spec.duration), spec.duration - (time.time() - record["start"]))
                fault = {"fault": fault_spec.playbook, "target": fault_spec.target, "params": fault_spec.params,
                         "at": fault_spec.at, "duration": length, "start": None, "end": None}
                state.faults.append(fault)
                reports = self.control.fault(fault_spec.playbook, fault_spec.target, fault_spec.params,
                                             max(length, 0.001), state.directory / run_dir.FAULTS_DIR)
                # when the fault was in force on its nodes, as their agents report it (the checker takes the
                # windows from the nodes' own fault records; these are the fallback when those cannot be collected)
                started = [report["start"] for report in reports if report.get("start") is not None]
                if fault_spec.params.get("trigger") and not started:  # armed: in force once its condition holds
                    fault["armed"] = min((report.get("armed") or time.time() for report in reports),
                                         default=time.time())
                else:
                    fault["start"] = min(started, default=time.time())
                    fault["end"] = fault["start"] + length
                fault["nodes"] = reports
                state.write()
            self._wait(spec.duration - (time.time() - record["start"]), live, display)
            # The nodes' agents revert each fault at its deadline by themselves; clear.yml makes sure of it while
            # the next phase runs (the run waits for it before the drain and fails if it failed).
            self.clearing = Background(self.control.clear)
        else:
            self._wait(spec.duration, live, display)
        record["end"] = time.time()
        state.write()

    def run_cell(self, scenario: Scenario, directory: Path, run_id: str, cell: str = "") -> int:
        state = RunState(run_id=run_id, directory=directory, scenario=scenario, cell=cell)
        state.write()
        header = f"run {run_id}{f', cell {cell}' if cell else ''}, from {scenario.path}: run again with chaoslab run"
        run_dir.write_scenario(directory, to_yaml(scenario, header))
        events: TaskCounter | None = None
        try:
            self.console.print(f"[bold]{scenario.name}[/bold] {cell} -> {directory}")
            self._settings(scenario.broker_vars, node_sizes(scenario, self.info.groups) if scenario.nodes else {},
                           scenario.app, scenario.broker)
            events = self.control.task_events()  # on the run's broker
            self.control.prepare(scenario.celery)
            if scenario.app:  # the scenario's app is on the workers now: do they have every task of the load?
                registered = self.control.registered()
                if registered is not None:
                    check_tasks(scenario, registered)
            state.broker_before = self.control.broker_info()
            state.controller_clock.append(self.control.controller_clock())
            state.versions = versions(self.info)
            events.start()
            display = Display(self.control.published, events, self.console)
            with Live(display.render(), console=self.console, refresh_per_second=2, transient=False) as live:
                self.control.set_load(True, load_profile(scenario))
                for spec in scenario.phases:
                    self._phase(state, spec, live, display, events)
                self._cleared(state)
            state.status = "completed"
        except KeyboardInterrupt:
            state.status = "aborted"
            state.error = "interrupted (SIGINT)"
        except Exception as err:
            state.status = "aborted"
            state.error = f"{type(err).__name__}: {err}"
        finally:
            if events is not None:
                events.stop()
            self._wind_down(state)
        if state.status == "completed" and not run_dir.publish_ledger(directory).is_file():
            # nothing to judge: a verdict on an empty history would read as "nothing lost"
            state.status = "failed"
            state.error = f"the ledgers were not collected ({state.error or 'no publish ledger'})"
            state.write()
        # the lab's background load starts again while the run is judged and reported (it needs nothing of them)
        background = Background(self.control.background_load) if self.background_load else None
        try:
            if state.status != "completed":
                self.console.print(f"[red]run {state.status}[/red]: {state.error} ({directory})", highlight=False)
                return EXIT_INTERRUPTED if state.error.startswith("interrupted") else EXIT_ERROR
            return self._judge(state)
        finally:
            self._background_started(background)

    def _settings_marker(self) -> Path | None:
        """A file beside the lab's secrets that exists while Redis or the nodes are not at the inventory's settings,
        so that a runner after a run killed before it put them back provisions them again (None: no lab directory)."""
        return Path(self.info.secrets_file).with_name(SETTINGS_MARKER) if self.info.secrets_file else None

    def _settings(self, broker_vars: dict[str, Any], sizes: dict[str, dict[str, Any]],
                  app: dict[str, Any] | None = None, broker: str = "") -> None:
        """The lab on the run's broker (*broker*; "" for the lab's own), the broker node's servers provisioned
        (*broker_vars*: Redis's variables, rabbitmq_settings), the nodes sized and the
        workers running the app under test as a run wants them, with the load stopped; nothing is done (no Ansible)
        where the lab has them already. A broker switch provisions the whole lab again (site.yml), which also puts
        Redis and the workers' app back at the inventory's."""
        app = app or {}
        broker = broker or self.home_broker
        if (broker == self.broker_set and broker_vars == self.broker_vars_set and sizes == self.sizes_set
                and app == self.app_set):
            return
        marker = self._settings_marker()
        if marker is not None:  # written before anything changes, removed once all is back at the inventory's
            marker.write_text(json.dumps({"broker_vars": broker_vars, "sizes": sizes, "app": app, "broker": broker,
                                          "home_broker": self.home_broker}) + "\n", encoding="utf-8")
        self.control.set_load(False)
        if broker != self.broker_set:
            self.console.print(f"provisioning the lab with {broker} as its broker (site.yml, about a minute)",
                               highlight=False)
            self.broker_vars_set, self.app_set, self.broker_set = None, None, None
            self.control.apply_broker(broker)
            self.broker_vars_set, self.app_set, self.broker_set = {}, {}, broker
        if broker_vars != self.broker_vars_set:
            self.broker_vars_set = None  # until applied: a failure leaves it unknown, so it is applied again
            self.control.apply_broker_settings(broker_vars)
            self.broker_vars_set = dict(broker_vars)
        if sizes != self.sizes_set:
            self.sizes_set = None
            self.control.size(sizes)
            self.sizes_set = dict(sizes)
        if app != self.app_set:
            self.app_set = None
            self.control.apply_app(app)
            self.app_set = dict(app)
        if (marker is not None and self.broker_vars_set == {} and self.sizes_set == {} and self.app_set == {}
                and self.broker_set == self.home_broker):
            marker.unlink(missing_ok=True)

    def restore_settings(self) -> None:
        """The lab's own broker, Redis, the nodes and the workers' app back at the inventory's settings (where a run
        changed them)."""
        self._settings({}, {}, {}, self.home_broker)

    def _background_started(self, background: Background | None) -> None:
        """Wait for the background load to have started; say so when it could not (the run's outcome stands)."""
        if background is None:
            return
        try:
            background.join()
        except (Exception, KeyboardInterrupt) as err:
            self.console.print(f"[yellow]note[/yellow]: the background load did not start: {type(err).__name__}: "
                               f"{err}", highlight=False)

    def _cleared(self, state: RunState) -> None:
        """Wait for clear.yml started after the fault phase; the fault is over once it succeeded."""
        clearing, self.clearing = self.clearing, None
        if clearing is not None:
            clearing.join()
            state.fault_active = False

    def _wind_down(self, state: RunState) -> None:
        """Revert the fault, stop the load, collect the ledgers; each step is tried even if another fails."""
        if self.clearing is not None:  # the run stopped while clear.yml ran: let it end (the next step clears)
            self.clearing.thread.join()
            self.clearing = None
        state.run_end = max((phase["end"] for phase in state.phases if phase["end"]), default=None) or time.time()
        steps: list[tuple[str, Callable[[], object]]] = [
            ("clear faults", self.control.clear),
            ("stop load", lambda: self.control.set_load(False)),
            ("snapshot the broker", lambda: self._snapshot(state)),
            ("controller clock", lambda: state.controller_clock.append(self.control.controller_clock())),
            ("collect ledgers", lambda: self.control.collect(state.directory / run_dir.LEDGERS_DIR)),
            ("read the nodes' records", lambda: self._node_records(state)),
            ("store metrics", lambda: self.control.store_metrics(state.started, time.time(), state.directory)),
        ]
        if self.restore:
            steps.append(("restore Redis, the node sizes and the workers' app", self.restore_settings))
        for name, step in steps:
            if name == "clear faults" and not state.fault_active and state.status == "completed":
                continue
            try:
                step()
            except (Exception, KeyboardInterrupt) as err:
                state.error = state.error or f"{name}: {type(err).__name__}: {err}"
        for fault in state.faults:
            fault["end"] = min(fault["end"] or math.inf, time.time())  # an aborted run cut it short
        for phase in state.phases:
            phase["end"] = phase["end"] or time.time()
        state.ended = time.time()
        state.write()

    def _snapshot(self, state: RunState) -> None:
        """Every task message the broker holds now, before the ledgers are read (so none can slip between)."""
        state.snapshot = self.control.snapshot_broker(state.broker_before)
        run_dir.write_snapshot(state.snapshot, state.directory)

    def _node_records(self, state: RunState) -> None:
        """Clock corrections from the nodes' clock records, and what the workers ran with."""
        events = read_records(run_dir.event_paths(state.directory))
        state.clocks = clock.corrections(events, state.controller_clock)
        state.effective_settings = run_dir.worker_settings(state.directory)

    def _judge(self, state: RunState) -> int:
        run = run_dir.read_run(state.directory) or {}
        found: dict[str, Any] = {}

        def results(ids: list[str]) -> dict[str, Any]:
            try:
                found.update(self.control.task_results(ids))
            except Exception as err:  # judged without them, and the verdict says so
                state.result_error = f"{type(err).__name__}: {err}"
            return found

        summary = run_history.check_run(state.directory, run, results=results if state.snapshot else None)
        if state.snapshot is not None:
            state.snapshot = replace(state.snapshot, results=found, result_lookups=summary.snapshot["result_lookups"]
                                     if summary.snapshot else 0)
            run_dir.write_snapshot(state.snapshot, state.directory)
        measured = run_dir.write_check(summary, state.directory, {"run_id": state.run_id, "cell": state.cell}).figures
        passed, judgements = verdict.judge(state.scenario.hypothesis, measured)
        passed = passed and bool(summary.tasks)  # "nothing lost" of nothing published holds for no system
        # a fault that did less than asked tested less than the hypothesis claims
        # as does one whose trigger never held (it never acted)
        missed = checker.ineffective(summary.faults) + checker.untriggered(summary.triggers)
        passed = passed and (not missed or accepts_ineffective(state.scenario))
        warnings = run_warnings(summary, state)
        run_dir.write_verdict(state.directory, verdict.to_dict(passed, judgements, measured, warnings))
        self._print_verdict(summary, passed, judgements, state.drain, warnings)
        self._report(state.directory)
        return EXIT_PASS if passed else EXIT_FAIL

    def _report(self, directory: Path) -> None:
        if self.report is not None:
            self.report(directory)
            return
        from chaoslab.report.report import write_report

        path = write_report(directory)
        self.console.print(f"report: {path}")

    def _print_verdict(self, summary: checker.Summary, passed: bool, judgements: list[verdict.Judgement],
                       drain: dict[str, Any] | None, warnings: list[str]) -> None:
        classes = Table(title="tasks")
        for name in checker.CLASSES:
            classes.add_column(name.replace("_", " "), justify="right")
        classes.add_row(*(str(summary.classes.get(name, 0)) for name in checker.CLASSES))
        self.console.print(classes)
        for line in verdict.outcome_lines(summary.to_dict(), drain):
            self.console.print(line, highlight=False)
        colour = "green" if passed else "red"
        headline = f"[{colour}]{verdict.headline(passed)}[/{colour}]"
        table = Table(title=f"{headline} (delivery observed: {summary.delivery.guarantee})")
        for column in ("figure", "condition", "actual", ""):
            table.add_column(column)
        for j in judgements:
            actual = "n/a" if j.actual is None else f"{j.actual:.4g}"
            held = "[green]held[/green]" if j.holds else "[red]did not hold[/red]"
            table.add_row(j.figure, j.condition, actual, held)
        self.console.print(table)
        for line in checker.trigger_lines(summary.triggers):
            self.console.print(f"trigger: {line}", highlight=False)
        for warning in warnings:
            self.console.print(f"[yellow]note[/yellow]: {warning}", highlight=False)
        lost = summary.ids("lost")
        if lost:
            self.console.print(f"lost task ids ({len(lost)}): {', '.join(lost[:20])}{' ...' if len(lost) > 20 else ''}")


def run_warnings(summary: checker.Summary, state: RunState) -> list[str]:
    """What a reader must know before trusting the run's figures."""
    found = clock.warnings(state.clocks) + clock.skew_warnings(summary.faults)
    for line in checker.ineffective(summary.faults) + checker.untriggered(summary.triggers):
        found.append(f"fault not effective: {line}" + ("" if accepts_ineffective(state.scenario) else
                                                       "; the hypothesis is not held (accept_ineffective: true "
                                                       "in the scenario's fault accepts it)"))
    if not summary.tasks:
        found.append("no task was published (the load generator did not run): no figure of this run says anything, "
                     "and its hypothesis is not held")
    if state.error:
        found.append(f"collecting the run's records failed ({state.error}): the figures may be incomplete")
    if state.faults and summary.fault_source != "agents":
        found.append("the fault windows are the runner's phase bounds: the nodes' own fault records were not collected")
    if state.snapshot is None:
        found.append("no snapshot of the broker: a task not finished in the ledgers could be neither queued nor lost")
    if state.snapshot is not None and state.snapshot.unnamed_unacked:
        found.append(f"the broker held {state.snapshot.unnamed_unacked} unacknowledged messages no worker named (a "
                     "worker did not answer): tasks that could be among them are pending (unacked_unnamed), not lost")
    if state.result_error:
        found.append(f"the result backend could not be read ({state.result_error}): failures Celery recorded "
                     "may be counted as losses")
    pending = summary.classes.get("pending", 0)
    if pending:
        found.append(f"{pending} tasks were pending at the end ({pending_reason(summary, state)})")
    return found


def accepts_ineffective(scenario: Scenario) -> bool:
    """Whether the scenario's fault says a fault that did less than asked still makes a run."""
    return any(fault.accept_ineffective for phase in scenario.phases for fault in phase.faults)


def pending_reason(summary: checker.Summary, state: RunState) -> str:
    """Why tasks were left when the run ended, as far as the run shows it, one reason per kind of pending task."""
    causes = summary.causes.get("pending", {})
    reasons = []
    if causes.get("queued"):
        baseline = next((phase for phase in summary.phases if phase.name == "baseline"), None)
        overloaded = baseline is not None and baseline.throughput is not None and baseline.end > baseline.start \
            and baseline.published_ok / (baseline.end - baseline.start) > 1.1 * baseline.throughput
        reasons.append("queued: the arrival rate was above what the workers completed even before the fault"
                       if overloaded else "queued: the drain ended before the backlog was worked off")
    # when a message a worker took and never acknowledged is handed out again: on Redis once the visibility timeout
    # has passed; on RabbitMQ as soon as the channel it was delivered on closes
    rabbitmq = (summary.snapshot or {}).get("broker") == "rabbitmq"
    again = "when its channel closes" if rabbitmq else "after the visibility timeout"
    if causes.get("reserved"):
        reasons.append("reserved: delivered to a worker and not acknowledged; a killed worker's messages are handed "
                       f"out again only {again}")
    if causes.get("completed_unacked"):
        reasons.append("completed_unacked: ran to success, but its acknowledgement never reached the broker; it is "
                       f"handed out again {again} and runs again")
    if causes.get("running") or causes.get("running_unverified"):
        reasons.append("running: still running when the run ended")
    if causes.get("unacked_unnamed"):
        reasons.append("unacked_unnamed: RabbitMQ held unacknowledged messages no worker named; these may be among "
                       "them")
    return "; ".join(reasons) or "unknown"


def run(scenario: Scenario, control: Lab, results: Path | None = None, console: Console | None = None,
        run_id: str | None = None, claimed: Callable[[Path], object] | None = None) -> int:
    """Run a scenario (every matrix cell) into experiments/results/<run-id>/; returns the exit code. *claimed* is
    told the run's directory as soon as it exists."""
    results = results or project_root() / "experiments" / "results"
    run_id, parent = claim_run_dir(results, run_id or new_run_id(scenario.name))
    if claimed is not None:
        claimed(parent)
    runner = Runner(control, console)
    cells = scenario.cells()
    if len(cells) == 1 and not cells[0][0]:
        return runner.run_cell(scenario, parent, run_id)
    # the cells put the lab's settings back once, after the last (a cell that wants what the one before it had, its
    # app or its broker, does not provision it twice); the lab's background load starts again after that
    runner.restore, runner.background_load = False, False
    codes = []
    status = "completed"
    try:
        for label, cell in cells:
            code = runner.run_cell(cell, parent / run_dir.CELLS_DIR / label, run_id, label)
            codes.append(code)
            if code in (EXIT_ERROR, EXIT_INTERRUPTED):
                status = "aborted"
                break
    finally:
        for step, call in (("put the lab's settings back", runner.restore_settings),
                           ("start the background load", control.background_load)):
            try:
                call()
            except Exception as err:  # the cells' outcomes stand; the lab is not as it was
                runner.console.print(f"[red]could not {step}[/red]: {type(err).__name__}: {err}", highlight=False)
                codes.append(EXIT_ERROR)
    sweep = ({"sweep": {"param": scenario.sweep.param, "values": list(scenario.sweep.values),
                        "doses": list(scenario.sweep.doses), "knee_p95": scenario.sweep.knee_p95,
                        "points": scenario.sweep_points()}} if scenario.sweep is not None else {})
    run_dir.write_run(parent, {"run_id": run_id, "scenario": scenario.name, "status": status,
                               "cells": [label for label, _ in cells], **sweep})
    from chaoslab.report.report import write_matrix_report

    runner.console.print(f"comparison of {len(codes)} cells: {write_matrix_report(parent)}")
    return max(codes) if EXIT_INTERRUPTED not in codes else EXIT_INTERRUPTED
