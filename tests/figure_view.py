"""What a reader sees in a matplotlib figure, read from the figure's artists instead of its pixels.

    view = FigureView.of(figure)
    view.title, view.xlabel, view.ylabel, view.legend   # the words on the figure
    view.curves["noop"].y                                # a labelled line's data
    view.bands                                           # shaded spans (axvspan), e.g. fault windows

Only the first axes of a figure is read (the run report draws one per figure); the labels of a secondary x axis
on top (the run report's phase names) are ``top_labels``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.text import Annotation

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Curve:
    """A labelled line: its data, colour (``#rrggbb``) and line style (``-``, ``--``, ``:``)."""

    label: str
    x: FloatArray
    y: FloatArray
    colour: str
    style: str


@dataclass(frozen=True)
class Band:
    """A span shaded over the whole height of the axes, from *start* to *end* on the x axis."""

    start: float
    end: float
    colour: str


@dataclass(frozen=True)
class FigureView:
    title: str
    xlabel: str
    ylabel: str
    xlim: tuple[float, float]
    legend: list[tuple[str, str]]
    """Each legend entry: its text and the colour of its key."""
    curves: dict[str, Curve]
    bands: list[Band]
    marks: list[float]
    """Where vertical lines cross the whole axes (axvline)."""
    annotations: list[tuple[str, float]]
    """Text pinned to an x position: the text and that position."""
    texts: list[str]
    """Every text drawn inside the axes (annotations included)."""
    top_labels: list[tuple[str, float]]
    """The labels of a secondary x axis on top, with their positions."""

    @classmethod
    def of(cls, figure: Figure) -> FigureView:
        ax = figure.axes[0]
        lines = [line for line in ax.lines if isinstance(line, Line2D)]
        return cls(
            title=ax.get_title(),
            xlabel=ax.get_xlabel(),
            ylabel=ax.get_ylabel(),
            xlim=(float(ax.get_xlim()[0]), float(ax.get_xlim()[1])),
            legend=_legend(ax),
            curves={str(line.get_label()): _curve(line) for line in lines if not _is_mark(line) and _shown(line)},
            bands=[_band(patch) for patch in ax.patches if isinstance(patch, Rectangle) and _is_band(patch)],
            marks=sorted(float(np.asarray(line.get_xdata())[0]) for line in lines if _is_mark(line)),
            annotations=[(text.get_text(), float(text.xy[0])) for text in ax.texts if isinstance(text, Annotation)],
            texts=[text.get_text() for text in ax.texts],
            top_labels=[(label.get_text(), float(tick)) for child in ax.child_axes
                        for label, tick in zip(child.xaxis.get_ticklabels(), child.get_xticks(), strict=True)],
        )


def _shown(line: Line2D) -> bool:
    """Labelled for the legend (matplotlib names unlabelled artists ``_child<n>``)."""
    return not str(line.get_label()).startswith("_")


def _is_mark(line: Line2D) -> bool:
    x, y = np.asarray(line.get_xdata(), dtype=float), np.asarray(line.get_ydata(), dtype=float)
    return len(x) == 2 and x[0] == x[1] and list(y) == [0.0, 1.0]


def _curve(line: Line2D) -> Curve:
    return Curve(str(line.get_label()), np.asarray(line.get_xdata(), dtype=np.float64),
                 np.asarray(line.get_ydata(), dtype=np.float64), to_hex(line.get_color()), str(line.get_linestyle()))


def _is_band(patch: Rectangle) -> bool:
    """Spans the axes' whole height: y from 0 to 1 in axes coordinates (what axvspan draws)."""
    return patch.get_y() == 0 and patch.get_height() == 1


def _band(patch: Rectangle) -> Band:
    return Band(float(patch.get_x()), float(patch.get_x() + patch.get_width()), to_hex(patch.get_facecolor()))


def _legend(ax: Axes) -> list[tuple[str, str]]:
    legend = ax.get_legend()
    if legend is None:
        return []
    return [(text.get_text(), _key_colour(handle))
            for text, handle in zip(legend.get_texts(), legend.legend_handles, strict=True)]


def _key_colour(handle: object) -> str:
    if isinstance(handle, Line2D):
        return to_hex(handle.get_color())
    if isinstance(handle, Patch):
        face = handle.get_facecolor()
        return to_hex(face if face[3] else handle.get_edgecolor())
    raise TypeError(f"a legend key of an unexpected kind: {handle!r}")
