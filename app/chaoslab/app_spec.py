"""The app under test, as an inventory names it: which Celery app, where its code is, what it needs.

``celery_worker_app: {app: proj.celery:app, source: ../proj, requirements: [requests==2.32.3]}``

``app``
    The Celery app as ``celery -A`` takes it: ``package.module:attribute``, or ``package.module`` holding ``app`` or
    ``celery``.
``source``
    Where the app's code is on the controller, absolute or relative to the project's root: a directory (a project
    checkout: it is put on the worker's Python path as it is, no packaging needed), or a built distribution of it
    (a wheel, ``.whl``, or an sdist, ``.tar.gz``), installed into the worker's venv with its dependencies.
``package``
    Instead of a source: a pip requirement naming the app's distribution on the package index (``shop-app==1.2``),
    installed into the worker's venv.
``requirements``
    pip requirements the app needs besides Celery and what the lab's nodes have (names with versions, extras or
    markers; no options, no URLs).

Every value is checked before anything on a node changes; a problem is one line naming the key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

APP_KEYS: Final = ("app", "source", "package", "requirements")
DISTRIBUTIONS: Final = (".whl", ".tar.gz")
"""A source ending so is a built distribution of the app, installed with pip; any other source is a directory."""
APP_PATH: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(:[A-Za-z_][A-Za-z0-9_]*)?")
"""``package.module:attribute`` or ``package.module``, as ``celery -A`` takes it."""
SOURCE: Final = re.compile(r"[A-Za-z0-9_./][A-Za-z0-9_./ +@=,-]{0,255}")
"""A path of printable characters that cannot read as an option."""


@dataclass(frozen=True)
class AppSpec:
    app: str
    source: str = ""
    requirements: tuple[str, ...] = ()
    package: str = ""

    @property
    def kind(self) -> str:
        """Where the code comes from: ``directory``, ``distribution`` (a wheel or an sdist) or ``package``."""
        if self.package:
            return "package"
        return "distribution" if self.source.endswith(DISTRIBUTIONS) else "directory"


def check_app_path(value: Any) -> str:
    """*value* when it names a Celery app as ``celery -A`` takes it; ValueError otherwise."""
    if not isinstance(value, str) or not APP_PATH.fullmatch(value):
        raise ValueError(f"app: name the Celery app as celery -A takes it (package.module:attribute), got {value!r}")
    return value


def parse(value: Any) -> AppSpec | None:
    """The app spec of an inventory (None for ``{}``: the lab's own app); ValueError with one line otherwise."""
    if value in (None, {}):
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"must be a mapping with keys from {', '.join(APP_KEYS)}, got {value!r}")
    unknown = sorted(set(map(str, value)) - set(APP_KEYS))
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown key (allowed: {', '.join(APP_KEYS)})")
    if "app" not in value:
        raise ValueError("app: missing (required)")
    if ("source" in value) == ("package" in value):
        raise ValueError("source: give a source (a directory, a wheel or an sdist) or a package, one of them")
    source = value.get("source", "")
    if "source" in value and (not isinstance(source, str) or not SOURCE.fullmatch(source)):
        raise ValueError(f"source: a directory's or a distribution's path (printable, not starting with '-'), got "
                         f"{source!r}")
    package = _requirement(value["package"], "package") if "package" in value else ""
    requirements = value.get("requirements") or []
    if not isinstance(requirements, list):
        raise ValueError(f"requirements: must be a list of pip requirements, got {requirements!r}")
    return AppSpec(check_app_path(value["app"]), source,
                   tuple(_requirement(item, f"requirements[{index}]") for index, item in enumerate(requirements)),
                   package)


def _requirement(value: Any, key: str) -> str:
    from packaging.requirements import InvalidRequirement, Requirement

    if not isinstance(value, str) or value.strip().startswith("-"):
        raise ValueError(f"{key}: a requirement such as requests==2.32.3 (no pip options), got {value!r}")
    try:
        requirement = Requirement(value)
    except InvalidRequirement as err:
        raise ValueError(f"{key}: {str(err).splitlines()[0]}") from None
    if requirement.url:
        raise ValueError(f"{key}: a requirement by name and version, not by URL, got {value!r}")
    return str(requirement)


def errors(value: Any) -> str:
    """The first thing wrong with an app spec (one line naming the key), or ""."""
    try:
        parse(value)
    except ValueError as err:
        return str(err)
    return ""
