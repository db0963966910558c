"""What a user or a request may give the lab, as a closed grammar; anything else is refused in one line.

Ansible templates the extra variables it is given (a string opening with a ``#jinja2:`` header even changes the
template delimiters), so no value a user supplies reaches it as the user wrote it. Every value is parsed here into
a canonical form made of characters no template can be built from, and the lab passes on only that form:

``pattern`` (a fault's ``target`` and ``peers``)
    Names of the inventory's groups and hosts joined by ``:`` or ``,``, each optionally prefixed with ``&``
    (intersection) or ``!`` (exclusion) and followed by a subscript ``[N]`` or ``[N:M]``: Ansible's own pattern
    rules without wildcards or regular expressions. :func:`resolve` turns it into the inventory hosts it names (never
    the implicit ``localhost``, never the controller), and those names are what is passed on.
``name``
    A node, group, fault or scenario name: ASCII letters, digits, ``.``, ``_`` and ``-``, starting with a letter or
    digit, at most 63 characters.

Text is ASCII, printable and at most :data:`MAX_TEXT` characters, and never starts with ``-`` (it would read as an
option). :func:`unsafe` marks every string of an extra-variables mapping so that Ansible never templates it, even
where a canonical value slips through a check by mistake.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

MAX_TEXT: Final = 256
NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", re.ASCII)
_TERM: Final = re.compile(r"(?P<op>[!&]?)(?P<name>[A-Za-z0-9_][A-Za-z0-9._-]{0,62})"
                          r"(?:\[(?P<first>-?[0-9]{1,4})(?::(?P<last>-?[0-9]{1,4}))?\])?", re.ASCII)
_SPLIT: Final = re.compile(r"[,:](?![^\[]*\])")
"""Separators of a pattern's terms: ``,`` and ``:`` outside a subscript."""
_ORDER: Final = {"": 0, "&": 1, "!": 2}


class InputError(ValueError):
    """A value outside the grammar; the message is one line naming what and why."""


def plain(value: Any, what: str, max_length: int = MAX_TEXT) -> Any:
    """*value* unchanged when it is no text, or text of printable ASCII of at most *max_length* characters."""
    prefix = f"{what}: " if what else ""
    if isinstance(value, str):
        if len(value) > max_length:
            raise InputError(f"{prefix}longer than {max_length} characters")
        if not value.isascii() or not value.isprintable():
            raise InputError(f"{prefix}{_shown(value)} holds characters other than printable ASCII")
    return value


def is_json_data(value: Any) -> bool:
    """Whether *value* is plain JSON data (what a task message or a setting carries): no NaN or infinity, no object
    JSON cannot hold, mapping keys that are text."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    if isinstance(value, Mapping):
        return all(isinstance(key, str) and is_json_data(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return all(is_json_data(item) for item in value)
    return True


def text(value: Any, what: str, max_length: int = MAX_TEXT) -> str:
    """*value* as plain text: a str, ASCII, printable, at most *max_length* characters, not an option."""
    if not isinstance(value, str):
        raise InputError(f"{what}: must be text, got {type(value).__name__}")
    if len(value) > max_length:
        raise InputError(f"{what}: longer than {max_length} characters")
    if not value.isascii() or not value.isprintable():
        raise InputError(f"{what}: {_shown(value)} holds characters other than printable ASCII")
    if value.startswith("-"):
        raise InputError(f"{what}: {_shown(value)} starts with '-'")
    return value


def name(value: Any, what: str) -> str:
    """A node, group, fault or scenario name."""
    found = text(value, what, 63)
    if not NAME.fullmatch(found):
        raise InputError(f"{what}: {_shown(found)} is not a name (letters, digits, '.', '_', '-')")
    return found


def _shown(value: str) -> str:
    """*value* for an error message: quoted, escaped, at most 60 characters."""
    return repr(value if len(value) <= 60 else value[:57] + "...")


@dataclass(frozen=True, slots=True)
class Term:
    op: str
    """"" (union), "&" (intersection) or "!" (exclusion)."""
    name: str
    first: int | None = None
    last: int | None = None
    ranged: bool = False


def pattern(value: Any, what: str) -> list[Term]:
    """The terms of an inventory pattern in the grammar above."""
    found = text(value, what)
    terms = []
    for part in _SPLIT.split(found):
        match = _TERM.fullmatch(part)
        if match is None:
            raise InputError(f"{what}: {_shown(found)} is not an inventory pattern (names of groups or hosts joined "
                             "by ':' or ',', each optionally with '&' or '!' before it and [N] or [N:M] after it)")
        first, last = match["first"], match["last"]
        terms.append(Term(match["op"], match["name"], None if first is None else int(first),
                          None if last is None else int(last), last is not None))
    return terms


def _subscript(hosts: Sequence[str], term: Term) -> list[str]:
    """Ansible's subscript: ``[N]`` one host (negative from the end), ``[N:M]`` N to M inclusive."""
    if term.first is None:
        return list(hosts)
    if not term.ranged:
        return [hosts[term.first]] if -len(hosts) <= term.first < len(hosts) else []
    last = len(hosts) - 1 if term.last is None or term.last == -1 else term.last
    return list(hosts[term.first:last + 1])


def resolve(value: Any, groups: Mapping[str, Sequence[str]], what: str = "target") -> list[str]:
    """The inventory hosts a pattern names, in inventory order: unions first, then intersections, then exclusions
    (as Ansible orders them). *groups* maps every group, ``all`` included, to its hosts in order; a name that is no
    group is a host. InputError when it names no host."""
    terms = pattern(value, what)
    known = list(dict.fromkeys(groups.get("all", [])))
    selected: list[str] = []
    for term in sorted(terms, key=lambda t: _ORDER[t.op]):
        members = _subscript(groups.get(term.name, [term.name] if term.name in known else []), term)
        if not term.op:
            selected += [host for host in members if host not in selected]
        elif term.op == "&":
            selected = [host for host in selected if host in members]
        else:
            selected = [host for host in selected if host not in members]
    if not selected:
        raise InputError(f"{what}: {_shown(str(value))} matches no node of the inventory")
    return [host for host in known if host in selected]


def unsafe(value: Any) -> Any:
    """*value* with every string marked for Ansible as data, never a template (JSON extra variables)."""
    if isinstance(value, str):
        return {"__ansible_unsafe": value}
    if isinstance(value, Mapping):
        return {key: unsafe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [unsafe(item) for item in value]
    return value


def groups_of(inventory: Mapping[str, Any]) -> dict[str, list[str]]:
    """Every group of an ``ansible-inventory --list`` document with its hosts in order (children's hosts after its
    own), ``all`` being every host."""
    def hosts(group: str, seen: frozenset[str] = frozenset()) -> list[str]:
        data = inventory.get(group) or {}
        found = list(data.get("hosts") or [])
        for child in data.get("children") or []:
            if child not in seen:
                found += hosts(child, seen | {group})
        return list(dict.fromkeys(found))

    names = [key for key in inventory if key != "_meta"]
    return {group: hosts(group) for group in names}

