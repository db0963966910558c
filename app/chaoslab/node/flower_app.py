"""Flower, with its /metrics behind the same basic auth as the rest of it.

Flower 2.2 serves ``/metrics`` to anyone even when ``FLOWER_BASIC_AUTH`` is set; here the handler asks
for the user like every other page does (an unauthenticated scrape gets 401; Prometheus sends the
credentials from a file). Arguments are Flower's own:

    python -m chaoslab.node.flower_app --address=198.18.0.20 --port=5555
"""

from __future__ import annotations

import sys

from flower.views import monitor
from tornado import web


def protect_metrics() -> None:
    monitor.Metrics.get = web.authenticated(monitor.Metrics.get)  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    from celery.bin.celery import main as celery_main

    protect_metrics()
    sys.argv = ["celery", "-A", "chaoslab.node.celery_app", "flower", *(sys.argv[1:] if argv is None else argv)]
    return int(celery_main() or 0)


if __name__ == "__main__":
    sys.exit(main())
