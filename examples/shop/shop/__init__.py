"""An order-processing shop on Celery: the example app the lab tests unchanged (see examples/shop/README.md)."""
