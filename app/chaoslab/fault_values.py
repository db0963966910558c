"""The kinds of value a fault parameter takes: how each is parsed, written back, typed and described.

A :class:`Value` parses what a user gives (``"20ms"``) into base units (seconds, bytes, bits per second,
percent), writes a parsed value back in canonical form (characters no template can be built from: what the lab
passes to Ansible and to the node's agent, never the user's own text), and says how Ansible's argument specs,
the API's schema and the docs describe it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chaoslab import triggers
from chaoslab.inputs import text
from chaoslab.units import format_duration, parse_bytes, parse_duration, parse_percent, parse_rate

MAX_DURATION = 3600.0
MAX_DELAY = 60.0
MIN_MEMORY_LIMIT = 16 * 2**20

Parser = Callable[[Any], Any]


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Value:
    """One kind of parameter value."""

    unit: str
    """What the docs call it: duration, percent, size, rate, whole number, one of, ..."""
    parse: Parser
    render: Callable[[Any], Any] = _same
    spec_type: str = "str"
    """The type Ansible's argument specs give it."""
    choices: tuple[str, ...] = ()
    limits: str = ""
    """Its bounds in words, e.g. "above 0, at most 60s"."""
    minimum: int | None = None
    maximum: int | None = None

    def describe(self) -> str:
        """The value in a few words, e.g. "duration, above 0, at most 60s"."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        return ", ".join(part for part in (self.unit, self.limits) if part)


def _empty(value: Any) -> bool:
    return value in ("", None)


def duration(maximum: float = MAX_DURATION, positive: bool = False) -> Value:
    def parse(value: Any) -> float:
        if _empty(value):
            return 0.0
        seconds = parse_duration(value)
        if positive and seconds <= 0:
            raise ValueError(f"'{value}' must be above 0")
        if seconds > maximum:
            raise ValueError(f"'{value}' is above the limit of {maximum:g}s")
        return seconds

    limits = ", ".join(part for part in ("above 0" if positive else "", f"at most {format_duration(maximum)}") if part)
    return Value("duration", parse, lambda seconds: format_duration(seconds) if seconds else "", limits=limits)


def _signed(value: Any, parse: Callable[[str], float], limit: float, unit: str) -> float:
    """A value with an optional sign (+30s, -5%), within +-*limit*."""
    given = str(value).strip()
    sign = -1.0 if given.startswith("-") else 1.0
    amount = sign * parse(given[1:] if given[:1] in "+-" and given[1:2] != "" else given)
    if abs(amount) > limit:
        raise ValueError(f"'{value}' is beyond +-{limit:g}{unit}")
    return amount


def signed_duration(maximum: float = MAX_DURATION) -> Value:
    """A duration that may be negative (a clock set back)."""
    def parse(value: Any) -> float:
        return 0.0 if _empty(value) else _signed(value, parse_duration, maximum, "s")

    def render(seconds: float) -> str:
        return ("-" if seconds < 0 else "") + format_duration(abs(seconds)) if seconds else ""

    return Value("signed duration", parse, render, limits=f"within +-{format_duration(maximum)}")


def signed_percent(limit: float) -> Value:
    """A percentage that may be negative (a clock that runs slow)."""
    def parse(value: Any) -> float:
        return 0.0 if _empty(value) else _signed(value, parse_percent, limit, "%")

    return Value("signed percent", parse, lambda share: f"{share:g}%", limits=f"within +-{limit:g}%")


def percent() -> Value:
    return Value("percent", lambda value: 0.0 if _empty(value) else parse_percent(value),
                 lambda share: f"{share:g}%", limits="0-100")


def choice(*choices: str) -> Value:
    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"'{value}' is not one of {', '.join(choices)}")
        return str(value)

    return Value("one of", parse, choices=choices)


def whole(low: int, high: int) -> Value:
    def parse(value: Any) -> int:
        digits = str(value)
        if isinstance(value, bool) or not (digits.isascii() and digits.lstrip("-").isdigit()):
            raise ValueError(f"'{value}' is not a whole number")
        number = int(digits)
        if not low <= number <= high:
            raise ValueError(f"{number} is not within {low}-{high}")
        return number

    return Value("whole number", parse, spec_type="int", limits=f"{low}-{high}", minimum=low, maximum=high)


def _size_or_share(value: Any) -> str:
    given = str(value).strip()
    if given.endswith("%"):
        if parse_percent(given) <= 0:
            raise ValueError(f"'{value}' must be above 0%")
    elif parse_bytes(given) <= 0:
        raise ValueError(f"'{value}' must be above 0")
    return given


def size_or_share() -> Value:
    return Value("size or share of the node's memory", _size_or_share,
                 lambda given: f"{parse_percent(given):g}%" if given.endswith("%") else f"{parse_bytes(given)}B",
                 limits="above 0")


def size(minimum: int = 0, optional: bool = False) -> Value:
    def parse(value: Any) -> int:
        if optional and _empty(value):
            return 0
        found = parse_bytes(value)
        if found < minimum:
            raise ValueError(f"'{value}' is below {minimum // 2**20}MiB")
        return found

    return Value("size", parse, lambda found: f"{found}B" if found else "",
                 limits=f"at least {minimum // 2**20}MiB" if minimum else "")


def rate() -> Value:
    return Value("rate", parse_rate, lambda bits: f"{bits}bit")


def _peers(value: Any) -> list[str]:
    """Peer addresses, as the role resolves them from the inventory pattern (a list or comma-separated)."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    peers = [str(item).strip() for item in items if str(item).strip()]
    if not peers:
        raise ValueError("matches no node other than the target")
    for peer in peers:
        try:
            ipaddress.IPv4Address(peer)
        except ValueError:
            raise ValueError(f"'{peer}' is not an IPv4 address") from None
    return peers


def addresses() -> Value:
    """The peers' lab addresses, filled in on the node from the inventory pattern a user gave."""
    return Value("addresses", _peers, lambda found: ",".join(found) if isinstance(found, list) else found)


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string")
    return text(value, "value", 63)


def name() -> Value:
    return Value("name", _name)


def trigger() -> Value:
    """A condition on the task state that brings the fault into force (:mod:`chaoslab.triggers`); "" for none."""
    return Value("condition", lambda value: None if _empty(value) else triggers.parse(value),
                 lambda found: str(found) if found is not None else "",
                 limits="running>=N, reserved>=N, started=KIND or unacked>=N")
