"""On a worker node, before its worker is given new settings: can this node's Celery run with them?

The controller checks settings against its own Celery; the node checks them again against the Celery it has (a
version under test may know other settings), that it has the Celery and kombu versions asked for, and tries the
pool's implementation, so that a pool whose package the
node lacks (gevent, eventlet) is refused with one line instead of a worker that dies on start.

Usage: ``python -m chaoslab.node.settings_check < settings.json``; prints the problem and exits 1, or exits 0.
"""

from __future__ import annotations

import importlib
import json
import sys
from importlib import metadata
from typing import Any

from celery.concurrency import get_implementation

from chaoslab import celery_settings

# Pools that run on a package of their own (Celery's pool modules import it only when a pool starts).
POOL_PACKAGES = {"gevent": "gevent", "eventlet": "eventlet"}


def problem(settings: Any) -> str:
    """The first reason this node cannot run a worker with *settings* (the lab's defaults with what it was given on
    top: a transport option may be there twice) as one line, or ""."""
    found = celery_settings.errors(settings, once=False)
    if found:
        return found
    for name, package in celery_settings.VERSIONS.items():
        asked = settings.get(name)
        if asked and metadata.version(package) != asked:
            return f"{name}: asked for {package} {asked}, this node's worker has {metadata.version(package)}"
    pool = settings.get("worker_pool")
    if pool:
        try:
            get_implementation(pool)
            if pool in POOL_PACKAGES:
                importlib.import_module(POOL_PACKAGES[pool])
        except ImportError as err:
            return f"worker_pool: {pool} cannot run on this node ({err})"
    return ""


def main() -> int:
    try:
        settings = json.loads(sys.stdin.read())
    except ValueError as err:
        print(f"settings are not JSON: {err}")
        return 1
    found = problem({name: value for name, value in settings.items() if value is not None}
                    if isinstance(settings, dict) else settings)
    if found:
        print(found)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
