"""Durations and sizes with units: values, one-line errors saying what is allowed, round trips."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaoslab.units import format_duration, parse_bytes, parse_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("250ms", 0.25), ("20s", 20.0), ("2m", 120.0), ("1h", 3600.0), ("1.5s", 1.5), (".5s", 0.5),
    ("0s", 0.0), (" 3 s ", 3.0), ("1.001h", 3603.6), ("0.1ms", 0.0001),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "message"), [
    ("20", "'20' has no unit (use ms, s, m or h)"),
    (20, "'20' has no unit (use ms, s, m or h)"),
    (1.5, "'1.5' has no unit (use ms, s, m or h)"),
    ("-5s", "'-5s' is negative (a duration must be >= 0)"),
    ("5d", "'5d' has an unknown unit 'd' (use ms, s, m or h)"),
    ("5 sec", "'5 sec' has an unknown unit 'sec' (use ms, s, m or h)"),
    ("abc", "'abc' is not a duration (a number with a unit: use ms, s, m or h)"),
    ("", "'' is not a duration (a number with a unit: use ms, s, m or h)"),
    ("1.2.3s", "'1.2.3s' is not a duration (a number with a unit: use ms, s, m or h)"),
    ("s", "'s' is not a duration (a number with a unit: use ms, s, m or h)"),
    (True, "True is not a duration (a number with a unit: use ms, s, m or h)"),
    (None, "None is not a duration (a number with a unit: use ms, s, m or h)"),
    ([1], "[1] is not a duration (a number with a unit: use ms, s, m or h)"),
    (math.inf, "'inf' is not a duration (a finite number with a unit: use ms, s, m or h)"),
])
def test_parse_duration_rejects(text, message):
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert str(info.value) == message


@pytest.mark.parametrize(("value", "seconds"), [(20, 20.0), (1.5, 1.5), ("20", 20.0), ("250ms", 0.25)])
def test_bare_seconds_only_when_allowed(value, seconds):
    assert parse_duration(value, allow_bare_seconds=True) == seconds


@pytest.mark.parametrize("value", [-1, "-0.5", True, "x"])
def test_bare_seconds_still_rejects(value):
    with pytest.raises(ValueError, match=r"ms, s, m or h|>= 0"):
        parse_duration(value, allow_bare_seconds=True)


@pytest.mark.parametrize(("text", "size"), [
    ("256MiB", 256 * 2**20), ("1GiB", 2**30), ("512KiB", 512 * 1024), ("1.5KiB", 1536), ("2TiB", 2 * 2**40),
    ("100MB", 100_000_000), ("1kB", 1000), ("0.1kB", 100), ("1GB", 10**9), ("10B", 10), ("0B", 0),
])
def test_parse_bytes(text, size):
    assert parse_bytes(text) == size


UNITS = "use B, kB, MB, GB, TB, KiB, MiB, GiB or TiB"


@pytest.mark.parametrize(("text", "message"), [
    ("1G", f"'1G' has an unknown unit 'G' ({UNITS})"),
    ("100mb", f"'100mb' has an unknown unit 'mb' ({UNITS})"),
    ("100", f"'100' has no unit ({UNITS})"),
    ("-1MiB", "'-1MiB' is negative (a size must be >= 0)"),
    ("1.5B", "'1.5B' is not a whole number of bytes"),
    ("lots", f"'lots' is not a size (a number with a unit: {UNITS})"),
])
def test_parse_bytes_rejects(text, message):
    with pytest.raises(ValueError) as info:
        parse_bytes(text)
    assert str(info.value) == message


def test_bare_bytes_only_when_allowed():
    assert parse_bytes(4096, allow_bare_bytes=True) == 4096
    with pytest.raises(ValueError, match="no unit"):
        parse_bytes(4096)


@pytest.mark.parametrize(("seconds", "text"), [
    (0.25, "250ms"), (20, "20s"), (120, "2m"), (3600, "1h"), (7200.0, "2h"), (90, "90s"), (5400, "90m"),
    (1.5, "1.5s"), (0, "0s"), (0.0015, "1.5ms"), (-2, "-2s"), (math.inf, "inf"),
])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


UNIT_NAMES = st.sampled_from(["ms", "s", "m", "h"])


@given(whole=st.integers(0, 100_000), decimals=st.integers(0, 999), places=st.integers(0, 3), unit=UNIT_NAMES)
def test_formatted_duration_reads_back_exactly(whole, decimals, places, unit):
    text = f"{whole}.{decimals:03d}"[: len(str(whole)) + 1 + places].rstrip(".") + unit
    seconds = parse_duration(text)
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.floats(0, 1e7, allow_nan=False))
def test_format_duration_is_accurate_to_the_microsecond(seconds):
    text = format_duration(seconds)
    assert len(text) <= 17
    assert parse_duration(text) == pytest.approx(seconds, abs=1e-6, rel=1e-12)
