"""An upstream's answer as Vault reads it: its body in chunks, decoded only when asked,
every way it can break turned into an ``UpstreamError`` naming the host, and its connection
slot given back however the body ends.

Kept apart from ``upstream`` (which decides where a request goes and how often it is tried)
because this is the per-chunk hot path of every cold fill.
"""

from __future__ import annotations

import fcntl
import select
import ssl
import sys
import termios
from collections.abc import Callable, Iterator
from typing import Any

import requests
import urllib3

from .errors import UpstreamError, UpstreamTimeout
from .upstream_state import Permit

_CHUNK = 1024 * 1024  # fewer, larger chunks: less Python work per byte on a cold fill
# Reads that return at once are gathered into chunks of up to this size (see ``chunks``).
_GATHER = 256 * 1024
_TLS_RECORD = 16384 + 256 + 5  # the largest TLS record on the wire: 16 KiB, overhead, header
# Bodies Vault decodes are pages it parses; PyPI's largest are tens of MB.
_DECODED_MAX = 256 * 1024 * 1024


class _Ready:
    """Whether reading a response's socket would return at once: TLS bytes already
    decrypted, or bytes waiting in the kernel; over TLS, a whole record of them (a read
    waits for the rest of a partial record, which a trickling upstream may take seconds to
    send, and the bytes gathered so far would wait with it)."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._tls = isinstance(sock, ssl.SSLSocket)
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)

    @classmethod
    def of(cls, raw: Any) -> _Ready | None:
        """For a urllib3 response; None if its socket cannot be found (then every read is
        its own chunk, as before). A connection that will not be reused (HTTP/1.0, or
        ``Connection: close``) is not kept on the response: its socket is found through
        http.client's file object instead."""
        sock = getattr(getattr(raw, "connection", None), "sock", None)
        if sock is None:
            fp = getattr(getattr(raw, "_fp", None), "fp", None)
            sock = getattr(getattr(fp, "raw", None), "_sock", None)
        return cls(sock) if sock is not None else None

    def __call__(self) -> bool:
        if not self._tls:
            return bool(self._poll.poll(0))
        if self._sock.pending():
            return True
        fd = self._sock.fileno()
        if fd < 0:  # closed: the body has ended
            return False
        queued = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
        return int.from_bytes(queued, sys.byteorder) >= _TLS_RECORD


class UpstreamResponse:
    """A streaming upstream answer whose body errors are ``UpstreamError``s.

    It holds its backend's connection slot until the body is read to the end, breaks, or is
    closed; ``__del__`` is the backstop for an answer dropped without ``close``."""

    def __init__(self, resp: requests.Response, host: str,
                 failed: Callable[[str], None] = lambda _: None) -> None:
        self._resp = resp
        self.host = host
        self._failed = failed  # told about a body that broke off
        self.status = resp.status_code
        self.headers = resp.headers
        self.url = resp.url
        self.permit: Permit | None = None
        self._decode = False
        self._limit: tuple[int, str] | None = None  # (most bytes, what more would be)

    def decoded(self) -> UpstreamResponse:
        """Hand the body over with its Content-Encoding undone, for text Vault parses itself.
        Its length is then unknown up front (the header counted the encoded bytes); HTTP
        framing still turns a body cut short into an error."""
        if "content-encoding" in self.headers:
            self.headers = requests.structures.CaseInsensitiveDict(
                {k: v for k, v in self.headers.items()
                 if k.lower() not in ("content-encoding", "content-length")})
            self._decode = True
            self._limit = (_DECODED_MAX,
                           f"a compressed body that expands past {_DECODED_MAX >> 20} MiB")
        return self

    def limited(self, most: int, what: str) -> UpstreamResponse:
        """Break off a body longer than ``most`` bytes as it arrives, as an ``UpstreamError``
        saying the upstream sent ``what``: for a body whose length no header announced, which
        nothing else bounds."""
        self._limit = (most, what)
        return self

    def chunks(self) -> Iterator[bytes]:
        # Not decoded (unless asked): a .gz is stored and served as the bytes the upstream holds.
        # read1: what has arrived, up to _CHUNK, as soon as it has arrived, so a slow upstream
        # does not hold its first bytes back until a whole chunk is in (a 1 KiB/s upstream
        # meant ~17 minutes to the first byte). Over TLS one read is one 16 KiB record,
        # though: a fast upstream's bytes that are already here are gathered up to _GATHER,
        # or every chunk costs a hand-off of the GIL, a hash-queue put and a wake-up of the
        # readers (a cold uv install moves ~4,600 of them, on a GIL 30 threads want).
        raw = self._resp.raw
        ready = _Ready.of(raw)
        try:
            received = 0
            while chunk := raw.read1(_CHUNK, decode_content=self._decode):
                if ready is not None and len(chunk) < _GATHER:
                    parts, size = [chunk], len(chunk)
                    while size < _GATHER and ready() and (
                            more := raw.read1(_GATHER - size, decode_content=self._decode)):
                        parts.append(more)
                        size += len(more)
                    chunk = b"".join(parts) if len(parts) > 1 else chunk
                if self._limit is not None:  # a few KB of gzip can expand to gigabytes
                    received += len(chunk)
                    if received > self._limit[0]:
                        message = f"upstream {self.host} sent {self._limit[1]}"
                        self._failed(message)
                        raise UpstreamError(message, upstream=self.host)
                yield chunk
        except (urllib3.exceptions.ReadTimeoutError, requests.Timeout) as exc:
            self._failed(f"upstream {self.host} stalled mid-body")
            raise UpstreamTimeout(f"upstream {self.host} stalled mid-body",
                                  upstream=self.host) from exc
        except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
            message = f"upstream {self.host} broke off mid-body ({type(exc).__name__})"
            self._failed(message)
            raise UpstreamError(message, upstream=self.host) from exc
        finally:
            self._release()

    def close(self) -> None:
        self._resp.close()
        self._release()

    def _release(self) -> None:
        if self.permit is not None:
            self.permit.release()

    def __del__(self) -> None:
        self._release()

    def __enter__(self) -> UpstreamResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
