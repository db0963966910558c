"""Every number of docs/findings.md, checked against the reference study it cites.

    problems = check_findings(Path("docs/findings.md").read_text(), Path("experiments/reference"))

The convention (docs/experiments.md, "Citing the reference study"): a number is followed by its citation, an
inline code span, with nothing but spaces (or one line break) between them:

``326 ms `runs/baseline/task_acks_late=false/r1 p95_end_to_end```
    One run's figure: the run directory, then a figure of :mod:`chaoslab.analysis.figures` (read by
    :func:`chaoslab.analysis.run_dir.figures`, so a first-edition run's figures come from its verdict.json). A
    cell's null control is cited the same way: ``runs/<scenario>/<cell>/null <figure>``.
``327 ms `mean runs/baseline/task_acks_late=false p95_end_to_end```
    A cell's mean: the word ``mean``, the cell directory, a figure; the mean over the cell's ``r<k>`` directories.
``2 `study.json repeat```, ``12/s `runs/redis-restart/task_acks_late=false/r1/scenario.yml load.rate```
    A fact of the study: a file of the reference (``study.json``, or a run's ``summary.json``, ``run.json``,
    ``verdict.json``, ``scenario.yml``), then a dotted path into it; a list's element is named by its ``name`` or
    ``kind`` (``scenarios.memory-limit.params.limit``, ``phases.recovery.throughput``) or by its index.
    ``mean runs/<scenario>/<cell>/<file> <path>`` is that value's mean over the cell's repeats. ``duration`` of
    an item with ``started`` and ``ended`` is their difference (``study.json duration``).

A number is a word made of digits (with dots: ``98.84``, ``5.7.0``), a minus sign first when it is negative
(``-0.012 %``, ``\u22120.012 %``), with its unit glued or as the next word: ``%`` (of a ratio), ``ms``/``s``/``min``,
``MiB``/``GiB``, ``/s`` (a rate), ``x``/``\u00d7`` (a factor). It matches its value when:

- the unit is of the value's dimension: a figure's by :func:`chaoslab.analysis.figures.unit_of`; a number in a
  file's by its key (:data:`KEY_DIMENSIONS`: ``duration``, a study's ``phases.<name>`` and ``visibility_timeout`` in
  seconds, ``load.rate`` per second, ...; a key whose last word names a unit: ``latency_ms``, ``memory_gib``,
  ``mb`` as MiB; ``figures.<figure>``). A key of no known dimension (``machine.cpus``) is cited by a bare number
  only. A bare number may stand for a count or a ratio (``0.99``);
- the value, in the written unit, rounds to the digits written, its sign included;
- a ratio or a factor shows at least two significant digits (``0.010 %``, ``1.3x``), unless the value is exactly
  what is written (``1`` or ``100 %`` of a success ratio of exactly 1, ``1x`` of exactly 1.0); a whole ``0 %`` or
  ``100 %`` means none or all, so it too must be exact.

A text value with a unit (``300MiB``, ``200ms``, ``70%``) is read with :mod:`chaoslab.units` as the written
number's dimension. Any other text is matched only by a bare number (no sign, no unit) that is a version in it, a
dotted number standing as its own word, or that version's leading parts: ``6.18`` and ``6.18.44`` of
``6.18.44-fc-v669``, ``12`` of ``Debian GNU/Linux 12``; not ``669``, ``18.44`` or ``200`` of ``200ms``. A name (a
code span or a word with a letter in it) may be cited too: it must then equal the value (``36fec5b `study.json
versions.project_commit```).

Numbers that are not data, each by one narrow rule:

- digits inside a name are part of the name: a word that starts with a letter (``p95``, ``r1``, ``worker-1``,
  ``x86_64``). A word that starts with a digit is a number (with a unit above) or a problem (``10k``, ``5GB``,
  ``2h``, ``1e3``, ``2nd``, ``2-CPU``), except two kinds of name: a commit id (7 to 40 hexadecimal digits, one of
  them a letter: ``36fec5b``) and a study id (``20261125-202211-study``);
- the inside of a citation (its run, cell, figure, path, version digits) is the citation;
- fenced code blocks, link targets (``](...)``) and ordered-list markers (``1.`` starting a line);
- a sweep's table of knees (between ``<!-- knees: sweeps/<sweep> -->`` and ``<!-- /knees -->``), which is checked
  whole instead: it must be what :mod:`chaoslab.report.sweep_reference` makes of the published sweep.

A point of a published sweep is one run: ``200 ms `sweeps/redis-delay/cells/task_acks_late=false,delay=200ms
p95_end_to_end``` (a figure), or with a file and a key as a run's (``.../summary.json phases.fault.throughput``).

A code span that is not a citation is a name: a number standing alone in one is a problem, as in prose. A bare
``runs/...`` or ``figures/...`` span (no key) names a run, cell or image, which must exist. A range (``30-45``) is
a problem: write each end as its own cited number.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from chaoslab import units
from chaoslab.analysis import run_dir as run_files
from chaoslab.analysis.figures import phase_figure, unit_of
from chaoslab.node.tasks import KINDS as TASK_KINDS
from chaoslab.report.study_report import NULL_CONTROL_DIR, RUNS_DIR, STUDY_FILE
from chaoslab.report.sweep_reference import SWEEPS_DIR, stale_table
from chaoslab.report.sweep_reference import TABLE as KNEES

MEAN: Final = "mean"
TIMES: Final = "\u00d7"
DURATION: Final = "duration"
FIGURES_DIR: Final = "figures"
CELLS_DIR: Final = run_files.CELLS_DIR
REPEAT: Final = re.compile(r"r\d+")
"""A repeat's directory name in a cell: ``r1``, ``r2``, ..."""
RUN_NAME: Final = re.compile(rf"{REPEAT.pattern}|{NULL_CONTROL_DIR}")
"""A run's directory name in a cell: a repeat, or the null control (cited like a repeat, never in a mean)."""
UNITS: Final[dict[str, tuple[str, float]]] = {
    "": ("number", 1.0),
    "%": ("ratio", 0.01),
    "ms": ("time", 0.001), "s": ("time", 1.0), "min": ("time", 60.0),
    "MiB": ("size", float(1024**2)), "GiB": ("size", float(1024**3)),
    "/s": ("rate", 1.0),
    "x": ("factor", 1.0), TIMES: ("factor", 1.0),
}
"""A written unit: its dimension and how many base units (second, byte, ratio 1, per second) one is."""
UNIT_WORDS: Final = frozenset({"%", "ms", "s", "min", "MiB", "GiB", "/s"})
"""Units that may stand as their own word after the number (``x`` only glued: ``2.1x``)."""
FIGURE_DIMENSIONS: Final = {"count": "number", "ratio": "ratio", "rate": "rate", "duration": "time",
                            "factor": "factor"}
