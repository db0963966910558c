"""The ``chaoslab`` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from chaoslab.experiment.ansible_runner import AnsibleError, adhoc_json


def _print_tally(table: dict[str, Counter[str]]) -> None:
    # rich is the controller's (the `controller` extra): lab nodes run this CLI too (`chaoslab load`).
    from rich.console import Console
    from rich.table import Table

    nodes = sorted({node for counts in table.values() for node in counts if node != "failed"})
    view = Table(title="Tasks per kind per worker node (succeeded)")
    view.add_column("kind")
    for node in nodes:
        view.add_column(node, justify="right")
    view.add_column("failed", justify="right")
    for kind, counts in table.items():
        view.add_row(kind, *(str(counts[node]) for node in nodes), str(counts["failed"]))
    Console().print(view)


def _print_rounds(rounds: int) -> None:
    if rounds > 1:
        print(f"{rounds} rounds: kinds that ran on too few worker nodes were published again")


def cmd_burst(args: argparse.Namespace) -> int:
    from chaoslab.node import burst

    table, rounds = burst.run(args.per_kind, args.timeout, args.min_nodes)
    found = burst.problems(table, args.min_nodes)
    if args.json:
        print(json.dumps({"table": {kind: dict(counts) for kind, counts in table.items()}, "problems": found,
                          "rounds": rounds}))
    else:
        _print_tally(table)
        _print_rounds(rounds)
        for line in found:
            print(f"problem: {line}", file=sys.stderr)
    return 1 if found else 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run a burst on the monitor node through Ansible and show where every task ran."""
    command = (
        "{{ lab_venv }}/bin/chaoslab burst --json "
        f"--per-kind {args.per_kind} --timeout {args.timeout} --min-nodes {args.min_nodes}"
    )
    host, result = next(iter(adhoc_json("monitor", "ansible.builtin.shell",
                                         f"CHAOSLAB_CONFIG={{{{ lab_etc_dir }}}}/chaoslab.yml {command}").items()))
    try:
        report = json.loads(result.get("stdout", ""))
    except json.JSONDecodeError:
        print(f"burst on {host} failed: {result.get('stderr') or result.get('msg')}", file=sys.stderr)
        return 2
    table = {kind: Counter(counts) for kind, counts in report["table"].items()}
    print(f"burst of {args.per_kind} tasks per kind, published from node {host}")
    _print_tally(table)
    _print_rounds(int(report.get("rounds", 1)))
    for line in report["problems"]:
        print(f"problem: {line}", file=sys.stderr)
    return 1 if report["problems"] else 0


def _parse_mix(items: list[str]) -> list[dict[str, Any]]:
    """--mix KIND[:WEIGHT[:JSON-ARGS]] -> [{kind, weight, args}]."""
    mix = []
    for item in items:
        kind, _sep, rest = item.partition(":")
        weight, _sep, args = rest.partition(":")
        mix.append({"kind": kind, "weight": float(weight or 1), "args": json.loads(args) if args else {}})
    return mix


def publishing_app(lab: Any, through: Any) -> Any:
    """The Celery app the ``celery`` publisher publishes through: the app under test the profile names (``app``:
    its Celery app, the directory of its code and the site-packages of its venv, put first on the path) pointed at
    the lab, or the lab's own."""
    from dataclasses import replace

    from chaoslab.app_spec import check_app_path
    from chaoslab.node import app_under_test
    from chaoslab.node.celery_app import make_app

    if not through:
        return make_app(lab)
    sys.path[0:0] = [str(Path(through["path"])), str(Path(through["site"]))]
    return app_under_test.load(replace(lab, app=check_app_path(through["app"])))


