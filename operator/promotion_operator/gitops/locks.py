"""The per-(url, branch) lock: a re-entrant thread lock plus an flock across processes."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from promotion_operator.domain.errors import Reason, RetryableError
from promotion_operator.domain.gitrules import redact


@dataclass
class _LockEntry:
    """One (url, branch): a re-entrant thread lock plus the file locks its holder owns."""

    thread_lock: threading.RLock = field(default_factory=threading.RLock)
    # lock file -> (open fd, nesting depth); only touched while thread_lock is held.
    file_locks: dict[Path, tuple[int, int]] = field(default_factory=dict)


_LOCKS: dict[tuple[str, str], _LockEntry] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_entry(url: str, branch: str) -> _LockEntry:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault((url, branch), _LockEntry())


LOCK_TIMEOUT = 600.0
"""The longest wait for a repository's lock: a holder does at most a few bounded git calls."""


@contextlib.contextmanager
def repository_lock(
    url: str, branch: str, lock_path: Path, *, timeout: float = LOCK_TIMEOUT
) -> Iterator[None]:
    """Hold the lock of one (url, branch): threads in this process and other processes.

    Re-entrant in the holding thread, so a holder may call operations that lock again.
    Waiting longer than `timeout` is a RetryableError: the Promotion tries again later.
    """
    entry = _lock_entry(url, branch)
    deadline = time.monotonic() + timeout
    if not entry.thread_lock.acquire(timeout=timeout):
        raise _busy(url, branch, timeout)
    try:
        fd, depth = entry.file_locks.get(lock_path, (-1, 0))
        if depth == 0:
            lock_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                _flock_until(fd, deadline, url, branch, timeout)
            except BaseException:
                os.close(fd)
                raise
        entry.file_locks[lock_path] = (fd, depth + 1)
        try:
            yield
        finally:
            fd, depth = entry.file_locks[lock_path]
            if depth == 1:
                del entry.file_locks[lock_path]
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            else:
                entry.file_locks[lock_path] = (fd, depth - 1)
    finally:
        entry.thread_lock.release()


def _flock_until(fd: int, deadline: float, url: str, branch: str, timeout: float) -> None:
    """flock with a deadline: another process (a second operator) may hold it."""
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise _busy(url, branch, timeout) from None
            time.sleep(0.05)


def _busy(url: str, branch: str, timeout: float) -> RetryableError:
    return RetryableError(
        Reason.GIT_ERROR,
        f"branch {branch} of {redact(url, ())} stayed busy for {timeout:g} s "
        "(another promotion holds its lock); will retry",
    )