"""A figure's dimension by its unit (:func:`chaoslab.analysis.figures.unit_of`)."""
FIGURES_KEY: Final = "figures"
"""``figures.<figure>`` in summary.json or verdict.json: that figure, in its unit."""
KEY_DIMENSIONS: Final[tuple[tuple[re.Pattern[str], str], ...]] = tuple((re.compile(key), unit) for key, unit in (
    (r"(?:.+\.)?duration", "s"),                                     # study.json, run.json; scenario.yml's phases
    (r"scenarios\.[^.]+\.phases\.[^.]+", "s"),                        # study.json: a phase's length
    (r"(?:.+\.)?(?:settings|celery)\.visibility_timeout", "s"),       # kombu's, in seconds
    (r"load\.rate", "/s"),                                            # scenario.yml: tasks published per second
    (r"(?:phases\.[^.]+|overall)\.throughput", "/s"),                 # summary.json: completions per second
    (r"(?:phases\.[^.]+|overall)\.latency\.[^.]+\.(?:p\d+|max)", "s"),  # summary.json: a latency statistic
    (r"(?:phases\.[^.]+|overall)\.success_ratio\.[^.]+", ""),         # summary.json: one kind's, 0-1
    (r"recovery\.baseline_rate", "/s"),                               # summary.json
))
"""The unit a bare number in a file is in, by its dotted key: the keys whose unit is known (a ``""`` unit: a ratio,
0-1). Also a key whose last ``_``-separated word names a unit (:data:`KEY_UNITS`), and ``figures.<figure>``. A
key not known holds a number of unknown dimension: it may be cited by a bare number only."""
KEY_UNITS: Final = {"ms": "ms", "s": "s", "mb": "MiB", "gib": "GiB"}
"""The unit of a bare number in a file, by the last ``_``-separated word of its key (``latency_ms``, ``mb``)."""
COARSE: Final = frozenset({"ratio", "factor"})
"""Dimensions written with at least two significant digits, unless the value is exactly what is written."""
PARSERS: Final[dict[str, Callable[[str], float]]] = {
    "time": units.parse_duration,
    "size": lambda text: float(units.parse_bytes(text)),
    "ratio": lambda text: units.parse_percent(text) / 100,
}
"""How a text value with a unit is read, by the written number's dimension."""
PLAIN_ALLOWED: Final = frozenset({"number", "ratio"})
"""Dimensions a number without unit may stand for (a ratio may be written 0.99)."""

