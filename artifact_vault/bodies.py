"""Response bodies as the server pulls them: a cached file on waitress's fast path, a stream
that reports its byte count when closed, and an upstream-fed stream primed before the status
line. Each tells the app, once, when the response is done."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .errors import TransferAborted, VaultError


class FileBody:
    """A cached file handed to the server's file wrapper (its fast path), with a close hook.

    waitress serves ``wsgi.file_wrapper`` objects from its I/O loop without a worker thread per
    chunk; wrapping the *file* (not the iterable) keeps that fast path and still tells us when
    the response is done."""

    def __init__(self, f: Any, wrapper: Callable[..., Any], length: int) -> None:
        self._f = f
        self.wrapper = wrapper
        self.length = length
        self.read, self.seek, self.tell = f.read, f.seek, f.tell
        self.on_close: Callable[[], None] = lambda: None

    def close(self) -> None:
        self._f.close()
        self.on_close()


# A body held in memory goes to waitress in pieces of at most this: waitress copies what it is
# given into its output buffer, and a buffer past outbuf_overflow (server.py) is moved to a
# temp file, so a large project page (6.5 MB) was written to disk and read back to be sent.
_PIECE = 1024 * 1024


def wrap_body(body: Iterable[bytes],
               finished: Callable[[int], None]) -> Iterable[bytes]:
    if isinstance(body, FileBody):
        length = body.length
        body.on_close = lambda: finished(length)
        return body.wrapper(body, 256 * 1024)
    if isinstance(body, list) and len(body) == 1:
        data = body[0]
        if len(data) <= _PIECE:
            return Whole(data, finished)
        body = (data[i:i + _PIECE] for i in range(0, len(data), _PIECE))
    return _CountingBody(body, finished)


class Whole(list):  # type: ignore[type-arg]
    """A body held whole in memory, reporting its size when the server closes it.

    A one-item list: waitress takes its length and sends it without a Python call per
    chunk, as it does for the bare list an app returns."""

    def __init__(self, data: bytes, finished: Callable[[int], None]) -> None:
        super().__init__((data,))
        self._finished = finished

    def close(self) -> None:
        self._finished(len(self[0]))


class _CountingBody:
    """Counts bytes as the server pulls them and reports once, when the server closes us."""

    def __init__(self, body: Iterable[bytes], finished: Callable[[int], None]) -> None:
        self._body = body
        self._it: Iterator[bytes] = iter(body)
        self._finished = finished
        self._sent = 0

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        chunk = next(self._it)
        self._sent += len(chunk)
        return chunk

    def close(self) -> None:
        for obj in (self._it, self._body):
            close = getattr(obj, "close", None)
            if close is not None:
                close()
        self._finished(self._sent)


class Primed:
    """An upstream-fed body whose first chunk is read before the status line is sent.

    waitress sends the headers with the first chunk, so reading it here costs no time; but
    an upstream that fails before that chunk (a stall or reset early in the body) then
    becomes a clear 502/504 naming the upstream, instead of waitress's bare 500."""

    def __init__(self, body: Iterable[bytes]) -> None:
        self._body = body
        self._it = iter(body)
        try:
            self._first: bytes | None = next(self._it)
        except StopIteration:
            self._first = None
        except TransferAborted as exc:
            if isinstance(exc.__cause__, VaultError):
                raise exc.__cause__ from None
            raise

    def __iter__(self) -> Iterator[bytes]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        yield from self._it

    def close(self) -> None:
        close = getattr(self._body, "close", None)
        if close is not None:
            close()