def cmd_load(args: argparse.Namespace) -> int:
    """Run the load generator here until its duration ends or SIGTERM/SIGINT."""
    import signal

    import yaml
    from prometheus_client import start_http_server

    from chaoslab import units
    from chaoslab.ledger import LedgerWriter
    from chaoslab.node import config, loadgen
    from chaoslab.node.canvas_publisher import CanvasPublisher
    from chaoslab.node.celery_publisher import CeleryPublisher
    from chaoslab.node.load_mix import CanvasEntry
    from chaoslab.node.publisher import for_broker

    data: dict[str, Any] = yaml.safe_load(Path(args.profile).read_text(encoding="utf-8")) if args.profile else {}
    if args.rate is not None:
        data["rate"] = args.rate
    if args.mix:
        data["mix"] = _parse_mix(args.mix)
    data.setdefault("seed", args.seed)
    data.setdefault("publish_timeout", units.parse_duration(args.publish_timeout))
    if not data.get("replay") and (not data.get("mix") or not data.get("rate")):
        print("chaoslab load: needs --rate and --mix (or a --profile with both, or with a trace to replay)",
              file=sys.stderr)
        return 2
    duration = units.parse_duration(args.duration) if args.duration else None
    profile = loadgen.profile_from_mapping(data, duration)
    lab = config.load()
    ledger = LedgerWriter(args.ledger, "batch") if args.ledger else None
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.metrics_addr)
    canvases, tasks = None, None
    if profile.publisher == "celery":  # the app's own apply_async: the app under test's, or the lab's
        app = publishing_app(lab, data.get("app"))
        canvases, tasks = CanvasPublisher.through(app), CeleryPublisher(app)
        through = f"the app under test {data['app']['app']}" if data.get("app") else "the lab's app"
        print(f"chaoslab load: publishing through {through} ({app.main}, {len(app.tasks)} tasks)", flush=True)
    elif any(isinstance(entry, CanvasEntry) for entry in profile.mix):
        canvases = CanvasPublisher.bounded_to(lab.broker_url, lab.result_backend, profile.publish_timeout,
                                              delivery_mode=profile.delivery_mode)
    raw = for_broker(lab.broker_url, profile.publish_timeout, delivery_mode=profile.delivery_mode)
    generator = loadgen.LoadGenerator(profile, raw, ledger,
                                      node=lab.node, canvases=canvases, tasks=tasks)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: generator.stop())
    stats = generator.run()
    if ledger is not None:
        ledger.close()
    print(json.dumps({"published": stats.published, "errors": stats.errors, "max_lag_s": round(stats.max_lag, 4)}))
    return 0


def hold_lab(what: str) -> Any:
    """The lab's lock for this process's lifetime, its children let through; None (and a message) when busy."""
    from chaoslab.experiment.ansible_runner import project_root
    from chaoslab.experiment.lab_lock import LabBusy, LabLock

    lock = LabLock(project_root())
    try:
        lock.acquire(what)
    except LabBusy as busy:
        print(f"chaoslab: {busy}", file=sys.stderr)
        return None
    os.environ.update(lock.env())
    return lock


def _refused(args: argparse.Namespace, command: str, why: str) -> int:
    """A run or study refused before it started: the one-line reason on stderr, and for CI an error case in the
    JUnit file and the reason as JSON on stdout."""
    from chaoslab.experiment import runner
    from chaoslab.report import ci_outputs

    print(f"chaoslab {command}: {why}", file=sys.stderr)
    if getattr(args, "junit", None):
        case = ci_outputs.Case(str(getattr(args, "scenario", None) or getattr(args, "source", "")), command,
                               error=why)
        Path(args.junit).write_text(ci_outputs.junit({command: [case]}), encoding="utf-8")
    if getattr(args, "json", False):
        print(json.dumps({"exit": runner.EXIT_ERROR, "error": why}))
    return runner.EXIT_ERROR


def _console(args: argparse.Namespace) -> Any:
    """The console a run or study reports on: stderr when stdout is kept for --json."""
    from rich.console import Console

    return Console(stderr=True) if getattr(args, "json", False) else Console()


def _ci_outputs(args: argparse.Namespace, directory: Path | None, code: int, study_dir: bool = False) -> int:
    """The JUnit file (--junit) and the JSON on stdout (--json) of a run or study that started; *code* unchanged."""
    from chaoslab.report import ci_outputs, study_report

    if directory is None or not (args.junit or args.json):
        return code
    if study_dir:
        suites = ci_outputs.study_cases(directory)
        passed = study_report.study_passed(study_report.load_study(directory))
        document = ci_outputs.study_json(directory, code, passed)
    else:
        suites = {directory.name: ci_outputs.run_cases(directory)}
        document = ci_outputs.run_json(directory, code)
    if args.junit:
        Path(args.junit).write_text(ci_outputs.junit(suites), encoding="utf-8")
    if args.json:
        print(json.dumps(document, indent=2, default=str))
    return code


