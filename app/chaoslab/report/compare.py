"""Compare runs: one row of key figures per run (or per cell of a matrix run).

    rows = compare(["experiments/results/run-a", "experiments/results/matrix-b"])
    write_comparison(rows, "experiments/results")  # comparison.md and comparison.html

A run directory holds ``run.json`` (written by the runner) and the checker's
``summary.json``, ``tasks.csv`` and ``executions.csv``, and ``verdict.json`` when the scenario
had a hypothesis (see :mod:`chaoslab.analysis.run_dir`). A matrix run is a parent directory
whose ``run.json`` lists ``cells``; each cell is a run directory under ``cells/<label>/`` and
becomes one row.

A row holds the task classes of ``summary.json`` and the run's figures as the checker wrote them
(:func:`chaoslab.analysis.run_dir.figures`; what each means: :mod:`chaoslab.analysis.figures`):
``success_ratio``, ``p95_end_to_end``, ``throughput_baseline``, ``throughput_fault``,
``throughput_drop`` (negative when the fault phase completed more, e.g. a backlog draining) and
``recovery_time`` (``None``: not recovered, or no fault or baseline).

A directory that lacks a file gives a row with what it has (``None`` elsewhere), so an
aborted or failed run still shows up. The comparison is written as Markdown and HTML for
reading and as CSV and JSON for a notebook (every field of every row; ``held`` is true or
false when the run had a hypothesis). This module also holds the small HTML and number
formatting helpers that :mod:`chaoslab.report.report` shares.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Final

from chaoslab.analysis import run_dir as run_files
from chaoslab.analysis.checker import CLASSES

MISSING: Final = "—"

StrPath = str | os.PathLike[str]


def run_label(run: Mapping[str, Any], default: str) -> str:
    """``scenario / cell`` (or the scenario alone), *default* when run.json says neither."""
    scenario = str(run.get("scenario") or default)
    cell = run.get("cell")
    return f"{scenario} / {cell}" if cell else scenario


HELD: Final = "held"
NOT_HELD: Final = "did not hold"


def _verdict_word(verdict: Mapping[str, Any] | None) -> str | None:
    if verdict is None or "passed" not in verdict:
        return None
    return HELD if verdict["passed"] else NOT_HELD


# ---------------------------------------------------------------------------------------
# Rows


@dataclass(frozen=True, slots=True)
class Row:
    """Key figures of one run (or one cell of a matrix run); None where unknown."""

    label: str
    run_id: str
    path: Path
    status: str
    completed: int | None
    duplicated_completed: int | None
    duplicated_not_completed: int | None
    failed: int | None
    failed_by_worker: int | None
    pending: int | None
    lost: int | None
    publish_failed: int | None
    success_ratio: float | None
    p95_end_to_end: float | None
    throughput_baseline: float | None
    throughput_fault: float | None
    throughput_drop: float | None
    recovery_time: float | None
    delivery: str | None
    verdict: str | None
    """``held``, ``did not hold``, or None when the run has no verdict."""

    @property
    def held(self) -> bool | None:
        return None if self.verdict is None else self.verdict == HELD

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        data["held"] = self.held
        return data


def load_row(run_dir: StrPath) -> Row:
    """The row of one single run directory."""
    path = Path(run_dir)
    run = run_files.read_run(path) or {"status": "missing"}
    found = run_files.read_summary(path)
    figures = run_files.figures(path, found)
    summary = found or {}
    classes = summary.get("classes", {})
    return Row(
        label=run_label(run, path.name),
        run_id=str(run.get("run_id") or path.name),
        path=path,
        status=str(run.get("status") or "unknown"),
        **{cls: classes.get(cls) for cls in CLASSES},
        success_ratio=figures.get("success_ratio"),
        p95_end_to_end=figures.get("p95_end_to_end"),
        throughput_baseline=figures.get("throughput_baseline"),
        throughput_fault=figures.get("throughput_fault"),
        throughput_drop=figures.get("throughput_drop"),
        recovery_time=figures.get("recovery_time"),
        delivery=summary.get("delivery", {}).get("guarantee"),
        verdict=_verdict_word(run_files.read_verdict(path)),
    )


def compare(run_dirs: Iterable[StrPath]) -> list[Row]:
    """One row per run; a matrix parent gives one row per cell."""
    return [load_row(run_dir) for run_dir in run_files.expand_runs(run_dirs)]


# ---------------------------------------------------------------------------------------
# Formatting


def fmt_count(value: int | None) -> str:
    return MISSING if value is None else f"{value:,}"


def fmt_ratio(value: float | None) -> str:
    """A ratio as a percentage, e.g. ``99.52 %``."""
    return MISSING if value is None else f"{value * 100:.2f} %"


def fmt_rate(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}/s"


def fmt_seconds(value: float | None) -> str:
    """A duration: ms below one second (``12.3 ms``), else seconds (``4.56 s``)."""
    if value is None:
        return MISSING
    if abs(value) < 1:
        return f"{value * 1000:.3g} ms"
    return f"{value:.3g} s" if abs(value) < 100 else f"{value:.0f} s"


def fmt_text(value: object) -> str:
    return MISSING if value is None else str(value)


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    cell: Callable[[Row], str]


COLUMNS: Final = (
    Column("run", lambda row: row.label),
    Column("run id", lambda row: row.run_id),
    Column("status", lambda row: row.status),
    *(Column(cls.replace("_", " "), lambda row, cls=cls: fmt_count(getattr(row, cls))) for cls in CLASSES),
    Column("success ratio", lambda row: fmt_ratio(row.success_ratio)),
    Column("p95 end to end", lambda row: fmt_seconds(row.p95_end_to_end)),
    Column("throughput baseline", lambda row: fmt_rate(row.throughput_baseline)),
    Column("throughput fault", lambda row: fmt_rate(row.throughput_fault)),
    Column("throughput drop", lambda row: fmt_ratio(row.throughput_drop)),
    Column("recovery time", lambda row: fmt_seconds(row.recovery_time)),
    Column("delivery", lambda row: fmt_text(row.delivery)),
    Column("verdict", lambda row: fmt_text(row.verdict)),
)


def _cells(rows: Iterable[Row]) -> list[list[str]]:
    return [[column.cell(row) for column in COLUMNS] for row in rows]


def to_markdown(rows: Sequence[Row]) -> str:
    """A GitHub-flavoured Markdown table, one line per row."""

    def line(cells: Iterable[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    headers = [column.header for column in COLUMNS]
    lines = [line(headers), line("---" for _ in headers), *(line(cells) for cells in _cells(rows))]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# HTML (shared with chaoslab.report.report)

BASE_CSS: Final = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1400px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { background: #d9f2d9; color: #145214; font-weight: bold; }
.fail { background: #f8d4d4; color: #8a1111; font-weight: bold; }
.banner { padding: 0.8em 1em; margin: 1em 0; border: 2px solid #b00; background: #fde2e2;
  color: #700; font-weight: bold; font-size: 1.1em; }
code { font-size: 0.85em; word-break: break-all; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #555; }
.scroll { overflow-x: auto; }
table.comparison { font-size: 0.82em; } table.comparison td { white-space: nowrap; }
"""

