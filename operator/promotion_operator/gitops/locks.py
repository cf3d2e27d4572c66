"""The per-(url, branch) lock: a re-entrant thread lock plus an flock across processes."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


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


@contextlib.contextmanager
def repository_lock(url: str, branch: str, lock_path: Path) -> Iterator[None]:
    """Hold the lock of one (url, branch): threads in this process and other processes.

    Re-entrant in the holding thread, so a holder may call operations that lock again.
    """
    entry = _lock_entry(url, branch)
    with entry.thread_lock:
        fd, depth = entry.file_locks.get(lock_path, (-1, 0))
        if depth == 0:
            lock_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
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
