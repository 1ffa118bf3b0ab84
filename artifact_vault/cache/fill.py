"""A single-flight fill: one upstream download that every waiting client reads as it grows.

The download runs in its own thread, not in any client's request thread, so a client that
disconnects cannot stop it: the others, and the cache, still get the whole file. Every client,
the first included, is a reader of the growing temp file. A reader gets each byte as soon as
the writer has written it, not when the download ends (nginx's proxy_cache_lock makes followers
wait for the end; distribution fetches again per follower).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import TransferAborted
from .index import Entry
from .streams import READ_CHUNK

_WAIT_SECONDS = 1.0


@dataclass(frozen=True)
class FillHead:
    """What is known once the upstream has answered 200: enough to send response headers."""

    size: int | None
    headers: Mapping[str, str]


class Fill:
    """Shared state between the writer thread and its readers, guarded by one condition."""

    def __init__(self, key: str, temp: Path) -> None:
        self.key = key
        self.temp = temp
        self._cond = threading.Condition()
        self._path = temp  # readers open this; it becomes the blob path after commit
        self._head: FillHead | None = None
        self._entry: Entry | None = None  # set when the fill ends in a usable entry
        self._error: BaseException | None = None
        self._written = 0
        self._done = False

    # -- writer side -------------------------------------------------------------------------

    def started(self, head: FillHead) -> None:
        with self._cond:
            self._head = head
            self._cond.notify_all()

    def advanced(self, written: int) -> None:
        with self._cond:
            self._written = written
            self._cond.notify_all()

    def commit(self, move: Callable[[], Path]) -> None:
        """Run ``move`` (temp file -> blob) under the lock, so a reader opening the file now
        finds it under one name or the other, never neither."""
        with self._cond:
            self._path = move()

    def finished(self, entry: Entry) -> None:
        """The fill ended well: a committed blob, or a refreshed entry (304)."""
        with self._cond:
            self._entry = entry
            self._done = True
            self._cond.notify_all()

    def failed(self, error: BaseException) -> None:
        with self._cond:
            self._error = error
            self._done = True
            self._cond.notify_all()

    # -- reader side -------------------------------------------------------------------------

    def wait_head(self) -> FillHead | Entry:
        """Block until the upstream answered; raise its error if it failed before any body.

        Returns the head of a body being streamed, or an entry if the fill ended without one
        (a 304 refreshed the cached copy)."""
        with self._cond:
            while self._head is None and not self._done:
                self._cond.wait(_WAIT_SECONDS)
            if self._head is not None:
                return self._head
            if self._error is not None:
                raise self._error
            assert self._entry is not None
            return self._entry

    def wait_done(self) -> None:
        """Block until the fill has ended; raise its error if it failed."""
        with self._cond:
            while not self._done:
                self._cond.wait(_WAIT_SECONDS)
            if self._error is not None:
                raise self._error

    def read(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes [start, end) as they arrive; the iterator raises TransferAborted if the fill
        fails. The file is opened now, so a fill that already failed raises its own error
        here, before the caller has sent any response headers.

        The last byte is held back until the fill is verified and committed, so a body whose
        digest turns out wrong reaches the client as a broken transfer, never as a clean
        corrupt file; and a request that comes after the client's last byte finds the entry
        committed."""
        with self._cond:
            size = self._head.size if self._head is not None else None
            try:
                f = open(self._path, "rb")  # an open file survives the writer's rename/unlink
            except FileNotFoundError:
                # The writer removes its temp file before it reports the failure: wait for
                # the report, so the client gets the upstream's error, not an internal one.
                while not self._done:
                    self._cond.wait(_WAIT_SECONDS)
                if self._error is not None:
                    raise self._error from None
                raise TransferAborted(f"fill of {self.key} lost its file") from None
        return self._stream(f, start, end, size)

    def _stream(self, f: BinaryIO, start: int, end: int | None,
                size: int | None) -> Iterator[bytes]:
        with f:
            pos = start
            f.seek(start)
            while end is None or pos < end:
                available = self._wait_past(pos, size)
                if available <= pos:
                    return  # done, and everything was read
                want = available - pos if end is None else min(available, end) - pos
                data = f.read(min(want, READ_CHUNK))
                if not data:
                    raise TransferAborted(f"cache file of {self.key} shrank while reading")
                pos += len(data)
                yield data

    def _wait_past(self, pos: int, size: int | None) -> int:
        """Block until more than ``pos`` bytes may be read, or the fill is done; return the
        readable length."""
        with self._cond:
            while True:
                if self._error is not None:
                    raise TransferAborted(f"upstream transfer of {self.key} failed: "
                                          f"{self._error}") from self._error
                available = self._written
                if size is not None and not self._done:
                    available = min(available, size - 1)
                if available > pos or self._done:
                    return available
                self._cond.wait(_WAIT_SECONDS)