_FENCE: Final = re.compile(r"^[ \t]*(`{3,}|~{3,}).*?^[ \t]*\1[^\n]*$", re.MULTILINE | re.DOTALL)
_LINK_TARGET: Final = re.compile(r"\]\(([^)\s]*)\)")
_LIST_MARKER: Final = re.compile(r"^[ \t]*(\d+[.)])[ \t]", re.MULTILINE)
_TOKEN: Final = re.compile(r"`(?P<code>[^`\n]+(?:\n[^`\n]+)*)`|(?P<word>[A-Za-z0-9_.%\u00d7\u2212/-]+)")
_QUANTITY: Final = re.compile(r"(?P<sign>[-\u2212])?(?P<number>\d+(?:\.\d+)*)"
                              r"(?P<unit>%|\u00d7|x|/s|ms|min|s|MiB|GiB)?")
_GLUED: Final = re.compile(r"\d[\d.]*-[A-Za-z]")
_STARTS_WITH_NUMBER: Final = re.compile(r"[-\u2212.]?\d")
_NAMES_WITH_DIGITS_FIRST: Final = (
    re.compile(r"(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}"),  # a commit id: 36fec5b
    re.compile(r"\d{8}-\d{6}-[a-z0-9-]+"),             # a study id: 20261125-202211-study
)
"""The only words that start with a digit and are names, not numbers."""
_CITATION: Final = re.compile(r"(?:(?P<mean>mean) )?(?P<path>runs/[\w.=,/-]+|sweeps/[\w.=,%/-]+|"
                              + re.escape(STUDY_FILE)
                              + r")(?: (?P<key>[\w.=,-]+))?")
_REFERENCE_PATH: Final = re.compile(rf"(?:{RUNS_DIR}|{FIGURES_DIR})/[\w.=,/-]+|{SWEEPS_DIR}/[\w.=,%/-]+")
_VERSION: Final = re.compile(r"(?<![\w.])\d+(?:\.\d+)*(?![\w.%/\u00d7])")
"""A version in a text value: a dotted number that stands as its own word (``6.18.44`` of ``6.18.44-fc-v669``,
``12`` of ``Debian GNU/Linux 12``), not digits glued to letters (``v669``), to a unit (``200ms``, ``70%``) or
inside another number (``18.44``)."""
_NEAR: Final = re.compile(r"[ \t]*\n?[ \t]*")
"""What may stand between a number, its unit and its citation."""


@dataclass(frozen=True, slots=True)
class Problem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    """``code`` (an inline code span's content) or ``word``."""
    text: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Citation:
    mean: bool
    path: str
    key: str | None
    """None: a bare reference to a run, cell or file, citing no value."""

    def __str__(self) -> str:
        return " ".join(part for part in (MEAN if self.mean else "", self.path, self.key or "") if part)


