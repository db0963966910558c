"""The statistics of repeated runs: intervals of the mean and Welch's comparison, against textbook values."""

from __future__ import annotations

import math

import pytest
from scipy import stats as scipy_stats

from chaoslab.analysis.stats import UNKNOWN_DIFFERENCE, difference, interval


def test_the_interval_of_five_repeats_uses_students_t_with_four_degrees_of_freedom():
    values = [10.0, 12.0, 11.0, 13.0, 9.0]  # mean 11, s = sqrt(2.5)
    found = interval(values)
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)  # t(0.975, 4)
    assert (found.mean, found.n, found.unknown) == (11.0, 5, 0)
    assert found.low == pytest.approx(11 - half) and found.high == pytest.approx(11 + half)
    assert found.half_width == pytest.approx(half)


def test_one_value_has_a_mean_and_no_interval_and_unknown_values_are_counted():
    assert interval([4.0, None]) == interval([4.0]).__class__(4.0, None, None, 1, 1)
    assert interval([None, None]).mean is None and interval([]).n == 0
    assert interval([3.0, 3.0, 3.0]).half_width == 0


def test_welch_matches_the_formulas_and_scipys_own_test():
    a = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
    b = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
    found = difference(a, b)
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    var_a = sum((x - mean_a) ** 2 for x in a) / (len(a) - 1) / len(a)
    var_b = sum((x - mean_b) ** 2 for x in b) / (len(b) - 1) / len(b)
    dof = (var_a + var_b) ** 2 / (var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1))
    reference = scipy_stats.ttest_ind(b, a, equal_var=False)
    assert reference.statistic == pytest.approx((mean_b - mean_a) / math.sqrt(var_a + var_b))
    assert float(reference.df) == pytest.approx(dof)
    assert found.delta == pytest.approx(mean_b - mean_a)
    assert found.p == pytest.approx(float(reference.pvalue))
    assert found.p < 0.05 and found.significant is True and found.low > 0
    half = float(scipy_stats.t.ppf(0.975, dof)) * math.sqrt(var_a + var_b)
    assert (found.low, found.high) == (pytest.approx(found.delta - half), pytest.approx(found.delta + half))


def test_overlapping_repeats_do_not_differ_and_constant_sides_differ_exactly_when_their_values_do():
    assert difference([1.0, 2.0, 3.0], [1.5, 2.5, 2.0]).significant is False
    assert difference([0.0, 0.0, 0.0], [0.0, 0.0]).significant is False
    same = difference([0.0, 0.0, 0.0], [2.0, 2.0])
    assert (same.significant, same.p, same.delta) == (True, 0.0, 2.0)
    assert difference([1.0], [1.0, 2.0]) == UNKNOWN_DIFFERENCE
    assert difference([1.0, None, 2.0], [5.0, 6.0, None]).significant is True
