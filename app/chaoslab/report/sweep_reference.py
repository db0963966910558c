"""A sweep's runs published beside the reference study, and the table of its knees that docs/findings.md shows.

    python -m chaoslab.report.sweep_reference RUN_DIR DEST    (make study-sweeps)

Copies what the curves are drawn from (:func:`chaoslab.report.dose.load_curves`: the sweep run's ``run.json`` and,
of each point, ``run.json``, ``scenario.yml``, ``summary.json`` and ``verdict.json``; not the ledgers) into DEST,
draws ``dose.png`` there and prints the table of knees. docs/findings.md carries that table between
``<!-- knees: sweeps/<name> -->`` and ``<!-- /knees -->``; :func:`stale_tables` (a unit test) checks each against
the published runs, so the knees the findings state are the ones the data gives.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from chaoslab.analysis import run_dir as run_files
from chaoslab.report import dose

SWEEPS_DIR: Final = "sweeps"
"""Where in the study's reference the sweeps are published (``sweeps/<sweep>``, make study-sweeps): a study published
into the same reference keeps it."""
KEPT: Final = (run_files.RUN_FILE, run_files.SCENARIO_FILE, run_files.SUMMARY_FILE, run_files.VERDICT_FILE)
TABLE: Final = re.compile(r"<!-- knees: (?P<where>[A-Za-z0-9_./-]+) -->\n(?P<table>.*?)<!-- /knees -->", re.DOTALL)


def _copy(source: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in KEPT:
        if (source / name).is_file():
            shutil.copy2(source / name, dest / name)


def publish(parent: Path, dest: Path) -> list[dose.Curve]:
    """Copy the sweep run *parent* to *dest* (replacing it) and draw its curves there; ValueError if no sweep."""
    curves = dose.load_curves(parent)
    if not curves:
        raise ValueError(f"{parent}: not a sweep run (its run.json names no sweep)")
    if dest.exists():
        shutil.rmtree(dest)
    _copy(parent, dest)
    for cell in sorted((parent / run_files.CELLS_DIR).iterdir()):
        _copy(cell, dest / run_files.CELLS_DIR / cell.name)
    published = dose.load_curves(dest)
    dose.write_figure(published, param(dest), dest)
    return published


def param(parent: Path) -> str:
    return str(((run_files.read_run(parent) or {}).get("sweep") or {}).get("param") or "")


def _cell(value: float | None, unit: str = "", digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}g}{unit}"


def table(curves: Sequence[dose.Curve], swept: str) -> str:
    """The knees as a Markdown table: per configuration, the knee and why, and each point's throughput under the fault
    and p95 end to end, with lost / duplicated / failed where any."""
    values = [point.value for point in curves[0].points] if curves else []
    lines = [f"| configuration | knee | why | {' | '.join(f'{swept}={value}' for value in values)} |",
             f"|---|---|---|{'---|' * len(values)}"]
    for curve in curves:
        cells = []
        for point in curve.points:
            counts = ", ".join(f"{name} {value:g}" for name, value in (point.counts or {}).items() if value)
            cells.append(f"{_cell(point.throughput, '/s')}, p95 {_cell(point.percentile('p95'), ' s')}"
                         + (f", {counts}" if counts else ""))
        knee = curve.knee.point.value if curve.knee else "none"
        why = curve.knee.why if curve.knee else "no point past the limits"
        lines.append(f"| {curve.configuration or '—'} | {knee} | {why} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def stale_table(found: re.Match[str], reference: Path) -> str:
    """What is wrong with one knees table (a match of :data:`TABLE`) against its published sweep; "" if nothing."""
    where = reference / found["where"]
    curves = dose.load_curves(where)
    if not curves:
        return f"knees: {found['where']}: no published sweep there"
    if found["table"] != table(curves, param(where)):
        return (f"knees: {found['where']}: the table is not what the published runs give (python -m "
                f"chaoslab.report.sweep_reference --table {where})")
    return ""


def stale_tables(findings: str, reference: Path) -> list[str]:
    """Each knees table of *findings* that differs from what its published sweep gives (one line each)."""
    return [problem for found in TABLE.finditer(findings) if (problem := stale_table(found, reference))]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "--table":
        where = Path(args[1])
        print(table(dose.load_curves(where), param(where)), end="")
        return 0
    if len(args) != 2:
        print("usage: python -m chaoslab.report.sweep_reference RUN_DIR DEST | --table DEST", file=sys.stderr)
        return 2
    try:
        curves = publish(Path(args[0]), Path(args[1]))
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    print(table(curves, param(Path(args[1]))), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
