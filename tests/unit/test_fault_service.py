"""A service's kill (broker-restart and redis-restart mode=kill): every process of the service is frozen, then
killed, so that none runs a shutdown handler, whatever signal its manager sends meanwhile. Real processes: a
script that runs a child under it, as rabbitmq-server runs its Erlang VM, each trapping SIGTERM to shut down."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from chaoslab.node.fault_service import freeze_tree, kill_all

# A script that starts a child and waits for it, as rabbitmq-server does; each writes its file when it gets SIGTERM.
SERVICE = """
trap 'echo term > "$1/parent"; exit 0' TERM
sh -c 'trap "echo term > $1/child; exit 0" TERM; echo up > $1/up; while :; do sleep 0.05; done' child "$1" &
wait $!
"""


@pytest.fixture
def service(tmp_path: Path):
    proc = subprocess.Popen(["sh", "-c", SERVICE, "service", str(tmp_path)], start_new_session=True)
    deadline = time.monotonic() + 10
    while not (tmp_path / "up").exists():
        assert time.monotonic() < deadline, "the service's child never started"
        time.sleep(0.01)
    yield proc
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(5)


def dead(proc: psutil.Process) -> bool:
    """Gone, or a zombie (killed, its parent not yet reaping it)."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until_dead(proc: psutil.Process, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while not dead(proc) and time.monotonic() < deadline:
        time.sleep(0.01)
    return dead(proc)


def test_freezing_takes_the_main_process_and_every_process_under_it(service):
    frozen = freeze_tree(service.pid)
    try:
        assert frozen[0].pid == service.pid
        assert {proc.pid for proc in frozen} == {service.pid} | {p.pid for p in psutil.Process(service.pid).children(
            recursive=True)}
        assert len(frozen) >= 2  # the script and its child (and the child's sleep, when caught)
        assert all(proc.status() == psutil.STATUS_STOPPED for proc in frozen)
    finally:
        kill_all(frozen)


def test_a_frozen_service_is_killed_before_any_process_acts_on_the_managers_sigterm(service, tmp_path):
    frozen = freeze_tree(service.pid)
    for proc in frozen:  # what supervisor's stop does (stopasgroup): SIGTERM to every process, pending while frozen
        proc.send_signal(signal.SIGTERM)
    kill_all(frozen)
    assert service.wait(5) == -signal.SIGKILL
    assert all(wait_until_dead(proc) for proc in frozen)  # a SIGKILL is delivered when the process next runs
    time.sleep(0.2)
    assert not (tmp_path / "parent").exists() and not (tmp_path / "child").exists()


def test_without_the_freeze_the_same_sigterm_runs_the_services_shutdown(service, tmp_path):
    """The control: what the kill prevents does happen when the processes are not frozen first."""
    children = psutil.Process(service.pid).children(recursive=True)
    for proc in [psutil.Process(service.pid), *children]:
        proc.send_signal(signal.SIGTERM)
    service.wait(5)
    deadline = time.monotonic() + 5
    while not (tmp_path / "child").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (tmp_path / "child").read_text().strip() == "term"


def test_a_process_gone_before_the_kill_is_skipped(service):
    frozen = freeze_tree(service.pid)
    child = frozen[1]
    child.send_signal(signal.SIGKILL)
    assert wait_until_dead(child)
    kill_all(frozen)  # no error for the one already gone
    assert service.wait(5) == -signal.SIGKILL
