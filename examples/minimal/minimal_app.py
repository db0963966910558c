"""A Celery app that knows nothing of the lab: one module, one task.

    celery -A minimal_app worker

The lab runs it as it is (inventory: ``celery_worker_app: {app: minimal_app:app, source: examples/minimal}``).
"""

from celery import Celery

app = Celery("minimal", broker="redis://localhost:6379/0", backend="redis://localhost:6379/1")


@app.task
def add(x: int, y: int) -> int:
    return x + y
