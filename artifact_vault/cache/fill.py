"""A single-flight fill: one upstream download that every waiting client reads as it grows.

The download runs in its own thread, not in any client's request thread, so a client that
disconnects cannot stop it: the others, and the cache, still get the whole file. Every client,
the first included, is a reader of the growing temp file. A reader gets each byte as soon as
the writer has written it, not when the download ends (nginx's proxy_cache_lock makes followers
wait for the end; distribution fetches again per follower).

If the disk fills up mid-download, the fill *spills*: the bytes already on disk are still read
from the temp file, and the rest is handed to the readers through a small in-memory window
that the writer may not run ahead of. The clients get their whole body; nothing is committed.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import TransferAborted
from .index import Entry
from .streams import READ_CHUNK

_WAIT_SECONDS = 1.0
# A spilled fill keeps at most this much of the body in memory: the writer waits for the
# slowest reader, but not forever: a reader that stalls this long loses its place (a broken
# transfer) rather than stalling the others.
_WINDOW_BYTES = 4 * 1024 * 1024
_LAGGARD_SECONDS = 30.0
# A reader whose range starts at most this far past the written bytes waits for them rather
# than ask the upstream for its range (see ``Served.open``).
_NEAR_BYTES = 1024 * 1024


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
        self._verified = False  # length and digest checked: the last byte may go out
        self.digest: str | None = None  # the body's sha256, once verified
        self._spilled_at: int | None = None  # bytes from here on are in _window, not the file
        self._window: deque[bytes] = deque()
        self._window_start = 0
        self._window_bytes = 0
        self._readers: dict[object, int] = {}  # where each reader is: a spill waits for them
        self._pending = 0  # readers that joined and have not opened the file yet
        self.filled_elsewhere = False  # ended with an entry another process committed

    # -- writer side -------------------------------------------------------------------------

    def started(self, head: FillHead) -> None:
        with self._cond:
            self._head = head
            self._cond.notify_all()

    def advanced(self, written: int) -> None:
        with self._cond:
            self._written = written
            self._cond.notify_all()

    def spill(self, at: int) -> None:
        """The disk is full: the file holds bytes [0, at); later ones come by ``hand_over``."""
        with self._cond:
            self._spilled_at = self._window_start = at

    def hand_over(self, chunk: bytes, written: int) -> None:
        """Add a chunk of a spilled fill to the window, first waiting until the readers have
        taken enough that it stays under its bound."""
        with self._cond:
            deadline = time.monotonic() + _LAGGARD_SECONDS
            while self._window and self._window_bytes + len(chunk) > _WINDOW_BYTES:
                slowest = 0 if self._pending else min(self._readers.values(),
                                                      default=self._written)
                if self._window_start + len(self._window[0]) <= slowest \
                        or time.monotonic() > deadline:
                    self._window_bytes -= len(self._window[0])
                    self._window_start += len(self._window.popleft())
                else:
                    self._cond.wait(_WAIT_SECONDS)
            self._window.append(chunk)
            self._window_bytes += len(chunk)
            self._written = written
            self._cond.notify_all()

    def verified(self, digest: str) -> None:
        """Length and digest check out: no more bytes come, and the last one may go out."""
        with self._cond:
            self._verified = True
            self.digest = digest
            self._cond.notify_all()

    @property
    def committing(self) -> bool:
        """Verified and being kept: a new reader is better off waiting for the commit."""
        return self._verified and self._spilled_at is None

    def wait_opened(self) -> None:
        """Before a spilled fill drops its temp file: let the readers that were given the
        head open it (bounded: one that never does must not keep the file forever)."""
        deadline = time.monotonic() + _LAGGARD_SECONDS
        with self._cond:
            while self._pending and time.monotonic() < deadline:
                self._cond.wait(_WAIT_SECONDS)

    def commit(self, move: Callable[[], Path]) -> None:
        """Run ``move`` (temp file -> blob) under the lock, so a reader opening the file now
        finds it under one name or the other, never neither."""
        with self._cond:
            self._path = move()

    def finished(self, entry: Entry | None) -> None:
        """The fill ended well: a committed blob, a refreshed entry (304), or (None) a
        spilled body that every reader got whole but that was not kept."""
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
            self._pending = max(0, self._pending - 1)  # no body to read after all
            if self._error is not None:
                raise self._error
            assert self._entry is not None
            return self._entry

    def join(self) -> None:
        """A new reader: counted from now until it opens the file (``read``) or gives up
        (``release``), so that a spilled fill keeps its temp file for it."""
        with self._cond:
            self._pending += 1

    def release(self) -> None:
        """A reader given the head will not read the body after all."""
        with self._cond:
            self._pending = max(0, self._pending - 1)
            self._cond.notify_all()

    @property
    def entry(self) -> Entry | None:
        """The committed entry once the fill is done (None: nothing was kept)."""
        return self._entry

    def wait_verified(self) -> bool:
        """Block until the body is verified or the fill has ended; raise its error if it
        failed. True if the whole verified body is in the file (not spilled to memory)."""
        with self._cond:
            while not (self._verified or self._done):
                self._cond.wait(_WAIT_SECONDS)
            if self._error is not None:
                raise self._error
            return self._verified and self._spilled_at is None

    def wait_done(self) -> None:
        """Block until the fill has ended; raise its error if it failed."""
        with self._cond:
            while not self._done:
                self._cond.wait(_WAIT_SECONDS)
            if self._error is not None:
                raise self._error

    def reached(self, pos: int) -> bool:
        """Whether byte ``pos`` is written, or about to be (within the next megabyte)."""
        with self._cond:
            return self._done or pos <= self._written + _NEAR_BYTES

    def read(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Bytes [start, end) as they arrive; the iterator raises TransferAborted if the fill
        fails. The file is opened now, so a fill that already failed raises its own error
        here, before the caller has sent any response headers.

        The last byte is held back until the fill is verified, so a body whose digest turns
        out wrong reaches the client as a broken transfer, never as a clean corrupt file."""
        with self._cond:
            self._pending = max(0, self._pending - 1)
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
            me = object()
            self._readers[me] = start
        return self._stream(me, f, start, end, size)

    def _stream(self, me: object, f: BinaryIO, start: int, end: int | None,
                size: int | None) -> Iterator[bytes]:
        try:
            with f:
                pos = start
                f.seek(start)
                while end is None or pos < end:
                    available = self._wait_past(me, pos, size)
                    if available <= pos:
                        return  # done, and everything was read
                    want = min(available, pos + READ_CHUNK, end or available)
                    spilled_at = self._spilled_at
                    if spilled_at is not None and pos >= spilled_at:
                        data = self._from_window(pos, want)
                    else:
                        if spilled_at is not None:
                            want = min(want, spilled_at)
                        data = f.read(want - pos)
                    if not data:
                        raise TransferAborted(f"cache file of {self.key} shrank while reading")
                    pos += len(data)
                    yield data
        finally:
            with self._cond:
                if self._readers.pop(me, None) is not None:
                    self._cond.notify_all()

    def _from_window(self, pos: int, want: int) -> bytes:
        with self._cond:
            if pos < self._window_start:
                raise TransferAborted(f"a reader of {self.key} fell too far behind a download "
                                      "that could not be cached (disk full)")
            offset = self._window_start
            for chunk in self._window:
                if pos < offset + len(chunk):
                    return chunk[pos - offset:want - offset]
                offset += len(chunk)
        return b""

    def _wait_past(self, reader: object, pos: int, size: int | None) -> int:
        """Note where ``reader`` is; block until more than ``pos`` bytes may be read, or the
        fill is done; return the readable length."""
        with self._cond:
            self._readers[reader] = pos
            if self._spilled_at is not None:
                self._cond.notify_all()  # the writer may be waiting for room in the window
            while True:
                if self._error is not None:
                    raise TransferAborted(f"upstream transfer of {self.key} failed: "
                                          f"{self._error}") from self._error
                available = self._written
                if size is not None and not (self._done or self._verified):
                    available = min(available, size - 1)
                if available > pos or self._done:
                    return available
                self._cond.wait(_WAIT_SECONDS)
