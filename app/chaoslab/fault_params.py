"""Each fault's parameters: which there are, their units and limits, in one place.

``check("network-delay", {"delay": "20ms", "duration": "30s"})`` returns the values in base units
(seconds, bytes, bits per second, percent) with defaults filled in, or raises ``ValueError`` with a
one-line message naming the fault and the parameter. The fault role calls it (filter
``fault_check``) on the controller before any node changes, the scenario loader calls it when a
scenario is read, and the agent on the node calls it again on what it is given.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from chaoslab.inputs import InputError, pattern, plain, resolve, text
from chaoslab.units import format_duration, parse_bytes, parse_duration, parse_percent, parse_rate

MAX_DURATION = 3600.0
MAX_DELAY = 60.0
ENGINES = ("auto", "netem", "nfqueue")
DISTRIBUTIONS = ("uniform", "normal", "pareto", "paretonormal")
MIN_MEMORY_LIMIT = 16 * 2**20

Parser = Callable[[Any], Any]


def _duration(maximum: float = MAX_DURATION, positive: bool = False) -> Parser:
    def parse(value: Any) -> float:
        if value in ("", None):
            return 0.0
        seconds = parse_duration(value)
        if positive and seconds <= 0:
            raise ValueError(f"'{value}' must be above 0")
        if seconds > maximum:
            raise ValueError(f"'{value}' is above the limit of {maximum:g}s")
        return seconds
    return parse


def _percent(value: Any) -> float:
    return parse_percent(value) if value not in ("", None) else 0.0


def _choice(*choices: str) -> Parser:
    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"'{value}' is not one of {', '.join(choices)}")
        return str(value)
    return parse


def _int(low: int, high: int) -> Parser:
    def parse(value: Any) -> int:
        digits = str(value)
        if isinstance(value, bool) or not (digits.isascii() and digits.lstrip("-").isdigit()):
            raise ValueError(f"'{value}' is not a whole number")
        number = int(digits)
        if not low <= number <= high:
            raise ValueError(f"{number} is not within {low}-{high}")
        return number
    return parse


def _size_or_share(value: Any) -> str:
    text = str(value).strip()
    if text.endswith("%"):
        if parse_percent(text) <= 0:
            raise ValueError(f"'{value}' must be above 0%")
    elif parse_bytes(text) <= 0:
        raise ValueError(f"'{value}' must be above 0")
    return text


def _limit(value: Any) -> int:
    limit = parse_bytes(value)
    if limit < MIN_MEMORY_LIMIT:
        raise ValueError(f"'{value}' is below 16MiB")
    return limit


def _rate(value: Any) -> int:
    return parse_rate(value)


def _optional_bytes(value: Any) -> int:
    return parse_bytes(value) if value not in ("", None) else 0


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


def _known_fault(value: Any) -> str:
    """A fault's name, for clearing that fault alone ("" for all)."""
    if value in ("", None):
        return ""
    if value not in PARAMS or value == "clear":
        raise ValueError(f"'{value}' is not a fault (known: {', '.join(name for name in PARAMS if name != 'clear')})")
    return str(value)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string")
    return text(value, "value", 63)


NETWORK = {"peers": (_peers, None), "nic": (_text, None), "duration": (_duration(), "")}
# fault -> parameter -> (parser, default); a default of None means required.
PARAMS: dict[str, dict[str, tuple[Parser, Any]]] = {
    "worker-kill": {"mode": (_choice("main", "child", "all"), "main"), "every": (_duration(positive=True), ""),
                    "duration": (_duration(), "")},
    "worker-pause": {"duration": (_duration(), "")},
    "cpu-exhaustion": {"workers": (_int(0, 256), 0), "load": (_int(1, 100), 100), "duration": (_duration(), "")},
    "memory-exhaustion": {"bytes": (_size_or_share, "80%"), "workers": (_int(1, 64), 1),
                          "duration": (_duration(), "")},
    "memory-limit": {"limit": (_limit, None), "duration": (_duration(), "")},
    "network-delay": {"delay": (_duration(MAX_DELAY, positive=True), None), "jitter": (_duration(MAX_DELAY), "0ms"),
                      "distribution": (_choice(*DISTRIBUTIONS), "uniform"), "correlation": (_percent, 0),
                      "engine": (_choice(*ENGINES), "auto"), **NETWORK},
    "network-loss": {"loss": (_percent, 0), "correlation": (_percent, 0), "duplicate": (_percent, 0),
                     "corrupt": (_percent, 0), "reorder": (_percent, 0), "delay": (_duration(MAX_DELAY), "0ms"),
                     "engine": (_choice(*ENGINES), "auto"), **NETWORK},
    "network-bandwidth": {"rate": (_rate, None), "burst": (_optional_bytes, ""),
                          "latency": (_duration(MAX_DELAY, positive=True), "100ms"), **NETWORK},
    "network-partition": {"peers": (_peers, None), "duration": (_duration(), "")},
    "redis-restart": {"mode": (_choice("graceful", "kill"), "graceful"), "down_for": (_duration(), "0s"),
                      "duration": (_duration(), "")},
    "clear": {"only": (lambda value: _known_fault(value), "")},
}
# Filled in by the role on the node, not given by users.
NODE_PARAMS = frozenset({"peers", "nic"})
# Given to every fault playbook, about where and how it runs rather than what it does:
# target (an inventory pattern) and report (a directory on the controller for each node's report).
CONTROL_PARAMS = frozenset({"target", "report"})


