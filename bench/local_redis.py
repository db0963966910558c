"""A private redis-server on loopback for benchmarks (a real server; nothing else shares it)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis


@dataclass(frozen=True)
class LocalRedis:
    port: int
    password: str

    def url(self, db: int = 0) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, password=self.password)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def local_redis() -> Iterator[LocalRedis]:
    server = LocalRedis(free_port(), secrets.token_hex(16))
    workdir = tempfile.mkdtemp(prefix="chaoslab-bench-redis-")
    proc = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(server.port), "--requirepass", server.password,
         "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                server.client().ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield server
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def lab_env(server: LocalRedis, **extra: str) -> dict[str, str]:
    """Environment pointing the lab's Celery app at the private server."""
    env = dict(os.environ, CHAOSLAB_CONFIG="/nonexistent", CHAOSLAB_BROKER_URL=server.url(0),
               CHAOSLAB_RESULT_BACKEND=server.url(1), CHAOSLAB_NODE="bench")
    env.update(extra)
    return env
