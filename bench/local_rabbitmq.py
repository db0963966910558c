"""A private rabbitmq-server on loopback for tests and benchmarks (a real broker; nothing else shares it).

It runs from a temporary directory with its own epmd on a free port, so it meets neither a lab's RabbitMQ nor the
host's; both processes are stopped and the directory removed afterwards.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from local_redis import free_port

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"


@dataclass
class LocalRabbitMQ:
    port: int
    management_port: int
    user: str
    password: str
    vhost: str
    env: dict[str, str]
    workdir: Path
    server: subprocess.Popen | None = None

    def url(self) -> str:
        return f"amqp://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.vhost}"

    def ctl(self, *args: str) -> str:
        """rabbitmqctl against this broker; its output."""
        return subprocess.run([CTL, "-q", *args], env=self.env, capture_output=True, text=True, check=True,
                              timeout=60).stdout

    def start(self) -> None:
        self.server = subprocess.Popen([SERVER], env=self.env, cwd=self.workdir, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, start_new_session=True)
        _wait_ready(self)

    def stop(self) -> None:
        """Stop the broker's process gracefully (SIGTERM), SIGKILL after a minute."""
        if self.server is None:
            return
        self.server.terminate()
        try:
            self.server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.server.pid, 9)
            self.server.wait(10)
        self.server = None

    def restart(self) -> None:
        """A new broker process on the same data (durable queues and persistent messages survive)."""
        self.stop()
        self.start()


def available() -> bool:
    return os.path.exists(SERVER) and shutil.which("epmd") is not None


@contextmanager
def local_rabbitmq(conf: dict[str, int] | None = None, erl_args: str = "") -> Iterator[LocalRabbitMQ]:
    """The broker, with *conf* as more rabbitmq.conf lines (key -> value) and *erl_args* as more server arguments
    (e.g. ``-rabbit channel_tick_interval 200``)."""
    workdir = Path(tempfile.mkdtemp(prefix="chaoslab-rabbitmq-"))
    port, management, epmd_port, dist = free_port(), free_port(), free_port(), free_port()
    password = secrets.token_hex(16)
    (workdir / "rabbitmq.conf").write_text(
        f"listeners.tcp.1 = 127.0.0.1:{port}\nmanagement.tcp.ip = 127.0.0.1\nmanagement.tcp.port = {management}\n"
        f"default_user = lab\ndefault_pass = {password}\ndefault_vhost = lab\n"
        "default_user_tags.administrator = true\ncollect_statistics_interval = 1000\n"
        "log.console = false\nlog.file = false\n" + "".join(f"{key} = {value}\n" for key, value in (conf or {}).items())
    )
    (workdir / "plugins").write_text("[rabbitmq_management].\n")
    (workdir / ".erlang.cookie").write_text(secrets.token_hex(16))
    (workdir / ".erlang.cookie").chmod(0o400)
    env = {**os.environ, "HOME": str(workdir), "ERL_EPMD_PORT": str(epmd_port),
           "RABBITMQ_NODENAME": f"bench{port}@localhost", "RABBITMQ_CONFIG_FILE": str(workdir / "rabbitmq.conf"),
           "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "plugins"), "RABBITMQ_MNESIA_BASE": str(workdir / "db"),
           "RABBITMQ_LOG_BASE": str(workdir / "log"), "RABBITMQ_DIST_PORT": str(dist),
           "RABBITMQ_PID_FILE": str(workdir / "pid"), "RABBITMQ_CONF_ENV_FILE": str(workdir / "none"),
           "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
               f"-start_epmd false -kernel inet_dist_use_interface {{127,0,0,1}} {erl_args}".strip(),
           "RABBITMQ_CTL_ERL_ARGS": "-start_epmd false"}
    epmd = subprocess.Popen(["epmd", "-port", str(epmd_port), "-address", "127.0.0.1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    broker = LocalRabbitMQ(port, management, "lab", password, "lab", env, workdir)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()
        epmd.terminate()
        epmd.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_ready(broker: LocalRabbitMQ, timeout: float = 90.0) -> None:
    """Until the management API answers with the broker's user."""
    deadline = time.monotonic() + timeout
    manager = urllib.request.HTTPPasswordMgrWithDefaultRealm()
    manager.add_password(None, f"http://127.0.0.1:{broker.management_port}/", broker.user, broker.password)
    opener = urllib.request.build_opener(urllib.request.HTTPBasicAuthHandler(manager))
    while True:
        try:
            with opener.open(f"http://127.0.0.1:{broker.management_port}/api/whoami", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise RuntimeError("the private rabbitmq-server did not start") from None
            time.sleep(0.3)
