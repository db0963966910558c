"""Where the project is: the directory holding ``ansible.cfg`` and ``playbooks/``, whose playbooks, roles and
faults a run uses."""

from __future__ import annotations

import os
from pathlib import Path


def find_project(start: Path | None = None) -> Path | None:
    """The nearest project at or above ``start``; else CHAOSLAB_HOME; else the nearest project above the
    working directory or above this package. None when there is none."""
    if start is not None and (found := _above(start.resolve())):
        return found
    if home := os.environ.get("CHAOSLAB_HOME"):
        return Path(home)
    for where in (Path.cwd(), Path(__file__).resolve()):
        if found := _above(where):
            return found
    return None


def _above(where: Path) -> Path | None:
    for candidate in (where, *where.parents):
        if (candidate / "ansible.cfg").is_file() and (candidate / "playbooks").is_dir():
            return candidate
    return None
