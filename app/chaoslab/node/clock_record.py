"""Measure this node's clock against the lab's Redis (the broker's node: the broker, or the result backend on a
RabbitMQ lab) and append a ``clock`` record to the node's event ledger."""

from __future__ import annotations

import argparse
import sys

from chaoslab.clock import measure
from chaoslab.ledger import LedgerWriter
from chaoslab.node import config


def record_clock(events: str) -> dict[str, object]:
    """Measure this node's clock against the broker's and append the ``clock`` record to the event ledger."""
    import redis

    lab = config.load()
    client = redis.Redis.from_url(lab.result_backend, socket_timeout=5, socket_connect_timeout=5)  # always Redis
    found = measure(client)
    record = {"type": "clock", "node": lab.node, "t": found.t, "offset": found.offset,
              "uncertainty": found.uncertainty}
    with LedgerWriter(events, "always") as ledger:
        ledger.write(record)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaoslab.node.clock_record", description=__doc__.splitlines()[0])
    parser.add_argument("--events", required=True, help="the node's event ledger")
    args = parser.parse_args(argv)
    print(record_clock(args.events))
    return 0


if __name__ == "__main__":
    sys.exit(main())
