"""Benchmark: seconds to bring the local lab up and provision it, at N=2 and N=8 workers, and a second run.

Run as root: .venv/bin/python bench/bench_lab.py [--small 2] [--large 8]
Each measurement starts from no lab (lab-down first). Targets on a 2-core machine with packages installed:
lab-up + site.yml <= 60 s at N=2, <= 3 s per extra worker, second site.yml run <= 20 s.
The lab is left up with the small worker count.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def playbook(name: str, workers: int) -> float:
    env = dict(os.environ, LAB_WORKERS=str(workers), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    start = time.monotonic()
    proc = subprocess.run([str(BIN / "ansible-playbook"), name], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=False)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"{name} (N={workers}) failed:\n{proc.stdout[-3000:]}")
    return elapsed


def cold_start(workers: int) -> float:
    playbook("playbooks/lab-down.yml", workers)
    return playbook("playbooks/lab-up.yml", workers) + playbook("playbooks/site.yml", workers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=2)
    parser.add_argument("--large", type=int, default=8)
    args = parser.parse_args()
    large = cold_start(args.large)
    small = cold_start(args.small)
    rerun = playbook("playbooks/site.yml", args.small)
    per_worker = (large - small) / (args.large - args.small)
    rows = [
        (f"lab-up + site.yml, N={args.small}", small, 60.0),
        (f"lab-up + site.yml, N={args.large}", large, None),
        ("per extra worker", per_worker, 3.0),
        (f"second site.yml run, N={args.small}", rerun, 20.0),
    ]
    print(f"{'measure':38} {'seconds':>8}  target")
    for name, value, target in rows:
        verdict = "" if target is None else f"<= {target:g} s  {'met' if value <= target else 'MISSED'}"
        print(f"{name:38} {value:8.1f}  {verdict}")


if __name__ == "__main__":
    main()
