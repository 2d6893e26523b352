"""A re-entrant lock that also holds across processes: several replicas share one data dir's git caches.

Threads of one process share one `ProcessLock` per path (re-entrant, like `threading.RLock`); the first
holder in a process takes an exclusive `flock` on the lock file, which other processes wait on. The kernel
drops the `flock` when its holder dies, so a `kill -9` never leaves a lock behind.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from types import TracebackType

_registry_lock = threading.Lock()
_registry: dict[str, ProcessLock] = {}


class ProcessLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._rlock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        if not self._rlock.acquire(blocking):
            return False
        if self._depth == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BaseException:
                os.close(fd)
                self._rlock.release()
                if not blocking:
                    return False
                raise
            self._fd = fd
        self._depth += 1
        return True

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fd, self._fd = self._fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        self._rlock.release()

    def __enter__(self) -> ProcessLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def lock_for(path: Path) -> ProcessLock:
    """The one lock of this process for `path` (a lock file; created on first use)."""
    key = os.path.realpath(path)
    with _registry_lock:
        lock = _registry.get(key)
        if lock is None:
            lock = _registry[key] = ProcessLock(Path(key))
        return lock


def forget_lock(path: Path) -> None:
    """Drop this process's lock object for `path` when nobody holds it (a lock per PR or batch is used a few
    times, then never again: kept, the registry would grow with every PR a long-running server sees).

    A thread that still has the dropped object and takes it later is still excluded from a new object's holder:
    each object takes its own `flock`, and two open files of one path exclude each other even in one process.
    """
    key = os.path.realpath(path)
    with _registry_lock:
        lock = _registry.get(key)
        if lock is not None and lock._depth == 0 and lock._rlock.acquire(blocking=False):
            try:
                if lock._depth == 0:
                    del _registry[key]
            finally:
                lock._rlock.release()