_VERDICT_CLASS: Final = {HELD: "pass", NOT_HELD: "fail"}
_TEXT_COLUMNS: Final = frozenset(("run", "run id", "status", "delivery", "verdict"))
_NUMERIC_COLUMNS: Final = frozenset(i for i, column in enumerate(COLUMNS) if column.header not in _TEXT_COLUMNS)


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def html_cell(text: str, css_class: str | None = None, header: bool = False) -> str:
    tag = "th" if header else "td"
    attr = f' class="{esc(css_class)}"' if css_class else ""
    return f"<{tag}{attr}>{esc(text)}</{tag}>"


def html_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    row_classes: Sequence[str | None] = (),
    cell_class: Callable[[int, str], str | None] | None = None,
    table_class: str | None = None,
) -> str:
    """A table of escaped text. ``row_classes`` (one per row, optional) sets each row's
    class; ``cell_class(column_index, text)`` each data cell's."""
    head = "<tr>" + "".join(html_cell(h, header=True) for h in headers) + "</tr>"
    body = []
    for index, row in enumerate(rows):
        css = row_classes[index] if index < len(row_classes) else None
        attr = f' class="{esc(css)}"' if css else ""
        cells = "".join(html_cell(text, cell_class(col, text) if cell_class else None) for col, text in enumerate(row))
        body.append(f"<tr{attr}>{cells}</tr>")
    attr = f' class="{esc(table_class)}"' if table_class else ""
    return f"<table{attr}>\n<thead>{head}</thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"


def html_page(title: str, body: str, css: str = "") -> str:
    """A complete, self-contained HTML page (inline CSS, no scripts, no external resources)."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{esc(title)}</title>\n<style>{BASE_CSS}{css}</style>\n</head>\n<body>\n"
        f"{body}\n</body>\n</html>\n"
    )


def _comparison_cell_class(column: int, text: str) -> str | None:
    if COLUMNS[column].header == "verdict":
        return _VERDICT_CLASS.get(text)
    return "num" if column in _NUMERIC_COLUMNS else None


def to_html(rows: Sequence[Row]) -> str:
    """The comparison as an HTML fragment (a table that scrolls sideways when wide); the verdict cell is coloured."""
    headers = [column.header for column in COLUMNS]
    table = html_table(headers, _cells(rows), cell_class=_comparison_cell_class, table_class="comparison")
    return f'<div class="scroll">\n{table}\n</div>'


def to_html_page(rows: Sequence[Row], title: str = "Comparison of runs") -> str:
    """The comparison as a complete HTML page."""
    return html_page(title, f"<h1>{esc(title)}</h1>\n{to_html(rows)}")


def to_csv(rows: Sequence[Row]) -> str:
    """Every field of every row, one line per row (numbers unformatted, empty where unknown)."""
    out = io.StringIO()
    names = [*(f.name for f in fields(Row)), "held"]
    writer = csv.DictWriter(out, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if value is None else value for key, value in row.to_dict().items()})
    return out.getvalue()


def to_json(rows: Sequence[Row]) -> str:
    return json.dumps([row.to_dict() for row in rows], indent=2) + "\n"


def write_comparison(rows: Sequence[Row], out_dir: StrPath) -> tuple[Path, Path]:
    """Write ``comparison.md``, ``comparison.html``, ``comparison.csv`` and ``comparison.json`` into *out_dir*;
    return the first two's paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    markdown, page = out / run_files.COMPARISON_MARKDOWN, out / run_files.COMPARISON_HTML
    run_files.write_atomically(markdown, to_markdown(rows))
    run_files.write_atomically(page, to_html_page(rows))
    run_files.write_atomically(out / run_files.COMPARISON_CSV, to_csv(rows))
    run_files.write_atomically(out / run_files.COMPARISON_JSON, to_json(rows))
    return markdown, page
