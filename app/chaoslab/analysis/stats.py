"""The statistics of repeated runs: a figure's mean with its 95 % interval, and whether two configurations differ.

    interval([1.2, 1.4, 1.3])            # Interval(mean=1.3, low=1.05..., high=1.54..., n=3)
    difference([1.2, 1.4, 1.3], [2.0, 2.2, 2.1])   # Difference(..., p=0.0004..., significant=True)

The interval is Student's t interval of the mean (the repeats are few, their spread unknown): with n repeats,
``mean +- t(0.975, n - 1) * s / sqrt(n)``. Two configurations are compared with Welch's t-test (unequal variances,
unequal counts), two-sided, at the 5 % level; the difference's interval uses the Welch-Satterthwaite degrees of
freedom. With every value of both sides equal within each side, the test is undefined: two constant sides differ
exactly when their values do, which the lab's counts often are (``lost`` 0 in every repeat).

Each comparison is one test at the 5 % level: among the many a study makes, about one in twenty differences marked
significant would be so by chance when nothing differs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from scipy import stats as scipy_stats

LEVEL: Final = 0.95
"""The confidence of every interval."""
ALPHA: Final = 1 - LEVEL
"""The significance level of every comparison."""


@dataclass(frozen=True, slots=True)
class Interval:
    """A figure over the repeats that know it: its mean and the 95 % interval of the mean."""

    mean: float | None
    low: float | None
    """None with fewer than two values (no interval from one run)."""
    high: float | None
    n: int
    """Values known."""
    unknown: int = 0
    """Repeats where the figure is unknown."""

    @property
    def half_width(self) -> float | None:
        return None if self.low is None or self.high is None else (self.high - self.low) / 2


def _known(values: Iterable[float | None]) -> tuple[list[float], int]:
    given = list(values)
    known = [float(value) for value in given if value is not None]
    return known, len(given) - len(known)


def interval(values: Iterable[float | None]) -> Interval:
    """The mean of the known *values* and its 95 % Student t interval (none from fewer than two values)."""
    known, unknown = _known(values)
    if not known:
        return Interval(None, None, None, 0, unknown)
    n = len(known)
    mean = math.fsum(known) / n
    if n < 2:
        return Interval(mean, None, None, n, unknown)
    half = float(scipy_stats.t.ppf(1 - ALPHA / 2, n - 1)) * _sd(known, mean) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, unknown)


def _sd(values: list[float], mean: float) -> float:
    """The sample standard deviation (n - 1)."""
    return math.sqrt(math.fsum((value - mean) ** 2 for value in values) / (len(values) - 1))


@dataclass(frozen=True, slots=True)
class Difference:
    """``b - a`` of two configurations' means, its 95 % interval, Welch's two-sided p and the verdict at 5 %."""

    delta: float | None
    low: float | None
    high: float | None
    p: float | None
    """None when the test cannot be made (fewer than two values on a side)."""
    significant: bool | None
    """None when it cannot be told."""


UNKNOWN_DIFFERENCE: Final = Difference(None, None, None, None, None)


def difference(a: Iterable[float | None], b: Iterable[float | None]) -> Difference:
    """Whether *b*'s mean differs from *a*'s (Welch's t-test; exact when both sides are constant)."""
    first, _ = _known(a)
    second, _ = _known(b)
    if len(first) < 2 or len(second) < 2:
        return UNKNOWN_DIFFERENCE
    mean_a, mean_b = math.fsum(first) / len(first), math.fsum(second) / len(second)
    delta = mean_b - mean_a
    var_a, var_b = _sd(first, mean_a) ** 2 / len(first), _sd(second, mean_b) ** 2 / len(second)
    spread = var_a + var_b
    if spread == 0:
        return Difference(delta, delta, delta, 0.0 if delta else 1.0, delta != 0)
    dof = spread**2 / (var_a**2 / (len(first) - 1) + var_b**2 / (len(second) - 1))
    half = float(scipy_stats.t.ppf(1 - ALPHA / 2, dof)) * math.sqrt(spread)
    p = float(2 * scipy_stats.t.sf(abs(delta) / math.sqrt(spread), dof))
    return Difference(delta, delta - half, delta + half, p, p < ALPHA)
