"""On a worker node, before a worker runs the app under test: does it import, and which tasks does it register?

    python -m chaoslab.node.app_check proj.celery:app

prints ``{"app": ..., "tasks": [...], "celery": ..., "kombu": ...}`` (the app's own tasks, Celery's built-in ones
left out) and exits 0, or prints one line saying why the app cannot run and exits 1. Run it with the app's code on
``PYTHONPATH`` and the app's venv, as the worker will be.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

import celery
import kombu

from chaoslab import celery_settings
from chaoslab.app_spec import check_app_path


def _one_line(err: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"


def load_app(path: str) -> celery.Celery:
    """The Celery app *path* names (``package.module:attribute``, or a module holding ``app`` or ``celery``), imported
    as a worker would; ValueError with one line when it cannot be."""
    check_app_path(path)
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # the user's code may raise anything on import
        raise ValueError(f"app {path} does not import: {_one_line(err)}") from None
    names = [attribute] if attribute else ["app", "celery"]
    found = next((getattr(module, name) for name in names if hasattr(module, name)), None)
    if found is None:
        raise ValueError(f"app {path}: module {module_name} has no {' or '.join(names)}")
    if not isinstance(found, celery.Celery):
        raise ValueError(f"app {path} is a {type(found).__name__}, not a Celery app")
    return found


def registered(path: str) -> dict[str, Any]:
    """What the app at *path* registers (ValueError with one line when it cannot be loaded)."""
    app = load_app(path)
    try:
        app.loader.import_default_modules()  # the app's imports/include and autodiscovered modules, as a worker does
    except Exception as err:
        raise ValueError(f"app {path}: its task modules do not import: {_one_line(err)}") from None
    renamed = sorted(set(app.conf.broker_transport_options or {}) & celery_settings.TRANSPORT_KEYS)
    if renamed:
        raise ValueError(f"app {path}: broker_transport_options.{renamed[0]}: {celery_settings.RENAMED_KEYS}")
    tasks = sorted(name for name in app.tasks if not name.startswith("celery."))
    return {"app": path, "tasks": tasks, "celery": celery.__version__, "kombu": kombu.__version__}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m chaoslab.node.app_check package.module:attribute")
        return 2
    try:
        print(json.dumps(registered(args[0]), sort_keys=True))
    except ValueError as err:
        print(err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
