"""Benchmark: what an experiment costs beyond its phases on the local lab, and where that time goes.

Run as root with the local lab up (make lab): .venv/bin/python bench/bench_overhead.py [--runs 2]

Runs a short scenario (5 s baseline, 5 s worker-kill, 5 s recovery, a drain) through the real runner and lab
control --runs times in a row, timing every call the runner makes to the lab. Overhead = the run's wall time
minus the time its phases lasted (run.json's phase bounds), split into before the first phase and after the
last. The workers are first given the lab's default settings, so that the first run applies the scenario's Celery
settings (restarting the workers); later runs find them unchanged, as the workers report them, and run no
settings play. Target: overhead ≤ 10 s per run with the settings unchanged.

Then a sweep (``--points``, default 3: the same phases with a network delay of 0 ms, 20 ms, 50 ms, ...) through the
same runner: its points run back to back, only the dose changing, with no settings play between them. Overhead per
point = the sweep's wall time minus the time its points' phases lasted, over the points; target ≤ 10 s, set against
the single runs' overhead measured above.
"""

from __future__ import annotations

import argparse
import collections
import functools
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from chaoslab.experiment import runner
from chaoslab.experiment.lab import LabControl, lab_info
from chaoslab.experiment.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = """\
name: overhead
celery: {task_acks_late: true, worker_prefetch_multiplier: 1}
load: {rate: 10, seed: 1, mix: [{kind: noop}]}
phases:
  - {name: baseline, duration: 5s}
  - {name: fault, duration: 5s, fault: {playbook: worker-kill, target: "workers[0]"}}
  - {name: recovery, duration: 5s}
  - {name: drain, duration: 30s}
hypothesis: {lost: 0}
"""
SWEEP = SCENARIO.replace(
    'fault: {playbook: worker-kill, target: "workers[0]"}',
    "fault: {playbook: network-delay, target: redis, params: {delay: 20ms, peers: workers}}",
) + "sweep: {param: delay, values: [VALUES]}\n"
SWEEP_VALUES = ("0ms", "20ms", "50ms", "100ms", "200ms", "500ms")
TIMED = ("apply_broker_settings", "set_load", "background_load", "prepare", "fault", "clear", "collect",
         "store_metrics", "broker_info", "snapshot_broker", "task_results", "controller_clock", "idle")


class TimedLab:
    """The real lab control, with the time each call took (seconds by method)."""

    def __init__(self, control: LabControl) -> None:
        self.control = control
        self.spent: dict[str, float] = collections.defaultdict(float)
        self.calls: collections.Counter[str] = collections.Counter()

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.control, name)
        if name not in TIMED:
            return found

        @functools.wraps(found)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            try:
                return found(*args, **kwargs)
            finally:
                self.spent[name] += time.monotonic() - start
                self.calls[name] += 1

        return timed


def one_run(scenario_path: Path, results: Path, index: int) -> dict[str, Any]:
    lab = TimedLab(LabControl(lab_info()))
    start = time.time()
    code = runner.run(load_scenario(scenario_path, ROOT), lab, results,  # type: ignore[arg-type]
                      Console(file=io.StringIO(), width=200), run_id=f"overhead-{index}")
    end = time.time()
    run = json.loads((results / f"overhead-{index}" / "run.json").read_text(encoding="utf-8"))
    phases = run["phases"]
    in_phases = sum(phase["end"] - phase["start"] for phase in phases)
    return {"exit": code, "wall": end - start, "phases": in_phases, "before": phases[0]["start"] - start,
            "after": end - phases[-1]["end"], "spent": dict(lab.spent), "calls": dict(lab.calls)}


def sweep_run(scenario_path: Path, results: Path) -> dict[str, Any]:
    """The sweep's wall time, the time its points' phases lasted, and its points."""
    lab = TimedLab(LabControl(lab_info()))
    start = time.time()
    code = runner.run(load_scenario(scenario_path, ROOT), lab, results,  # type: ignore[arg-type]
                      Console(file=io.StringIO(), width=200), run_id="overhead-sweep")
    end = time.time()
    cells = sorted(path for path in (results / "overhead-sweep" / "cells").iterdir() if path.is_dir())
    in_phases = 0.0
    for cell in cells:
        run = json.loads((cell / "run.json").read_text(encoding="utf-8"))
        in_phases += sum(phase["end"] - phase["start"] for phase in run["phases"])
    return {"exit": code, "wall": end - start, "phases": in_phases, "points": len(cells), "spent": dict(lab.spent)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--points", type=int, default=3, choices=range(2, len(SWEEP_VALUES) + 1))
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root, with the local lab up (make lab)")
    with tempfile.TemporaryDirectory(prefix="chaoslab-bench-") as scratch:
        path = Path(scratch) / "overhead.yml"
        path.write_text(SCENARIO, encoding="utf-8")
        LabControl(lab_info()).prepare({})  # the lab's own settings: the first run applies the scenario's
        found = [one_run(path, Path(scratch) / "results", index) for index in range(1, args.runs + 1)]
        swept_path = Path(scratch) / "overhead-sweep.yml"
        swept_path.write_text(SWEEP.replace("VALUES", ", ".join(SWEEP_VALUES[:args.points])), encoding="utf-8")
        swept = sweep_run(swept_path, Path(scratch) / "results")
    print(f"{'run':>4} {'exit':>4} {'wall s':>7} {'phases s':>8} {'overhead s':>10} {'before':>7} {'after':>6}"
          "  ratio wall/phases")
    for index, result in enumerate(found, 1):
        overhead = result["wall"] - result["phases"]
        print(f"{index:>4} {result['exit']:>4} {result['wall']:>7.1f} {result['phases']:>8.1f} {overhead:>10.1f} "
              f"{result['before']:>7.1f} {result['after']:>6.1f}  {result['wall'] / result['phases']:.2f}")
    print("\nseconds per lab call (calls), by run:")
    for name in sorted({name for result in found for name in result["spent"]}):
        cells = [f"{result['spent'].get(name, 0.0):6.1f} ({result['calls'].get(name, 0)})" for result in found]
        print(f"  {name:<16} " + "  ".join(cells))
    first = found[0]["wall"] - found[0]["phases"]
    print(f"\noverhead of the run that applied the settings: {first:.1f} s")
    if len(found) > 1:
        worst = max(result["wall"] - result["phases"] for result in found[1:])
        print(f"largest overhead with the settings unchanged: {worst:.1f} s (target ≤ 10 s)")
    per_point = (swept["wall"] - swept["phases"]) / max(swept["points"], 1)
    single = min(result["wall"] - result["phases"] for result in found)
    print(f"\nsweep of {swept['points']} points (exit {swept['exit']}): wall {swept['wall']:.1f} s, phases "
          f"{swept['phases']:.1f} s; overhead per point {per_point:.1f} s (target ≤ 10 s), "
          f"{per_point / single:.2f}x a single run's ({single:.1f} s)")
    print("  seconds per lab call (calls not shown): " + ", ".join(
        f"{name} {spent:.1f}" for name, spent in sorted(swept["spent"].items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
