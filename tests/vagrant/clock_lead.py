"""Run on a lab VM with the lab's Python: this node's wall clock's lead over the lab Redis's clock (its TIME), in
seconds, from the fastest of five round trips: JSON {"lead_s": ..., "rtt_s": ...}."""

import json
import time

from chaoslab.node.fault_redis import client

conn = client()
best = None
for _ in range(5):
    sent = time.time()
    seconds, micros = conn.time()
    back = time.time()
    if best is None or back - sent < best[0]:
        best = (back - sent, (sent + back) / 2 - (seconds + micros / 1e6))
print(json.dumps({"lead_s": best[1], "rtt_s": best[0]}))
