"""One lock per lab: a run, a fault and clear never overlap.

The lock is ``flock`` on ``.lab/lab.lock`` in the project directory, held by the process that runs the operation
(``chaoslab run``/``study``, a fault playbook, the API while it starts a fault). The file says who holds it (pid,
what, since when, a token). The holder hands the token to the processes it starts (``CHAOSLAB_LOCK_TOKEN`` in their
environment): a playbook the runner starts finds the lock taken by its own run and goes on; anyone else is refused
with a one-line message naming the holder. The kernel releases the lock when the holder exits, however it exits.

A process may also hand the lock itself to a process it starts (the API starting a run: the run is registered
before its process exists): it passes the locked file descriptor and ``CHAOSLAB_LOCK_FD``, and the child adopts it.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any, Final

LOCK_FILE: Final = Path(".lab") / "lab.lock"
TOKEN_ENV: Final = "CHAOSLAB_LOCK_TOKEN"
FD_ENV: Final = "CHAOSLAB_LOCK_FD"


class LabBusy(RuntimeError):
    """The lab is held by another operation; the message names it."""


def _describe(holder: dict[str, Any]) -> str:
    since = time.strftime("%H:%M:%S", time.localtime(holder.get("since") or 0))
    return f"{holder.get('what') or 'an operation'} (pid {holder.get('pid', '?')}, since {since})"


class LabLock:
    """The lab's lock in the project directory *root*."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.path = Path(root) / LOCK_FILE
        self._fd: int | None = None
        self.token = ""

    def holder(self) -> dict[str, Any]:
        """Who holds (or last held) the lock, as its file says."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def acquire(self, what: str) -> bool:
        """Take the lock for *what*; False when this process's own parent operation holds it (its token is in the
        environment), so nothing is to be taken. LabBusy when anyone else holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._adopt(what):
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self.holder()
            inherited = os.environ.get(TOKEN_ENV)
            if inherited and secrets.compare_digest(inherited, str(holder.get("token", ""))):
                self.token = inherited
                return False
            raise LabBusy(f"the lab is busy: {_describe(holder)} holds it; wait for it to end (or stop it) and "
                          "try again") from None
        self._fd = fd
        self._record(what)
        return True

    def _record(self, what: str) -> None:
        assert self._fd is not None
        self.token = secrets.token_hex(16)
        record = json.dumps({"pid": os.getpid(), "what": what, "since": time.time(), "token": self.token})
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, record.encode(), 0)

    def _adopt(self, what: str) -> bool:
        """Take over the lock a parent handed down (its descriptor in FD_ENV), if it is this lab's lock file."""
        given = os.environ.pop(FD_ENV, "")
        if not given.isdigit():
            return False
        fd = int(given)
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(self.path))
        except OSError:
            return False
        if not same:
            return False
        os.set_inheritable(fd, False)
        self._fd = fd
        self._record(what)
        return True

    def hand_over(self) -> tuple[int, dict[str, str]]:
        """The descriptor and environment with which a child process adopts the lock (see :meth:`let_go`)."""
        if self._fd is None:
            raise RuntimeError("hand_over: the lock is not held")
        return self._fd, {FD_ENV: str(self._fd)}

    def let_go(self) -> None:
        """Close this process's descriptor once a child has adopted the lock: the child still holds it."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def env(self) -> dict[str, str]:
        """The environment that lets this operation's own child processes through."""
        return {TOKEN_ENV: self.token} if self.token else {}

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> LabLock:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()
