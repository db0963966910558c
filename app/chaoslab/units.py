"""Durations and sizes with units, as scenario files and fault parameters write them.

``parse_duration("250ms") == 0.25`` and ``parse_bytes("256MiB") == 268435456``. A value
without a unit, a negative value or anything else is a ``ValueError`` whose one-line
message says what is allowed, e.g. ``'20' has no unit (use ms, s, m or h)``.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

DURATION_UNITS: dict[str, Decimal] = {"ms": Decimal("0.001"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600)}
BYTE_UNITS: dict[str, int] = {
    "B": 1,
    "kB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
    "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4,
}
# Rates as tc writes them: bits per second with SI or IEC multiples, or bytes per second ("bps").
RATE_UNITS: dict[str, int] = {
    "bit": 1, "kbit": 1000, "mbit": 1000**2, "gbit": 1000**3,
    "kibit": 1024, "mibit": 1024**2, "gibit": 1024**3,
    "bps": 8, "kbps": 8000, "mbps": 8 * 1000**2, "gbps": 8 * 1000**3,
}
PERCENT_UNITS: dict[str, int] = {"%": 1}
_QUANTITY = re.compile(r"\s*(?P<sign>[-+]?)(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[A-Za-z%]*)\s*", re.ASCII)
"""ASCII only: a digit or space of another script (a look-alike) is no quantity."""


def _shown(text: object) -> str:
    """A value for an error message: non-printable characters escaped, at most 60 characters."""
    flat = "".join(character if character.isprintable() else repr(character)[1:-1] for character in str(text))
    return flat if len(flat) <= 60 else flat[:57] + "..."


def _choices(names: list[str]) -> str:
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " or " + names[-1]


def _quantity(text: object, units: dict[str, Decimal] | dict[str, int], what: str, allow_bare: bool) -> Decimal:
    """The number of base units ``text`` stands for; ``allow_bare`` accepts a number without unit."""
    use = f"use {_choices(list(units))}"
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"{_shown(repr(text))} is not {what} (a number with a unit: {use})")
    if isinstance(text, float) and not math.isfinite(text):
        raise ValueError(f"'{text}' is not {what} (a finite number with a unit: {use})")
    match = _QUANTITY.fullmatch(str(text))
    if match is None:
        raise ValueError(f"'{_shown(text)}' is not {what} (a number with a unit: {use})")
    if match["sign"] == "-" and Decimal(match["number"]) != 0:
        raise ValueError(f"'{text}' is negative ({what} must be >= 0)")
    unit = match["unit"]
    if not unit and not allow_bare:
        raise ValueError(f"'{_shown(text)}' has no unit ({use})")
    if unit and unit not in units:
        raise ValueError(f"'{text}' has an unknown unit '{unit}' ({use})")
    return Decimal(match["number"]) * Decimal(units[unit] if unit else 1)


def parse_duration(text: object, allow_bare_seconds: bool = False) -> float:
    """Seconds in ``text`` ("250ms", "1.5s", "2m", "1h"); bare numbers only with ``allow_bare_seconds``."""
    return float(_quantity(text, DURATION_UNITS, "a duration", allow_bare_seconds))


def parse_bytes(text: object, allow_bare_bytes: bool = False) -> int:
    """Bytes in ``text``: IEC ("512KiB", "256MiB", "1GiB"), SI ("100kB", "100MB") or plain "B"."""
    value = _quantity(text, BYTE_UNITS, "a size", allow_bare_bytes)
    if value != value.to_integral_value():
        raise ValueError(f"'{text}' is not a whole number of bytes")
    return int(value)


def parse_rate(text: object) -> int:
    """Bits per second in a tc rate: "8mbit", "512kbit", "1gbit", "100kbps" (bytes per second); case-insensitive."""
    folded = text.lower() if isinstance(text, str) else text
    value = _quantity(folded, RATE_UNITS, "a rate", False)
    if value < 1:
        raise ValueError(f"'{text}' is below 1bit (a rate must be positive)")
    return int(value)


def parse_percent(text: object) -> float:
    """A percentage, 0-100: "20%", "20" or "0.5%"."""
    value = float(_quantity(text, PERCENT_UNITS, "a percentage", True))
    if value > 100:
        raise ValueError(f"'{text}' is above 100%")
    return value


def _trim(value: float, places: int) -> str:
    return f"{value:.{places}f}".rstrip("0").rstrip(".")


def format_duration(seconds: float) -> str:
    """A short string parse_duration reads back (to the microsecond): 0.25 -> "250ms", 90 -> "90s", 7200 -> "2h"."""
    if not math.isfinite(seconds):
        return str(seconds)
    if seconds < 0:
        return "-" + format_duration(-seconds)
    for unit in ("h", "m"):
        count = seconds / float(DURATION_UNITS[unit])
        if count >= 1 and count.is_integer():
            return f"{int(count)}{unit}"
    if seconds == 0 or seconds >= 1:
        return _trim(seconds, 6) + "s"
    return _trim(seconds * 1000, 3) + "ms"