@dataclass(frozen=True, slots=True)
class Quantity:
    base: float
    """In base units: seconds, bytes, a ratio (1 = 100 %), per second, a factor, a count."""
    dimension: str | None
    """One of :data:`UNITS`' dimensions; None for a bare number whose key names no unit."""


Value = Quantity | str


class Lookup(Exception):
    """A citation that names nothing in the reference; its message says what is missing."""


# ---------------------------------------------------------------------------------------
# Reading the Markdown


def _blank(text: str, pattern: re.Pattern[str], group: int = 0) -> str:
    """*text* with every match of *pattern* (its *group*) turned to spaces, line breaks kept (offsets stay)."""
    def spaces(match: re.Match[str]) -> str:
        whole, (start, end) = match.group(0), match.span(group)
        start, end = start - match.start(), end - match.start()
        return whole[:start] + re.sub(r"[^\n]", " ", whole[start:end]) + whole[end:]
    return pattern.sub(spaces, text)


def prose(markdown: str) -> str:
    """*markdown* without what holds no data: fenced code, link targets, ordered-list markers (same offsets)."""
    return _blank(_blank(_blank(_blank(markdown, _FENCE), KNEES, 0), _LINK_TARGET, 1), _LIST_MARKER, 1)


def tokens(text: str) -> list[Token]:
    """The inline code spans and the words of *text* (a word's sentence-ending dots dropped)."""
    found = []
    for match in _TOKEN.finditer(text):
        if match["code"] is not None:
            found.append(Token("code", " ".join(match["code"].split()), match.start(), match.end()))
        else:
            word = match["word"].rstrip(".")
            found.append(Token("word", word, match.start(), match.start() + len(word)))
    return [token for token in found if token.text]


def quantity(word: str) -> re.Match[str] | None:
    """The number and glued unit of *word*, None when it is not a number."""
    return _QUANTITY.fullmatch(word)


def word_problem(word: str) -> str | None:
    """Why a word holding digits is neither a number nor a name, else None: a range (``30-45``), a number glued to
    a word (``2-CPU``) or to letters that are no unit of :data:`UNITS` (``10k``, ``5GB``, ``2nd``, ``1e3``). A word
    that starts with a letter (``p95``, ``worker-1``) is a name; of those that start with a digit, only a commit id
    and a study id (:data:`_NAMES_WITH_DIGITS_FIRST`)."""
    if not any(char.isdigit() for char in word) or quantity(word):
        return None
    if not any(char.isalpha() for char in word):
        return f"'{word}' is not one number: write each as its own cited number"
    if not _STARTS_WITH_NUMBER.match(word) or any(name.fullmatch(word) for name in _NAMES_WITH_DIGITS_FIRST):
        return None
    if _GLUED.match(word):
        return f"'{word}': write the number as its own word, with its citation"
    return (f"'{word}' is no number with a known unit (%, ms, s, min, MiB, GiB, /s, x) and no name: write the "
            f"number, its unit and its citation")


def citation(code: str) -> Citation | None:
    """The citation a code span holds; None when it is no citation (a name)."""
    match = _CITATION.fullmatch(code)
    if match is None:
        return None
    return Citation(match["mean"] is not None, match["path"], match["key"])


def _looks_cited(code: str) -> bool:
    """Whether a code span means to be a citation or a reference (one with ``<...>`` placeholders is a pattern)."""
    return code.startswith((f"{MEAN} ", f"{RUNS_DIR}/", f"{SWEEPS_DIR}/", f"{STUDY_FILE} ")) and "<" not in code


def _near(text: str, before: Token, after: Token) -> bool:
    return _NEAR.fullmatch(text, before.end, after.start) is not None


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


# ---------------------------------------------------------------------------------------
# Resolving a citation


