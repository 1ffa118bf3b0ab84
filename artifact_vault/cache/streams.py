"""Bodies as the engine moves them: upstream answers, hashing, verified pass-through, reads.

Kept apart from ``engine`` so the engine reads as policy (what to serve, when to fetch) and
this module as mechanics (how bytes are produced, checked and read back).
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

from requests.structures import CaseInsensitiveDict

from ..errors import TransferAborted, VaultError

READ_CHUNK = 256 * 1024  # per yield to the server: its buffers hold a few of these per client
_HASH_INLINE = 1024 * 1024  # a body up to this size is hashed without a thread (``Hasher``)


class Fetched(Protocol):
    """An upstream answer, as the engine needs it (``upstream.UpstreamResponse`` is one)."""

    status: int
    headers: Mapping[str, str]
    host: str  # who answered, for error messages: "which upstream failed"

    def chunks(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


# Called with extra request headers: conditional ones (If-None-Match, If-Modified-Since) when
# revalidating, a Range for ``upstream_range``.
Fetch = Callable[[Mapping[str, str]], Fetched]


class Answer:
    """A ``Fetched`` that Vault made itself: a 304 from a cheaper check (a registry HEAD), or
    bytes it derived (metadata read out of a cached wheel)."""

    def __init__(self, status: int = 200, body: bytes = b"", content_type: str | None = None,
                 host: str = "vault") -> None:
        self.status = status
        self.host = host
        self._body = body
        self.headers: Mapping[str, str] = CaseInsensitiveDict({"content-length": str(len(body))})
        if content_type:
            self.headers["content-type"] = content_type  # type: ignore[index]

    def chunks(self) -> Iterator[bytes]:
        if self._body:
            yield self._body

    def close(self) -> None:
        pass


class Hasher:
    """sha256 of a body as it arrives. Past its first MiB, on a thread of its own: hashlib
    releases the GIL on large buffers, so hashing runs alongside receiving and writing instead
    of after each chunk (a cold fill is CPU-bound on small machines). A smaller body (a page,
    a manifest, most metadata) is hashed in the caller's thread: a thread's start and join
    cost more than that. ``hexdigest`` waits for the last chunk."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._inline = _HASH_INLINE  # bytes left to hash here before a thread takes over
        self._chunks: queue.Queue[bytes | None] | None = None
        self._thread: threading.Thread | None = None
        self._digest: str | None = None

    def update(self, chunk: bytes) -> None:
        if self._chunks is None:
            if len(chunk) <= self._inline:
                self._inline -= len(chunk)
                self._sha.update(chunk)
                return
            self._chunks = queue.Queue(maxsize=16)
            self._thread = threading.Thread(target=self._run, args=(self._chunks,),
                                            name="sha256", daemon=True)
            self._thread.start()
        self._chunks.put(chunk)

    def _run(self, chunks: queue.Queue[bytes | None]) -> None:
        while (chunk := chunks.get()) is not None:
            self._sha.update(chunk)

    def hexdigest(self) -> str:
        if self._digest is None:
            if self._chunks is not None and self._thread is not None:
                self._chunks.put(None)
                self._thread.join()
            self._digest = self._sha.hexdigest()
        return self._digest


def content_length(headers: Mapping[str, str]) -> int | None:
    value = headers.get("content-length")
    return int(value) if value and value.isdigit() else None


def read_file(path: str, start: int, end: int | None) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(start)
        remaining = None if end is None else end - start
        while remaining is None or remaining > 0:
            data = f.read(READ_CHUNK if remaining is None else min(READ_CHUNK, remaining))
            if not data:
                return
            if remaining is not None:
                remaining -= len(data)
            yield data


def upstream_range(fetch: Fetch, start: int, last: int) -> Iterator[bytes] | None:
    """Bytes [start, last] asked of the upstream as a Range request, for a reader that would
    otherwise wait for a fill to get that far; None if the upstream fails or answers anything
    but exactly that range (it may ignore Range and send 200): the fill will bring them.

    A range cannot be checked against the file's digest, so these bytes reach the client as
    the upstream sent them, as they would without Vault; only their length is checked, and
    nothing of them is kept (the fill, which is verified, is what gets cached)."""
    try:
        resp = fetch({"Range": f"bytes={start}-{last}"})
    except VaultError:
        return None
    if resp.status != 206 or not resp.headers.get("content-range", "").startswith(
            f"bytes {start}-{last}/"):
        resp.close()
        return None
    return _exactly(resp, last - start + 1)


def _exactly(resp: Fetched, length: int) -> Iterator[bytes]:
    sent = 0
    try:
        for chunk in resp.chunks():
            chunk = chunk[:length - sent]
            sent += len(chunk)
            if chunk:
                yield chunk
            if sent == length:
                return
    except VaultError as exc:
        raise TransferAborted(str(exc)) from exc
    finally:
        resp.close()
    raise TransferAborted(f"upstream sent {sent} bytes of a {length}-byte range")


class Verified:
    """A pass-through body (nothing is cached) that is still checked: the last chunk is held
    back until the length and digest are known good, so a bad body is a broken transfer."""

    def __init__(self, resp: Fetched, size: int | None, digest: str | None) -> None:
        self._resp = resp
        self._size = size
        self._digest = digest

    def close(self) -> None:
        """For a response that sends no body (HEAD, 304): let the connection go."""
        self._resp.close()

    def __iter__(self) -> Iterator[bytes]:
        sha, size, held = hashlib.sha256(), 0, b""
        expected = self._size or content_length(self._resp.headers)
        try:
            for chunk in self._resp.chunks():
                if held:
                    yield held
                sha.update(chunk)
                size += len(chunk)
                held = chunk
        except VaultError as exc:
            raise TransferAborted(str(exc)) from exc
        finally:
            self._resp.close()
        if expected is not None and size != expected:
            raise TransferAborted(f"upstream sent {size} bytes, expected {expected}")
        if self._digest is not None and sha.hexdigest() != self._digest:
            raise TransferAborted(f"sha256 {sha.hexdigest()} is not the expected {self._digest}")
        if held:
            yield held
