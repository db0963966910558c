"""The HTTP service that request tasks call: latency and errors on demand.

``GET /?latency_ms=50&error_rate=0.1`` waits 50 ms, then answers 500 with
probability 0.1, else 200. Defaults for both come from the command line.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    server: TargetServer

    def do_GET(self) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        try:
            latency_ms = float(query.get("latency_ms", [self.server.latency_ms])[0])
            error_rate = float(query.get("error_rate", [self.server.error_rate])[0])
        except ValueError:
            self._answer(400, {"error": "latency_ms and error_rate must be numbers"})
            return
        time.sleep(max(latency_ms, self.server.latency_ms) / 1000)
        failed = random.random() < max(error_rate, self.server.error_rate)
        self._answer(500 if failed else 200, {"node": self.server.node, "failed": failed})

    def _answer(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Requests are counted by the callers' ledgers; no access log."""


class TargetServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], node: str, latency_ms: float, error_rate: float) -> None:
        super().__init__(address, Handler)
        self.node = node
        self.latency_ms = latency_ms
        self.error_rate = error_rate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bind", required=True, help="address to listen on")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--node", default=socket.gethostname())
    args = parser.parse_args(argv)
    server = TargetServer((args.bind, args.port), args.node, args.latency_ms, args.error_rate)
    server.serve_forever()


if __name__ == "__main__":
    main()