def cmd_run(args: argparse.Namespace) -> int:
    """Validate a scenario completely, then run it on the lab (holding the lab's lock)."""
    from chaoslab.experiment import runner
    from chaoslab.experiment.lab import LabControl, lab_info
    from chaoslab.experiment.scenario import (
        ScenarioError,
        check_broker,
        check_targets,
        check_tasks,
        check_triggers,
        load_scenario,
    )
    from chaoslab.inputs import InputError, name

    try:
        scenario = load_scenario(args.scenario)
        run_id = name(args.run_id, "--run-id") if args.run_id else None
    except (ScenarioError, InputError) as err:
        return _refused(args, "run", str(err))
    if args.check:
        cells = len(scenario.cells())
        print(f"{args.scenario}: valid ({cells} run{'s' if cells > 1 else ''})")
        return 0
    lock = hold_lab(f"chaoslab run {scenario.name}")
    if lock is None:
        return _refused(args, "run", "the lab is busy") if args.junit or args.json else runner.EXIT_ERROR
    with lock:
        info = lab_info()
        control = LabControl(info, quiet=not args.verbose)
        try:
            check_targets(scenario, info.groups)
            check_broker(scenario, info.broker)
            check_triggers(scenario, info.groups, info.broker)
            # workers that do not answer are restarted when the run starts; a scenario's own app is checked once it
            # is on the workers
            registered = None if scenario.app else control.registered()
            if registered is not None:
                check_tasks(scenario, registered)
        except ScenarioError as err:
            return _refused(args, "run", str(err))
        results = Path(args.results) if args.results else None
        claimed: list[Path] = []
        code = runner.run(scenario, control, results, _console(args), run_id=run_id, claimed=claimed.append)
        return _ci_outputs(args, claimed[0] if claimed else None, code)


def cmd_study(args: argparse.Namespace) -> int:
    """Run every scenario of a study directory, each cell repeated, and write one comparison report."""
    from chaoslab.experiment import runner, study
    from chaoslab.experiment.scenario import ScenarioError
    from chaoslab.report.study_report import fmt_duration

    source = Path(args.source)
    try:
        if args.quick and (args.repeat is not None or args.publish):
            raise ValueError("--quick runs one repeat and is not published: drop --repeat and --publish")
        scenarios, runs = study.planned(source, study.DEFAULT_REPEAT if args.repeat is None else args.repeat, args.only,
                                        not args.no_null_controls, args.quick)
    except (ScenarioError, ValueError) as err:
        return _refused(args, "study", str(err))
    if args.check:
        print(f"{source}: valid ({len(scenarios)} scenarios, {len(runs)} runs, "
              f"about {fmt_duration(round(study.expected_seconds(runs)))})")
        return 0
    lock = hold_lab(f"chaoslab study {source}")
    if lock is None:
        return runner.EXIT_ERROR
    with lock:
        return _study(args, source, scenarios)


def _study(args: argparse.Namespace, source: Path, scenarios: list[Any]) -> int:
    from chaoslab.experiment import study
    from chaoslab.experiment.lab import LabControl, lab_info
    from chaoslab.experiment.scenario import ScenarioError, check_broker, check_triggers

    info = lab_info()
    try:
        for scenario in scenarios:
            check_broker(scenario, info.broker)
            check_triggers(scenario, info.groups, info.broker)
    except ScenarioError as err:
        return _refused(args, "study", str(err))
    control = LabControl(info, quiet=not args.verbose)
    claimed: list[Path] = []
    code = study.run_study(source, study.DEFAULT_REPEAT if args.repeat is None else args.repeat, control,
                           Path(args.results) if args.results else None, Path(args.publish) if args.publish else None,
                           args.only, _console(args), null_controls=not args.no_null_controls, quick=args.quick,
                           claimed=claimed.append)
    return _ci_outputs(args, claimed[0] if claimed else None, code, study_dir=True)


def cmd_report(args: argparse.Namespace) -> int:
    from chaoslab.report.report import write_report

    for directory in args.run_dirs:
        try:
            print(write_report(Path(directory)))
        except (FileNotFoundError, ValueError) as err:  # not a run directory, or one that cannot be read
            print(f"chaoslab report: {err}", file=sys.stderr)
            return 1
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from chaoslab.report import compare

    rows = compare.compare([Path(directory) for directory in args.run_dirs])
    print(compare.to_markdown(rows))
    if args.out:
        for path in compare.write_comparison(rows, Path(args.out)):
            print(path, file=sys.stderr)
    return 0


