"""The ``chaoslab`` command."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from rich.console import Console
from rich.table import Table

from chaoslab.ansible_runner import AnsibleError, adhoc_json


def _print_tally(table: dict[str, Counter[str]]) -> None:
    nodes = sorted({node for counts in table.values() for node in counts if node != "failed"})
    view = Table(title="Tasks per kind per worker node (succeeded)")
    view.add_column("kind")
    for node in nodes:
        view.add_column(node, justify="right")
    view.add_column("failed", justify="right")
    for kind, counts in table.items():
        view.add_row(kind, *(str(counts[node]) for node in nodes), str(counts["failed"]))
    Console().print(view)


def cmd_burst(args: argparse.Namespace) -> int:
    from chaoslab import burst

    outcomes = burst.collect(burst.publish(args.per_kind), args.timeout)
    table = burst.tally(outcomes)
    found = burst.problems(table, args.min_nodes)
    if args.json:
        print(json.dumps({"table": {kind: dict(counts) for kind, counts in table.items()}, "problems": found}))
    else:
        _print_tally(table)
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
    for line in report["problems"]:
        print(f"problem: {line}", file=sys.stderr)
    return 1 if report["problems"] else 0


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except AnsibleError as err:
        print(f"chaoslab: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
