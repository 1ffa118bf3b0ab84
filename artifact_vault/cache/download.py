"""One download into the cache: the writer side of a fill.

The engine (``engine.Cache``) decides who fetches a key and serves the readers; this fetches it:
a conditional GET when an expired copy exists (a 304 refreshes it), the body streamed to a
temp file and hashed as it comes, length and digest verified, the backend's ``check``, then the
last byte released to the readers and, while it travels, fdatasync, rename and index row. If
the disk fills up mid-body the fill spills (the readers get the rest from memory) and nothing
is kept.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import IntegrityError, UpstreamError, UpstreamNotFound
from .blobs import BlobStore
from .eviction import Evictor
from .fill import Fill, FillHead
from .index import Entry, Index
from .streams import Fetch, Fetched, Hasher, content_length

if TYPE_CHECKING:
    from .engine import Observer, Policy

log = logging.getLogger(__name__)

# Upstream headers worth keeping with a blob; everything else is per-response noise.
KEPT_HEADERS = ("content-type", "content-encoding", "etag", "last-modified", "content-disposition",
                "docker-content-digest")


class NoRoom(Exception):
    """The disk budget cannot take this artifact: clients get it passed through instead."""


class Download:
    """Runs fills for one cache. ``forget`` drops a fill from the engine's table of running
    fills: a request from then on looks at the index (or starts its own fill)."""

    def __init__(self, index: Index, blobs: BlobStore, evictor: Evictor, observer: Observer,
                 negative_ttl: float, forget: Callable[[Fill], None]) -> None:
        self._index = index
        self._blobs = blobs
        self._evictor = evictor
        self._observer = observer
        self._negative_ttl = negative_ttl
        self._forget = forget

    def run(self, fill: Fill, backend: str, policy: Policy, fetch: Fetch,
            stale: Entry | None) -> None:
        """Fetch (conditionally, with ``stale``'s validators), stream to the temp file, verify,
        keep; ``fill`` tells the readers each step. Raises what went wrong."""
        if not self._evictor.make_room(policy.size or 0):
            raise NoRoom()
        validators = _validators(stale) if stale is not None else {}
        try:
            resp = fetch(validators)
        except UpstreamNotFound:
            self._remember_missing(backend, fill.key)
            raise
        try:
            now = time.time()
            fresh_until = None if policy.ttl is None else now + policy.ttl
            if resp.status == 304 and stale is not None:
                headers = {**stale.headers,
                           **kept_headers(resp.headers, only=("etag", "last-modified"))}
                self._index.refresh(fill.key, fresh_until, headers)
                self._forget(fill)
                fill.finished(dataclasses.replace(stale, headers=headers, fresh_until=fresh_until))
                return
            if resp.status != 200:
                raise UpstreamError(f"upstream {resp.host} answered {resp.status} for {fill.key}",
                                    upstream=resp.host, upstream_status=resp.status)
            size = content_length(resp.headers)
            if policy.size is not None and size is not None and size != policy.size:
                raise IntegrityError(f"upstream {resp.host} announced {size} bytes for {fill.key}, "
                                     f"not the expected {policy.size}", upstream=resp.host)
            if size is not None and not self._evictor.make_room(size):
                raise NoRoom()
            headers = kept_headers(resp.headers)
            digest, written, kept = self._write(fill, resp, backend, FillHead(size, headers))
        finally:
            resp.close()
        self._verify(fill, policy, size, digest, written, headers, resp.host)
        if kept and policy.check is not None:
            try:
                policy.check(fill.temp, headers, digest)
            except BaseException:
                fill.temp.unlink(missing_ok=True)
                raise
        # Verified: the readers may have the last byte now. The fsync (tens of ms for a large
        # blob) and the commit happen while it travels; a request arriving meanwhile waits for
        # the commit and is a HIT (_join).
        fill.verified(digest)
        if not kept or not self._synced(fill):
            fill.finished(None)  # every reader got the whole, verified body; nothing is kept
            return
        fill.commit(lambda: self._blobs.commit(fill.temp, digest))
        entry = Entry(fill.key, backend, 200, digest, written, headers, now, fresh_until, now)
        self._index.put(entry)
        self._forget(fill)  # first: a request from now on finds the entry, a HIT
        fill.finished(entry)
        log.debug("committed %s (%d bytes, sha256:%s)", fill.key, written, digest)

    def _write(self, fill: Fill, resp: Fetched, backend: str,
               head: FillHead) -> tuple[str, int, bool]:
        """Stream the body to the temp file, hashing as it goes.

        Returns (sha256, length, kept). If the disk fills up, the fill spills: the readers get
        the rest from memory, and ``kept`` is False (nothing may be committed)."""
        temp = fill.temp
        sha = Hasher()
        written = 0
        spilled = False
        try:
            with open(temp, "wb", buffering=0) as f:
                fill.started(head)  # only now: readers open the temp file as soon as they wake
                for chunk in resp.chunks():
                    if not spilled:
                        spilled = not self._write_or_spill(fill, f, chunk, written)
                    if spilled:
                        fill.hand_over(chunk, written + len(chunk))
                    sha.update(chunk)
                    written += len(chunk)
                    self._observer.upstream_bytes(backend, len(chunk))
                    if not spilled:
                        fill.advanced(written)
        except BaseException:
            sha.hexdigest()  # stops its thread
            temp.unlink(missing_ok=True)
            raise
        if spilled:
            fill.wait_opened()
            temp.unlink(missing_ok=True)  # readers keep their open file
        return sha.hexdigest(), written, not spilled

    def _write_or_spill(self, fill: Fill, f: Any, chunk: bytes, at: int) -> bool:
        """Write ``chunk`` at ``at``; False if the disk is full, after cutting the file back
        to ``at`` and switching ``fill`` to spilling."""
        try:
            _write_all(f, chunk)
            return True
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
        log.warning("disk full while caching %s: passing it through without keeping it", fill.key)
        f.truncate(at)  # a partly written chunk is handed over whole
        fill.spill(at)
        self._forget(fill)  # new requests start their own fetch, with their own room check
        return False

    def _synced(self, fill: Fill) -> bool:
        """fdatasync the verified temp file before it is committed; False (nothing is kept,
        the readers are not affected) if the disk refuses."""
        try:
            fd = os.open(fill.temp, os.O_RDONLY)
            try:
                os.fdatasync(fd)  # data and size; cheaper than fsync
            finally:
                os.close(fd)
            return True
        except OSError as exc:
            log.warning("not keeping %s: syncing it failed (%s)", fill.key, exc.strerror)
            self._forget(fill)
            fill.wait_opened()
            fill.temp.unlink(missing_ok=True)
            return False

    def _verify(self, fill: Fill, policy: Policy, size: int | None, digest: str,
                written: int, headers: Mapping[str, str], host: str) -> None:
        """Raise IntegrityError (and drop the temp file) unless length and digest check out.
        The message names the upstream: a client may get it as a 502 body."""
        problem = None
        announced = headers.get(policy.digest_header or "", "")
        if size is not None and written != size:
            problem = f"upstream {host} sent {written} bytes of the {size} it announced"
        elif policy.size is not None and written != policy.size:
            problem = f"upstream {host} sent {written} bytes, expected {policy.size}"
        elif policy.digest is not None and digest != policy.digest:
            problem = (f"upstream {host} sent a body of sha256 {digest}, which does not match "
                       f"the expected {policy.digest}")
        elif announced.startswith("sha256:") and announced != f"sha256:{digest}":
            problem = (f"upstream {host} sent a body of sha256 {digest}, which does not match "
                       f"its own {announced}")
        if problem:
            fill.temp.unlink(missing_ok=True)
            log.error("not caching %s: %s", fill.key, problem)
            raise IntegrityError(f"{fill.key}: {problem}", upstream=host)

    def _remember_missing(self, backend: str, key: str) -> None:
        now = time.time()
        if self._negative_ttl > 0:
            self._index.put(Entry(key, backend, 404, None, 0, {}, now,
                                  now + self._negative_ttl, now))
        else:
            self._index.delete(key)


def _write_all(f: Any, chunk: bytes) -> None:
    """Write all of ``chunk``: an unbuffered write may write less (a filling disk), and a
    short write ignored would leave the file shorter than what was hashed."""
    view = memoryview(chunk)
    while view:
        n = f.write(view)
        if not n:
            raise OSError(errno.ENOSPC, "short write")
        view = view[n:]


def _validators(entry: Entry) -> dict[str, str]:
    found = {}
    if "etag" in entry.headers:
        found["If-None-Match"] = entry.headers["etag"]
    if "last-modified" in entry.headers:
        found["If-Modified-Since"] = entry.headers["last-modified"]
    return found


def kept_headers(headers: Mapping[str, str],
                 only: tuple[str, ...] = KEPT_HEADERS) -> dict[str, str]:
    return {name: headers[name] for name in only if headers.get(name)}