def _listening(address: str, port: int) -> bool:
    import socket

    try:
        socket.create_connection((address, port), timeout=1).close()
    except OSError:
        return False
    return True


def cmd_where(_args: argparse.Namespace) -> int:
    """Where the lab's monitoring can be reached, and with which credentials."""
    from chaoslab.experiment.lab import lab_info

    info = lab_info()
    flower = f"http://{info.monitor_address}:5555"
    grafana = f"http://{info.monitor_address}:3000"
    print(f"Prometheus  {info.prometheus_url}  (no login; the run directories keep each run's series)")
    print(f"Flower      {flower}  (user chaoslab, password lab_flower_password)")
    if _listening(info.monitor_address, 3000):
        print(f"Grafana     {grafana}  (user admin, password lab_grafana_admin_password; dashboard celery-chaos-lab)")
    else:
        print("Grafana     not installed on this lab (its monitor node has no route to Grafana's repository)")
    print(f"Credentials {info.secrets_file}")
    print("Nodes       (size: the inventory's; enforced: the node cgroup's limits now, on a local lab)")
    for name, node in info.nodes.items():
        print(f"  {name:<10} {node['address'] or '?':<15} {node_size_line(node)}")
    return 0


def node_size_line(node: dict[str, Any]) -> str:
    """A node's size as the inventory gives it and, for a local lab node, as its cgroup enforces it now."""
    from chaoslab.node.node_size import cgroup_size

    line = f"{node['cpus'] or '?'} CPUs, {node['memory_mib'] or '?'} MiB"
    if not node.get("cgroup"):
        return line + " (the VM's or host's own)"
    enforced = cgroup_size(str(node["cgroup"]))
    if enforced is None:
        return line + " (its cgroup does not exist: make lab)"
    cpus = "no CPU quota" if enforced.cpus is None else f"{enforced.cpus:g} CPUs"
    memory = "no memory limit" if enforced.memory_mib is None else f"{enforced.memory_mib} MiB"
    return f"{line}; enforced: {cpus}, {memory}"


