"""The shop's Celery app, as a project would configure it for production; it knows nothing of the lab.

    celery -A shop.celery:app worker
"""

from celery import Celery

app = Celery("shop", broker="redis://localhost:6379/0", backend="redis://localhost:6379/1", include=["shop.tasks"])
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=3600,
    # a worker that dies mid-task must not take the order with it... or so the team believes (see the scenarios)
    task_acks_late=False,
    worker_prefetch_multiplier=4,
)
