"""Checking a fault's parameters against its declaration (:mod:`chaoslab.fault_kinds`), in one place.

``check("network-delay", {"delay": "20ms", "duration": "30s"})`` returns the values in base units
(seconds, bytes, bits per second, percent) with defaults filled in, or raises ``ValueError`` with a
one-line message naming the fault and the parameter. The fault playbooks call it (filter ``fault_errors``)
on the controller before any node changes, the scenario loader calls it when a scenario is read, the API
when a request comes, and the agent on the node calls it again on what it is given.
"""

from __future__ import annotations

from typing import Any

from chaoslab.fault_kinds import CLEAR, KINDS, FaultKind
from chaoslab.fault_values import Value
from chaoslab.inputs import InputError, pattern, plain, resolve

# Given to every fault playbook, about where and how it runs rather than what it does:
# target (an inventory pattern) and report (a directory on the controller for each node's report).
CONTROL_PARAMS = frozenset({"target", "report"})


def kind(fault: str) -> FaultKind:
    """The declaration of a fault (or of clear); ValueError for anything else."""
    if fault == CLEAR.name:
        return CLEAR
    if fault not in KINDS:
        raise ValueError(f"unknown fault '{fault}' (known: {', '.join(KINDS)})")
    return KINDS[fault]


def user_params(fault: str) -> list[str]:
    """What a user may give the fault (-e name=value), besides target."""
    return kind(fault).user_params()


def _values(declared: FaultKind, resolved: bool) -> dict[str, tuple[Value, Any]]:
    """Each parameter's value kind and default, with the node's own (NIC, peer addresses) once resolved."""
    found = {param.name: (param.value, param.default) for param in declared.params}
    if resolved:
        found |= {name: (value, None) for name, value in declared.node_values().items()}
    return found


def canonical(fault: str, values: dict[str, Any]) -> dict[str, Any]:
    """Checked values (those of :func:`check`) written back as parameters the fault takes again."""
    spec = _values(kind(fault), resolved=True)
    return {name: spec[name][0].render(value) if name in spec else value for name, value in values.items()}


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


def check_value(fault: str, name: str, value: Any) -> Any:
    """One parameter as a user gave it, parsed (peers: checked as an inventory pattern); ValueError says why."""
    declared = kind(fault)
    if name == "peers" and declared.peers is not None:
        try:
            pattern(value, "peers")
        except InputError as error:
            raise ValueError(str(error).removeprefix("peers: ")) from None
        return value
    return declared.param(name).value.parse(plain(value, ""))


def check(fault: str, params: dict[str, Any], resolved: bool = True) -> dict[str, Any]:
    """The fault's parameters in base units; ``resolved=False``: as a user gave them, before the role fills in
    the node's NIC and resolves peers (an inventory pattern until then) to addresses."""
    declared = kind(fault)
    spec = _values(declared, resolved)
    given_names = set(spec) | ({"peers"} if declared.peers is not None else set())
    unknown = sorted(set(params) - given_names)
    if unknown:
        allowed = ", ".join(declared.user_params()) or "none"
        raise ValueError(f"{fault}: unknown parameter {unknown[0]} (allowed: {allowed})")
    if not resolved and "peers" in params:  # an inventory pattern until the role resolves it; "" names no node
        try:
            check_value(fault, "peers", params["peers"])
        except ValueError as error:
            raise ValueError(f"{fault}: peers: {error}") from None
    values: dict[str, Any] = {}
    for name, (value, default) in spec.items():
        given = params.get(name, default)
        if given is None or (default is None and given == ""):
            raise ValueError(f"{fault}: {name} is required")
        try:
            values[name] = value.parse(plain(given, ""))
        except ValueError as error:
            raise ValueError(f"{fault}: {name}: {error}") from None
    declared.check(values)
    if values.get("trigger") is not None and not values.get("duration"):
        raise ValueError(f"{fault}: trigger needs a duration, which counts from arming (e.g. trigger=running>=2 "
                         "duration=30s)")
    return values
