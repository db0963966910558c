"""The lab configuration a node's processes read: where the broker is, which node this is.

Roles write it as YAML (``CHAOSLAB_CONFIG``, default ``/etc/chaoslab/chaoslab.yml``);
environment variables of the same names in upper case override single keys,
so tests and the load generator can point at any lab.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PATH = "/etc/chaoslab/chaoslab.yml"


@dataclass(frozen=True)
class LabConfig:
    node: str
    broker_url: str
    result_backend: str
    http_target_url: str = ""
    celery: dict[str, Any] = field(default_factory=dict)
    # The settings the worker was given (the role's celery_worker_settings, before its defaults): a runner asks the
    # running workers for them to tell whether a run's settings need applying.
    given: dict[str, Any] = field(default_factory=dict)
    # The worker's task ledger (workers only) and its fsync policy: always, batch or never.
    ledger_path: str = ""
    ledger_fsync: str = "batch"
    # The app under test (``package.module:attribute``, workers only): "" runs the lab's own app.
    app: str = ""


def _read_yaml(path: str) -> dict[str, Any]:
    file = Path(path)
    if not file.exists():
        return {}
    data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of settings")
    return data


def load(path: str | None = None) -> LabConfig:
    """Read the node's config file, then apply environment overrides."""
    data = _read_yaml(path or os.environ.get("CHAOSLAB_CONFIG", DEFAULT_PATH))
    for key in ("node", "broker_url", "result_backend", "http_target_url"):
        value = os.environ.get(f"CHAOSLAB_{key.upper()}")
        if value:
            data[key] = value
    worker_file = os.environ.get("CHAOSLAB_WORKER_CONFIG")
    worker = _read_yaml(worker_file) if worker_file else {}
    celery = dict(data.get("celery") or {})
    celery.update(worker.get("celery") or {})
    broker = data.get("broker_url", "redis://127.0.0.1:6379/0")
    return LabConfig(
        node=data.get("node") or socket.gethostname(),
        broker_url=broker,
        result_backend=data.get("result_backend", broker),
        http_target_url=data.get("http_target_url", ""),
        celery=celery,
        given=dict(worker.get("given") or {}),
        ledger_path=worker.get("ledger_path", ""),
        ledger_fsync=worker.get("ledger_fsync", "batch"),
        app=worker.get("app") or "",
    )
