"""Small cache hits kept whole in memory, so a repeated one skips routing and the disk.

A 1 KiB hit spends far more on finding its bytes (route, backend, index lookup, stat, open,
read, delivery headers) than on the bytes. Like nginx's ``open_file_cache``, this keeps what
the last such response was (its status line, headers and body) under the request's path,
query and Accept (the one request header a backend's answer depends on), and sends it again
while the cache engine says the index entry it came from is still current and fresh
(``Cache.still_current``), so a purge, eviction or refetch is never hidden.

Only plain GETs use it (no Range, no conditional headers) and only when client auth is off:
everything else takes the full path. The index entry is re-read at least once a second, which
ends the memo's use of it, so responses older than that are dropped (memory follows the keys
asked for lately); bodies are at most 64 KiB and all of them together at most ``max_bytes``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .cache import Cache
from .cache.index import Entry

_BODY_MAX = 64 * 1024
_KEEP_SECONDS = 1.0
# Headers that make a GET answer differ from the plain one
_CONDITIONAL = ("HTTP_RANGE", "HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE", "HTTP_IF_RANGE")


@dataclass(frozen=True)
class Hot:
    entry: Entry
    backend: str
    path: str  # for the access log
    status: str
    headers: list[tuple[str, str]]
    body: bytes


class HotHits:
    def __init__(self, cache: Cache, max_bytes: int = 8 * 1024 * 1024) -> None:
        self._cache = cache
        self._max_bytes = max_bytes
        self._bytes = 0
        self._hits: dict[tuple[str, str], tuple[float, Hot]] = {}
        self._swept = time.monotonic()

    def lookup(self, environ: dict[str, Any]) -> Hot | None:
        if not _plain(environ):
            return None
        kept = self._hits.get((environ.get("REQUEST_URI", ""), environ.get("HTTP_ACCEPT", "")))
        if kept is None or not self._cache.still_current(kept[1].entry):
            return None
        return kept[1]

    def keep(self, environ: dict[str, Any], hot: Hot) -> None:
        """Remember ``hot`` as the answer to this request (the caller checked it is a 200 HIT
        with a small body, sent whole)."""
        uri = environ.get("REQUEST_URI")
        if not uri or len(hot.body) > _BODY_MAX or not _plain(environ):
            return
        now = time.monotonic()
        if now - self._swept > _KEEP_SECONDS:
            # list(): other threads add entries while this one sweeps
            self._hits = {k: v for k, v in list(self._hits.items())
                          if now - v[0] < _KEEP_SECONDS}
            self._bytes = sum(len(v[1].body) for v in self._hits.values())
            self._swept = now
        if self._bytes + len(hot.body) > self._max_bytes:
            self._hits, self._bytes = {}, 0
        self._hits[(uri, environ.get("HTTP_ACCEPT", ""))] = (now, hot)
        self._bytes += len(hot.body)


def _plain(environ: dict[str, Any]) -> bool:
    """A GET whose answer is the whole body as stored: no Range, no conditional headers."""
    return environ["REQUEST_METHOD"] == "GET" and not any(h in environ for h in _CONDITIONAL)