# How each parameter is written back once parsed: a canonical value with its unit, made of characters no template
# can be built from (what the lab passes to Ansible and to the node's agent, never the user's own text).
_DURATIONS = frozenset({"every", "duration", "down_for", "delay", "jitter", "latency"})
_PERCENTS = frozenset({"loss", "correlation", "duplicate", "corrupt", "reorder"})


def _render(name: str, value: Any) -> Any:
    if name in _DURATIONS:
        return format_duration(value) if value else ""
    if name in _PERCENTS:
        return f"{value:g}%"
    if name in ("limit", "burst"):
        return f"{value}B" if value else ""
    if name == "rate":
        return f"{value}bit"
    if name == "bytes":
        return f"{parse_percent(value):g}%" if str(value).endswith("%") else f"{parse_bytes(value)}B"
    if name == "peers" and isinstance(value, list):
        return ",".join(value)
    return value


def canonical(fault: str, values: dict[str, Any]) -> dict[str, Any]:
    """Checked values (those of :func:`check`) written back as parameters the fault takes again."""
    return {name: _render(name, value) for name, value in values.items()}


def control_errors(params: dict[str, Any]) -> str:
    """What is wrong with the control parameters a fault playbook takes besides the fault's own (target, report)."""
    try:
        if params.get("target") not in (None, ""):
            pattern(params["target"], "target")
        if params.get("report") not in (None, ""):
            report = params["report"]
            if not isinstance(report, str) or not report.isprintable() or len(report) > 1024:
                raise InputError("report: must be a path of printable characters")
            if not report.startswith("/") or ".." in report.split("/"):
                raise InputError(f"report: {report!r} is not an absolute path without '..'")
    except InputError as error:
        return str(error)
    return ""


def request(fault: str, target: str | None, params: dict[str, Any], groups: dict[str, list[str]],
            report: str = "") -> dict[str, Any]:
    """The extra variables of a fault playbook for a request (API, runner): every value parsed and written back in
    canonical form, target and peers resolved to the inventory's own host names. ValueError names what is wrong."""
    given = dict(params)
    values = check(fault, given, resolved=False)
    extra = canonical(fault, values)
    if target is not None:  # None: the fault's default target; an empty pattern names no node and is refused
        extra["target"] = ",".join(resolve(target, groups, f"{fault}: target"))
    if given.get("peers") not in (None, ""):
        extra["peers"] = ",".join(resolve(given["peers"], groups, f"{fault}: peers"))
    if report:
        extra["report"] = report
    if problem := control_errors(extra):
        raise ValueError(problem)
    return extra


def user_params(fault: str) -> list[str]:
    """What a user may give the fault (-e name=value), besides target."""
    return [name for name in PARAMS[fault] if name not in NODE_PARAMS] + (["peers"] if "peers" in PARAMS[fault] else [])


def check(fault: str, params: dict[str, Any], resolved: bool = True) -> dict[str, Any]:
    """The fault's parameters in base units; ``resolved=False`` skips peers and nic (still an inventory pattern)."""
    if fault not in PARAMS:
        raise ValueError(f"unknown fault '{fault}' (known: {', '.join(PARAMS)})")
    spec = PARAMS[fault]
    unknown = sorted(set(params) - set(spec if resolved else user_params(fault)))
    if unknown:
        allowed = ", ".join(user_params(fault)) or "none"
        raise ValueError(f"{fault}: unknown parameter {unknown[0]} (allowed: {allowed})")
    values: dict[str, Any] = {}
    for name, (parse, default) in spec.items():
        if not resolved and name == "peers":
            if name in params:  # an inventory pattern until the role resolves it to addresses
                try:
                    pattern(params[name], f"{fault}: peers")
                except InputError as error:
                    raise ValueError(str(error)) from None
            continue
        if not resolved and name in NODE_PARAMS:
            continue
        given = params.get(name, default)
        if given is None or (default is None and given == ""):
            raise ValueError(f"{fault}: {name} is required")
        try:
            values[name] = parse(plain(given, ""))
        except ValueError as error:
            raise ValueError(f"{fault}: {name}: {error}") from None
    return _combined(fault, values)


def _combined(fault: str, values: dict[str, Any]) -> dict[str, Any]:
    """Checks across parameters."""
    if fault == "worker-kill" and values["every"] and not values["duration"]:
        raise ValueError("worker-kill: every needs a duration (kill every 5s for 60s: every=5s duration=60s)")
    if fault == "network-loss":
        if not any(values[name] for name in ("loss", "duplicate", "corrupt", "reorder")):
            raise ValueError("network-loss: give at least one of loss, duplicate, corrupt, reorder above 0%")
        if values["reorder"] and not values["delay"]:
            raise ValueError("network-loss: reorder needs a delay (packets not reordered are delayed), e.g. delay=10ms")
    if fault == "network-delay" and values["distribution"] != "uniform" and not values["jitter"]:
        raise ValueError(f"network-delay: distribution {values['distribution']} needs a jitter, e.g. jitter=5ms")
    return values
