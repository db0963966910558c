"""The shop's tasks.

An order goes ``reserve_stock -> charge_payment -> ship_order`` (a chain); its price is the sum of its lines,
priced side by side (a chord: ``price_line`` over the lines, then ``total_order``); the payment gateway is flaky
(``charge_payment`` retries with exponential backoff); a reminder goes out some time after the order
(``send_reminder``, published with a countdown); the inventory sync is rate limited; invoices over a few pages
take longer than their time limit.
"""

from __future__ import annotations

import time
import zlib
from typing import Any

from shop.celery import app


class GatewayTimeout(ConnectionError):
    """The payment gateway did not answer in time."""


@app.task(name="shop.reserve_stock")
def reserve_stock(order_id: int) -> dict[str, Any]:
    time.sleep(0.2)
    return {"order": order_id, "reserved": True}


@app.task(bind=True, name="shop.charge_payment", autoretry_for=(GatewayTimeout,), retry_backoff=1,
          retry_backoff_max=4, retry_jitter=False, max_retries=5)
def charge_payment(self: Any, order: dict[str, Any]) -> dict[str, Any]:
    # The gateway times out on the first call for about one payment in three (decided by the task's id, so a rerun
    # of the same ids fails the same ones); the retry goes through.
    if self.request.retries == 0 and zlib.crc32(self.request.id.encode()) % 3 == 0:
        raise GatewayTimeout("payment gateway timed out")
    time.sleep(0.2)
    return {**order, "charged": True}


@app.task(name="shop.ship_order")
def ship_order(order: dict[str, Any]) -> str:
    time.sleep(0.2)
    return f"TRACK-{order['order']}"


@app.task(name="shop.price_line")
def price_line(line: dict[str, Any]) -> float:
    time.sleep(0.1)
    return float(line["qty"]) * float(line["price"])


@app.task(name="shop.total_order")
def total_order(prices: list[float], order_id: int) -> dict[str, Any]:
    return {"order": order_id, "total": round(sum(prices), 2)}


@app.task(name="shop.send_reminder")
def send_reminder(order_id: int) -> str:
    return f"reminder sent for order {order_id}"


@app.task(name="shop.sync_inventory", rate_limit="5/s")
def sync_inventory() -> int:
    time.sleep(0.05)
    return 0


@app.task(name="shop.render_invoice", time_limit=2)
def render_invoice(order_id: int, pages: int) -> str:
    time.sleep(0.5 * pages)  # over 3 pages takes longer than the time limit: the worker kills it
    return f"invoice-{order_id}.pdf"