def cmd_faults(args: argparse.Namespace) -> int:
    """The fault windows the lab's nodes recorded since the last run started, with what each measured."""
    import time

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from chaoslab.analysis.fault_history import describe, history
    from chaoslab.experiment.lab import node_events

    rows = history(node_events(), time.time())[-args.last:] if args.last > 0 else []
    if args.json:
        print(json.dumps([row.as_dict() for row in rows]))
        return 0
    view = Table(title="Fault windows on the lab's nodes (since the last run started)")
    for column in ("node", "fault", "applied (UTC)", "lasted", "effective", "what it did"):
        view.add_column(column)
    for row in rows:
        window = row.window
        lasted = "in force" if row.in_force else f"{window.end - window.start:.1f} s"
        applied = time.strftime("%H:%M:%S", time.gmtime(window.start))
        # Text: what the nodes recorded is shown as written, never read as rich markup
        view.add_row(*(Text(cell) for cell in (window.target, window.fault, applied, lasted, row.effective(),
                                               describe(row))))
    Console(width=max(Console().width, 140)).print(view)
    if not rows:
        print("no fault windows recorded")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The lab's HTTP API on the controller (loopback unless told otherwise)."""
    import uvicorn
    import yaml

    from chaoslab.api.operations import LabOperations
    from chaoslab.api.server import create_app
    from chaoslab.experiment.lab import lab_info

    info = lab_info()
    secrets = Path(info.secrets_file)
    token = yaml.safe_load(secrets.read_text(encoding="utf-8"))["lab_api_token"]
    app = create_app(LabOperations(), token, secrets.parent / "api.log")
    print(f"celery-chaos-lab API on http://{args.host}:{args.port}/docs (token: lab_api_token in {secrets})")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chaoslab", description="celery-chaos-lab: Celery under faults, checked task by task"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, helptext in (
        ("burst", cmd_burst, "publish a burst of every task kind from this node and report where each ran"),
        ("demo", cmd_demo, "run a burst from the lab's monitor node and print the table"),
    ):
        cmd = sub.add_parser(name, help=helptext)
        cmd.add_argument("--per-kind", type=int, default=10, help="tasks of each kind (default 10)")
        cmd.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for all results")
        cmd.add_argument("--min-nodes", type=int, default=2, help="worker nodes each kind must run on")
        if name == "burst":
            cmd.add_argument("--json", action="store_true", help="print the result as JSON")
        cmd.set_defaults(func=func)
    load = sub.add_parser("load", help="run the load generator on this node (open loop, fixed rate)")
    load.add_argument("--profile", help="YAML file: rate, mix [{kind, weight, args}], seed, publish_timeout")
    load.add_argument("--rate", type=float, help="tasks per second")
    load.add_argument("--mix", action="append", help="KIND[:WEIGHT[:JSON-ARGS]], repeatable")
    load.add_argument("--seed", type=int, default=0)
    load.add_argument("--publish-timeout", default="2s", help="bound on one publish (default 2s)")
    load.add_argument("--duration", help="how long to run (e.g. 60s); default until stopped")
    load.add_argument("--ledger", help="append a publish record per task to this file")
    load.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port")
    load.add_argument("--metrics-addr", default="127.0.0.1", help="address for the metrics port")
    load.set_defaults(func=cmd_load)
    run = sub.add_parser("run", help="run an experiment scenario (experiments/<name>.yml) on the lab")
    run.add_argument("scenario")
    run.add_argument("--check", action="store_true", help="only validate the scenario")
    run.add_argument("--results", help="results directory (default experiments/results)")
    run.add_argument("--verbose", action="store_true", help="show the Ansible output")
    run.add_argument("--run-id", help="the run's id (default: UTC time and the scenario's name)")
    run.add_argument("--junit", metavar="FILE", help="also write JUnit XML: a test case per hypothesis line")
    run.add_argument("--json", action="store_true",
                     help="print the run's verdict and outcome as JSON on stdout (the progress goes to stderr)")
    run.set_defaults(func=cmd_run)
    stud = sub.add_parser("study", help="run every scenario of a directory, each cell repeated, into one report")
    stud.add_argument("source", nargs="?", default="experiments/study", help="directory of scenario files")
    stud.add_argument("--repeat", type=int, help="runs of each cell (default 5)")
    stud.add_argument("--quick", action="store_true",
                      help="a first look: one repeat, no null controls, the time around each fault shortened; "
                           "not published")
    stud.add_argument("--no-null-controls", action="store_true",
                      help="skip the null controls (each scenario's first cell run once without its faults)")
    stud.add_argument("--only", action="append", help="run only this scenario (file stem), repeatable")
    stud.add_argument("--results", help="results directory (default experiments/results)")
    stud.add_argument("--publish", help="also copy the summaries and the report into this directory")
    stud.add_argument("--check", action="store_true", help="only validate the scenarios")
    stud.add_argument("--verbose", action="store_true", help="show the Ansible output")
    stud.add_argument("--junit", metavar="FILE", help="also write JUnit XML: a test suite per scenario, a test case "
                                                      "per hypothesis line of each run and one per null control")
    stud.add_argument("--json", action="store_true",
                      help="print the study's verdict and each run's as JSON on stdout (the progress goes to stderr)")
    stud.set_defaults(func=cmd_study)
    report = sub.add_parser("report", help="(re)write report.html for run directories")
    report.add_argument("run_dirs", nargs="+")
    report.set_defaults(func=cmd_report)
    comp = sub.add_parser("compare", help="a table of key figures across runs or matrix cells")
    comp.add_argument("run_dirs", nargs="+")
    comp.add_argument("--out", help="also write comparison.md and comparison.html into this directory")
    comp.set_defaults(func=cmd_compare)
    faults = sub.add_parser("faults", help="the fault windows on the lab's nodes and what each fault measured")
    faults.add_argument("--last", type=int, default=10, help="show the last N windows (default 10)")
    faults.add_argument("--json", action="store_true", help="print the windows as JSON")
    faults.set_defaults(func=cmd_faults)
    where = sub.add_parser("where", help="where Prometheus, Flower and Grafana are, and the credentials file")
    where.set_defaults(func=cmd_where)
    serve = sub.add_parser("serve", help="the lab's HTTP API: faults and runs, with interactive docs at /docs")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    import signal

    # Ctrl-C or SIGINT stops a run and reverts its fault even where the shell started this process with SIGINT
    # ignored (a background job of a non-interactive shell, nohup): Python then leaves SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except AnsibleError as err:
        print(f"chaoslab: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
