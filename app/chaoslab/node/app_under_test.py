"""The app under test: a user's own Celery app, loaded as its code defines it and pointed at the lab.

A worker node whose config names an app (``app: proj.celery:app``, with the app's code on ``PYTHONPATH``) imports
it unchanged, then sets what the lab owns on top of the app's own configuration (the broker and result backend, the
events and results the lab's monitoring and checker read), the Celery settings the run asks for, and connects the
task ledger to Celery's signals. The user's code is not edited and need not know the lab.
"""

from __future__ import annotations

from celery import Celery

from chaoslab.node import config, worker_ledger
from chaoslab.node.app_check import load_app
from chaoslab.node.celery_conf import LAB_OWNED_CONF, celery_conf


def load(lab: config.LabConfig) -> Celery:
    """The app the node's config names, with the lab's broker, backend, owned settings and ledger on top of its own
    configuration; of the run's settings only those it gives (``given``) apply, the lab's defaults for its own app do
    not, and transport options it gives are merged into the app's own."""
    app = load_app(lab.app)
    given = celery_conf(lab.given)
    conf = {name: value for name, value in given.items() if name in LAB_OWNED_CONF or name in lab.given}
    for name in ("broker_transport_options", "result_backend_transport_options"):
        conf[name] = {**(app.conf.get(name) or {}), **given[name]}
    app.conf.update(broker_url=lab.broker_url, result_backend=lab.result_backend, **conf)
    app.conf.chaoslab = lab
    app.conf.chaoslab_given = lab.given
    worker_ledger.install(app)
    return app
