"""What a worker node runs (``celery -A chaoslab.node.worker_app worker``): the app under test its config names
(a user's own, see :mod:`chaoslab.node.app_under_test`), or else the lab's own app and task kinds."""

from __future__ import annotations

from celery import Celery

from chaoslab.node import config


def _app() -> Celery:
    lab = config.load()
    if lab.app:
        from chaoslab.node.app_under_test import load

        return load(lab)
    from chaoslab.node.tasks import app

    return app


app = _app()
