"""The lab's one lock: taken by one operation at a time, passed to its own children, released at exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from chaoslab.experiment.lab_lock import FD_ENV, TOKEN_ENV, LabBusy, LabLock

HOLD = """
import sys, time
from chaoslab.experiment.lab_lock import LabLock
lock = LabLock(sys.argv[1])
lock.acquire(sys.argv[2])
print("held", flush=True)
time.sleep(60)
"""


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lab's lock for a run."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), "chaoslab run demo.yml"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def test_another_operation_is_refused_with_the_holder_named(tmp_path, holder, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(LabBusy, match=rf"chaoslab run demo.yml \(pid {holder.pid}, since"):
        LabLock(tmp_path).acquire("faults/worker-kill.yml")


def test_a_child_of_the_holder_goes_on_with_the_token(tmp_path, holder, monkeypatch):
    token = json.loads((tmp_path / ".lab" / "lab.lock").read_text())["token"]
    monkeypatch.setenv(TOKEN_ENV, token)
    assert LabLock(tmp_path).acquire("faults/worker-kill.yml") is False
    monkeypatch.setenv(TOKEN_ENV, "0" * 32)
    with pytest.raises(LabBusy):
        LabLock(tmp_path).acquire("faults/worker-kill.yml")


def test_the_lock_is_free_once_its_holder_is_gone(tmp_path, holder, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    holder.kill()
    holder.wait()
    lock = LabLock(tmp_path)
    assert lock.acquire("faults/clear.yml") is True
    assert lock.holder()["what"] == "faults/clear.yml" and lock.holder()["pid"] == os.getpid()
    assert oct((tmp_path / ".lab" / "lab.lock").stat().st_mode & 0o777) == "0o600"
    lock.release()


ADOPT = """
import sys, time
from chaoslab.experiment.lab_lock import LabLock
lock = LabLock(sys.argv[1])
print(lock.acquire("chaoslab run adopted"), flush=True)
time.sleep(60)
"""


def test_a_lock_handed_to_a_child_stays_held_after_the_parent_lets_go(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    parent = LabLock(tmp_path)
    parent.acquire("api: start run")
    fd, env = parent.hand_over()
    child = subprocess.Popen([sys.executable, "-c", ADOPT, str(tmp_path)], pass_fds=(fd,),
                             env={**os.environ, **env}, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "True"
        parent.let_go()
        with pytest.raises(LabBusy, match=rf"chaoslab run adopted \(pid {child.pid}"):
            LabLock(tmp_path).acquire("faults/worker-kill.yml")
    finally:
        child.kill()
        child.wait()
    assert LabLock(tmp_path).acquire("after") is True


def test_a_descriptor_that_is_not_the_lab_lock_is_not_adopted(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    other = os.open(tmp_path / "other", os.O_RDWR | os.O_CREAT)
    monkeypatch.setenv(FD_ENV, str(other))
    lock = LabLock(tmp_path)
    assert lock.acquire("run") is True
    assert lock._fd != other
    lock.release()
    os.close(other)