class Reference:
    """The committed reference study's files, each read once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._documents: dict[Path, Any] = {}
        self._figures: dict[Path, dict[str, float | None]] = {}

    def document(self, path: Path) -> Any:
        if path not in self._documents:
            text = path.read_text(encoding="utf-8")
            self._documents[path] = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        return self._documents[path]

    def figures(self, run: Path) -> dict[str, float | None]:
        if run not in self._figures:
            self._figures[run] = run_files.figures(run)
        return self._figures[run]

    def exists(self, path: str) -> bool:
        return (self.root / path).exists()

    def value(self, cited: Citation) -> Value:
        """The value *cited* names (a mean over the cell's repeats for a mean); :class:`Lookup` when missing."""
        if cited.key is None:
            raise Lookup(f"`{cited}` names no figure or key")
        if cited.path == STUDY_FILE:
            return self._in_file(self.root / STUDY_FILE, cited)
        if cited.path.startswith(f"{SWEEPS_DIR}/"):
            return self._in_run(*_sweep_point(self.root, cited), cited)
        scenario, cell, repeat, file = _run_parts(cited)
        cell_dir = self.root / RUNS_DIR / scenario / cell
        if not cited.mean:
            return self._in_run(cell_dir / repeat, file, cited)
        repeats = sorted((path for path in cell_dir.glob("r*") if REPEAT.fullmatch(path.name) and path.is_dir()),
                         key=lambda path: int(path.name[1:]))
        if not repeats:
            raise Lookup(f"`{cited}`: no cell {RUNS_DIR}/{scenario}/{cell} with repeats r<k>")
        return _mean([self._in_run(path, file, cited) for path in repeats], cited)

    def _in_run(self, run: Path, file: str, cited: Citation) -> Value:
        if not run_files.has_run(run):
            raise Lookup(f"`{cited}`: no run {run.relative_to(self.root).as_posix()}")
        if file:
            return self._in_file(run / file, cited)
        key = str(cited.key)
        figures = self.figures(run)
        if key not in figures:
            raise Lookup(f"`{cited}`: no figure {key} in {run.relative_to(self.root).as_posix()}")
        found = figures[key]
        if found is None:
            raise Lookup(f"`{cited}`: figure {key} is unknown in {run.relative_to(self.root).as_posix()}")
        return Quantity(float(found), figure_dimension(key))

    def _in_file(self, path: Path, cited: Citation) -> Value:
        if not path.is_file():
            raise Lookup(f"`{cited}`: no file {path.relative_to(self.root).as_posix()}")
        key = str(cited.key)
        return _as_value(_walk(self.document(path), key, cited), key, cited)


def _sweep_point(root: Path, cited: Citation) -> tuple[Path, str]:
    """``sweeps/<sweep>/cells/<cell>[/<file>]``: a point of a published sweep (one run) and the file named."""
    parts = cited.path.split("/")
    if cited.mean or len(parts) < 4 or parts[2] != CELLS_DIR:
        raise Lookup(f"`{cited}`: a sweep's point is sweeps/<sweep>/cells/<cell> (one run, no mean)")
    return root.joinpath(*parts[:4]), "/".join(parts[4:])


def _run_parts(cited: Citation) -> tuple[str, str, str, str]:
    """``runs/<scenario>/<cell>[/r<k>][/<file>]`` as (scenario, cell, repeat, file), ``""`` for a part not given;
    a run's citation names its repeat, a mean's does not."""
    parts = cited.path.split("/")[1:]
    if len(parts) < 2:
        raise Lookup(f"`{cited}`: a run is runs/<scenario>/<cell>/r<k>")
    scenario, cell, rest = parts[0], parts[1], parts[2:]
    repeat = rest.pop(0) if rest and RUN_NAME.fullmatch(rest[0]) else ""
    file = "/".join(rest)
    if cited.mean and repeat:
        raise Lookup(f"`{cited}`: a mean is over a cell's repeats: cite the cell, without /{repeat}")
    if not cited.mean and not repeat:
        raise Lookup(f"`{cited}`: a cell is cited by its mean: write `{MEAN} {cited}`, or cite one run's r<k>")
    return scenario, cell, repeat, file


def _walk(data: Any, key: str, cited: Citation) -> Any:
    """The item at dotted *key* in *data*: a list's element by its ``name`` or ``kind``, or by its index; the
    ``duration`` of an item with ``started`` and ``ended`` (study.json, run.json) and none of its own: their
    difference. A mapping's key that holds dots itself (a per-kind figure, ``mean_run_time.cpu``) is matched whole,
    the longest such key first."""
    parts = key.split(".")
    while parts:
        part = parts.pop(0)
        candidates = (".".join([part, *parts[:length]]) for length in range(len(parts), -1, -1))
        joined = next((name for name in candidates if name in data), None) if isinstance(data, dict) else None
        if joined is not None:
            del parts[:joined.count(".")]
            data = data[joined]
        elif isinstance(data, dict) and part == DURATION and all(
                isinstance(data.get(name), int | float) for name in ("started", "ended")):
            data = data["ended"] - data["started"]
        elif isinstance(data, list):
            named = [item for item in data if isinstance(item, dict) and part in (item.get("name"), item.get("kind"))]
            if named:
                data = named[0]
            elif part.isdigit() and int(part) < len(data):
                data = data[int(part)]
            else:
                raise Lookup(f"`{cited}`: no {part} in {key}")
        else:
            raise Lookup(f"`{cited}`: no {part} in {key}")
    return data


def figure_dimension(name: str) -> str | None:
    """The dimension of figure *name* (a per-kind one too: ``p95_run_time_ratio.cpu``); None for no figure."""
    unit = unit_of(name, TASK_KINDS)
    return None if unit is None else FIGURE_DIMENSIONS[unit]


PUBLISHED_FIGURE = re.compile(r"(?:.*\.)?published\.figures\.(?P<figure>.+)\.(?P<side>baseline|fault)")
"""A published figure's value beside this lab's (study.json, a run's scenario.yml): in the figure's unit."""


def key_dimension(key: str) -> tuple[str, float] | None:
    """The dimension of a bare number at dotted *key* of a file, and how many base units one is; None when the key's
    unit is not known: ``figures.<figure>`` and ``published.figures.<figure>.<side>`` by the figure's unit, a key
    of :data:`KEY_DIMENSIONS`, a key whose last word names its unit (:data:`KEY_UNITS`)."""
    head, sep, figure = key.partition(".")
    published = PUBLISHED_FIGURE.fullmatch(key)
    if published or (sep and head == FIGURES_KEY):
        dimension = figure_dimension(phase_figure(published["figure"], published["side"]) if published else figure)
        return None if dimension is None else (dimension, 1.0)
    unit = next((unit for pattern, unit in KEY_DIMENSIONS if pattern.fullmatch(key)), None)
    if unit is None:
        unit = KEY_UNITS.get(key.rsplit(".", 1)[-1].rsplit("_", 1)[-1])
    if unit is None:
        return None
    return ("ratio", 1.0) if unit == "" else UNITS[unit]


def _as_value(found: Any, key: str, cited: Citation) -> Value:
    if isinstance(found, bool):
        return str(found).lower()
    if isinstance(found, str):
        return found
    if isinstance(found, int | float):
        known = key_dimension(key)
        if known is None:
            return Quantity(float(found), None)
        dimension, scale = known
        return Quantity(float(found) * scale, dimension)
    raise Lookup(f"`{cited}`: {key} is not a number or a text")


def _mean(values: list[Value], cited: Citation) -> Quantity:
    """The mean of the repeats' values (each a number)."""
    numbers = [value for value in values if isinstance(value, Quantity)]
    if len(numbers) != len(values):
        raise Lookup(f"`{cited}`: a mean needs a number in every repeat")
    return Quantity(sum(value.base for value in numbers) / len(numbers), numbers[0].dimension)


# ---------------------------------------------------------------------------------------
# Comparing what is written with the value


def _decimals(number: str) -> int:
    return len(number.partition(".")[2])


def _significant(number: str) -> int:
    """How many significant digits *number* (unsigned, as written) shows: ``0.01`` 1, ``1.0`` 2, ``100`` 3."""
    return len(number.replace(".", "").lstrip("0"))


def _signed(match: re.Match[str]) -> str:
    """The number of a :func:`quantity` match with its sign, the minus sign as ``-``."""
    return ("-" if match["sign"] else "") + match["number"]


def matches_text(written: str, value: str) -> bool:
    """*written* is the text; or a bare number (no sign, no unit) that is a version in it (:data:`_VERSION`) or that
    version's leading parts: ``6.18`` of ``6.18.44-fc-v669``, ``12`` of ``Debian GNU/Linux 12``, not ``669``,
    ``18.44`` or ``200`` of ``200ms``."""
    if written == value:
        return True
    if not re.fullmatch(r"\d+(?:\.\d+)*", written):
        return False
    return any(version == written or version.startswith(f"{written}.") for version in _VERSION.findall(value))


def _quantity_of(value: str, dimension: str) -> Quantity | str:
    """A text value read as a *dimension* (``300MiB`` as a size); the reason as text when it is none."""
    try:
        return Quantity(PARSERS[dimension](value), dimension)
    except ValueError:
        return f"the data say '{value}', not a {dimension}"


def mismatch(written: str, unit: str, value: Value) -> str | None:
    """Why *written* (a number, ``-`` its sign, or a name as written; *unit* its written unit) does not match
    *value*; None when it does. A number's unit must be of the value's dimension (a value of unknown dimension: no
    unit); it rounds to the digits written, and a ratio or a factor shows two significant digits unless it is
    exactly what is written (:func:`_too_coarse`). A name or a version matches by :func:`matches_text`."""
    dimension, scale = UNITS[unit]
    if isinstance(value, str) and dimension in PARSERS:
        read = _quantity_of(value, dimension)
        if isinstance(read, str):
            return read
        value = read
    if isinstance(value, str):
        return None if unit == "" and matches_text(written, value) else f"the data say '{value}'"
    if not quantity(written) or written.count(".") > 1:
        return f"'{written}' is not a number, but the data say {value.base:g}"
    shown = f" ({unit})" if unit else ""
    if value.dimension is None and dimension != "number":
        return f"written as a {dimension}{shown}, but the cited key's unit is not known: write the number bare"
    if value.dimension is not None and dimension != value.dimension and not (
            dimension == "number" and value.dimension in PLAIN_ALLOWED):
        return f"written as a {dimension}{shown}, but the value is a {value.dimension}"
    number = written.lstrip("-")
    actual, places, exact = value.base / scale, _decimals(number), f"{value.base / scale:.6g}"
    close = abs(actual - float(written)) <= 0.5 * 10**-places + 1e-9 * max(1.0, abs(actual))
    if close and written.startswith("-") and actual >= 0:
        return f"the data say {exact}{f' {unit}' if unit else ''}, not a negative number"
    if close and _too_coarse(number, value.dimension or dimension, float(number) * scale) and (
            abs(actual - float(written)) > 1e-9 * max(1.0, abs(actual))):
        return (f"too coarse for a {value.dimension or dimension}: the data say {exact}{f' {unit}' if unit else ''}; "
                f"write two significant digits")
    if close:
        return None
    rounded = f"{actual:.{places}f}"
    return f"the data say {rounded}{f' {unit}' if unit else ''}{f' ({exact})' if exact != rounded else ''}"


def _too_coarse(number: str, dimension: str, base: float) -> bool:
    """Whether *number* (unsigned, as written; *base* it in base units) must equal its value exactly: a ratio or a
    factor written with fewer than two significant digits (``1`` of a success ratio, ``1x``, ``0.01 %``), or a
    ratio written as a whole none or all (``0 %``, ``100 %``; ``100.0 %`` is rounded)."""
    if dimension not in COARSE:
        return False
    return _significant(number) < 2 or (dimension == "ratio" and "." not in number and base in (0.0, 1.0))


# ---------------------------------------------------------------------------------------
# The check


def _values(text: str, found: list[Token]) -> Iterator[tuple[int, Token, str, int]]:
    """Each value as written, its unit and the index of the token after it: a number (its unit glued or the next
    word), or a name (a word with a letter in it, or a code span that is no citation)."""
    index = 0
    while index < len(found):
        token, after, unit = found[index], index + 1, ""
        match = quantity(token.text) if token.kind == "word" else None
        if match:
            unit = match["unit"] or ""
            following = found[after] if after < len(found) else None
            if (not unit and following is not None and following.kind == "word" and following.text in UNIT_WORDS
                    and _near(text, token, following)):
                unit, after = following.text, after + 1
            yield index, token, unit, after
        elif (token.kind == "code" and not _looks_cited(token.text)) or (
                token.kind == "word" and any(char.isalpha() for char in token.text)):
            yield index, token, unit, after
        index = after


def _citation_after(text: str, found: list[Token], index: int) -> Citation | None:
    """The citation (with a key) at token *index*, when it stands right after the token before it."""
    if index >= len(found) or found[index].kind != "code" or not _near(text, found[index - 1], found[index]):
        return None
    cited = citation(found[index].text)
    return cited if cited is not None and cited.key is not None else None


def _check_value(reference: Reference, token: Token, unit: str, cited: Citation) -> str | None:
    try:
        value = reference.value(cited)
    except Lookup as missing:
        return str(missing)
    match = quantity(token.text)
    why = mismatch(_signed(match) if match else token.text, unit, value)
    shown = token.text if token.text.endswith(unit) else f"{token.text} {unit}"
    return None if why is None else f"{shown} does not match `{cited}`: {why}"


def _word_problems(words: list[Token], cited: set[int], where: str) -> list[tuple[int, str]]:
    """A number not cited, a range, a number glued to a word (offset, message)."""
    problems = []
    for index, word in enumerate(words):
        if word.kind != "word":
            continue
        if quantity(word.text) and index not in cited:
            problems.append((word.start, f"{word.text}: a number without a citation{where}"))
        elif why := word_problem(word.text):
            problems.append((word.start, why))
    return problems


def _code_problems(reference: Reference, token: Token, used: bool) -> list[str]:
    """Why a code span is wrong: an unused citation, a reference to nothing, a malformed citation, a number alone
    in a name."""
    cited = citation(token.text)
    if cited is not None and cited.key is None:
        return [] if reference.exists(cited.path) else [f"`{token.text}`: no such run, cell or file in the reference"]
    if cited is not None:
        return [] if used else [f"`{token.text}` cites no number: put it right after the number it cites"]
    if _looks_cited(token.text):
        return [f"`{token.text}` is not a citation: write `[mean ]runs/<scenario>/<cell>[/r<k>][/<file>] <key>`, "
                f"`{SWEEPS_DIR}/<sweep>/cells/<cell>[/<file>] <key>` or `{STUDY_FILE} <key>`"]
    problems = [message for _, message in _word_problems(tokens(token.text), set(), " (in code: cite it)")]
    if _REFERENCE_PATH.fullmatch(token.text) and not reference.exists(token.text):
        problems.append(f"`{token.text}`: no such file in the reference")
    return problems


def check_text(markdown: str, reference: Reference) -> list[Problem]:
    """Every problem of *markdown*'s numbers and citations against *reference*, in the order of the text."""
    text = prose(markdown)
    found = tokens(text)
    problems: list[tuple[int, str]] = []
    cited: set[int] = set()
    used: set[int] = set()
    for index, token, unit, after in _values(text, found):
        cited_here = _citation_after(text, found, after)
        if cited_here is None:
            continue
        cited.add(index)
        used.add(after)
        if why := _check_value(reference, token, unit, cited_here):
            problems.append((token.start, why))
    problems.extend(_word_problems(found, cited, ""))
    for index, token in enumerate(found):
        if token.kind == "code":
            problems.extend((token.start, message) for message in _code_problems(reference, token, index in used))
    return [Problem(_line(text, offset), message) for offset, message in sorted(problems, key=lambda item: item[0])]


def check_findings(markdown: str, reference_dir: Path) -> list[Problem]:
    """The problems of *markdown* (docs/findings.md's text) against the reference study in *reference_dir*; a table
    of a sweep's knees is checked whole against the published sweep."""
    stale = [Problem(_line(markdown, found.start()), problem) for found in KNEES.finditer(markdown)
             if (problem := stale_table(found, reference_dir))]
    return check_text(markdown, Reference(reference_dir)) + stale
