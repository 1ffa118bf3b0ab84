"""Per-key file locks: one fill of a key at a time across every process sharing a cache.

Single-flight inside one process is the engine's ``_fills`` table. A second process on the
same ``cache_dir`` (``artifact-vault prefetch`` next to a running server) cannot see that
table, so the process that starts a fill also takes ``cache_dir/locks/<sha256 of key>`` with
``flock``. Another process that starts a fill of the same key blocks on that lock, then finds
the committed entry in the index and serves it instead of fetching again.

Lock files are removed by their holder, so the directory holds only fills in progress. Removing
a lock file is racy on its own (a waiter may hold a descriptor of the removed file while a
newcomer creates a fresh one), so a taker checks after ``flock`` that the path still names the
file it locked, and starts over if not. The kernel drops a dead process's locks: a crashed
fill never blocks anyone.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path


class KeyLocks:
    def __init__(self, lock_dir: Path) -> None:
        self._dir = lock_dir
        lock_dir.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> str:
        return os.path.join(self._dir, hashlib.sha256(key.encode()).hexdigest() + ".lock")

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[bool]:
        """Hold the lock of ``key``; yields whether another process held it first (and so
        may have filled the key meanwhile)."""
        path = self.path(key)
        fd, waited = _take(path)
        try:
            yield waited
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # before unlocking: no one can lock this file after us
            os.close(fd)


def _take(path: str) -> tuple[int, bool]:
    waited = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                waited = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            mine = os.fstat(fd)
            try:
                now = os.stat(path)
            except FileNotFoundError:
                now = None
            if now is not None and (now.st_ino, now.st_dev) == (mine.st_ino, mine.st_dev):
                return fd, waited
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the holder removed the file we locked: take the current one
