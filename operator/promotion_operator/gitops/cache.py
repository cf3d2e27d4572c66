"""The clone cache's housekeeping: evict clones unused for a while or over a size budget.

Each clone is `<cache>/<key>/` beside `<key>.lock` (the promotion lock, whose mtime is the
clone's last use) and `<key>.use` (held shared by the lockless status refresh). A clone
is removed only while this process holds both exclusively, so neither a promotion nor a
refresh ever has its clone taken away; a busy clone is skipped until the next sweep. A
removed clone is simply cloned again on its next use (the cache is disposable).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_CLONE = re.compile(r"[0-9a-f]{24}")
_LEFTOVER = re.compile(r"[0-9a-f]{24}\.(partial|evicted)-.+")


def use_lock_path(lock_path: Path) -> Path:
    """The refresh's shared lock beside a clone's promotion lock."""
    return lock_path.with_suffix(".use")


def touch(path: Path) -> None:
    """Record a use of a clone (its lock file's mtime); never fails a git operation."""
    with contextlib.suppress(OSError):
        os.utime(path)


@contextlib.contextmanager
def shared_use(path: Path) -> Iterator[None]:
    """Hold a clone in use without excluding other users (only eviction waits for it)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@dataclass(frozen=True)
class Clone:
    """One cached clone: its folder, bytes on disk, and when it was last used."""

    path: Path
    size: int
    last_used: float


@dataclass(frozen=True)
class Sweep:
    """What one sweep found and did."""

    evicted: list[Path]
    busy: list[Path]
    kept_bytes: int


def disk_usage(path: Path) -> int:
    """Bytes the files under `path` take (symlinks not followed)."""
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
    return total


def clones(cache_dir: Path) -> list[Clone]:
    """The clones in the cache, least recently used first."""
    found: list[Clone] = []
    if not cache_dir.is_dir():
        return found
    for entry in cache_dir.iterdir():
        if not (_CLONE.fullmatch(entry.name) and entry.is_dir()):
            continue
        lock = cache_dir / f"{entry.name}.lock"
        try:
            used = lock.stat().st_mtime
        except FileNotFoundError:
            used = entry.stat().st_mtime
        found.append(Clone(entry, disk_usage(entry), used))
    return sorted(found, key=lambda clone: clone.last_used)


def evict(cache_dir: Path, *, idle: float, budget: int, now: float | None = None) -> Sweep:
    """Remove clones unused for `idle` seconds, then the least recently used ones while the
    cache holds more than `budget` bytes. A clone in use is skipped (never waited for)."""
    moment = time.time() if now is None else now
    _remove_leftovers(cache_dir)
    found = clones(cache_dir)
    total = sum(clone.size for clone in found)
    evicted: list[Path] = []
    busy: list[Path] = []
    for clone in found:
        stale = moment - clone.last_used > idle
        if not stale and total <= budget:
            continue
        if _remove_if_idle(cache_dir, clone.path):
            evicted.append(clone.path)
            total -= clone.size
        else:
            busy.append(clone.path)
    if total > budget:
        log.warning(
            "the clone cache holds %d MiB, over its %d MiB budget, in clones in use: "
            "raise the budget (and the cache volume) or use fewer repositories",
            total >> 20,
            budget >> 20,
        )
    return Sweep(evicted, busy, total)


def _remove_if_idle(cache_dir: Path, clone: Path) -> bool:
    """Take the clone's two locks without waiting, then remove it; False when busy."""
    lock = cache_dir / f"{clone.name}.lock"
    with _exclusive_now(lock) as got_lock, _exclusive_now(use_lock_path(lock)) as got_use:
        if not (got_lock and got_use):
            return False
        # rename first: a crash mid-removal must not leave a half clone under the key
        doomed = clone.with_name(f"{clone.name}.evicted-{os.getpid()}")
        clone.rename(doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        log.info("evicted the cached clone %s", clone.name)
        return True


@contextlib.contextmanager
def _exclusive_now(path: Path) -> Iterator[bool]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _remove_leftovers(cache_dir: Path) -> None:
    """Folders a killed process left mid-clone or mid-eviction, when nobody clones now."""
    if not cache_dir.is_dir():
        return
    for entry in cache_dir.iterdir():
        if not _LEFTOVER.fullmatch(entry.name):
            continue
        lock = cache_dir / f"{entry.name[:24]}.lock"
        with _exclusive_now(lock) as free:
            if free:
                shutil.rmtree(entry, ignore_errors=True)
