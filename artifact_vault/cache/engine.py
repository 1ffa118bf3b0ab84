"""The cache engine every backend uses: lookup, freshness, single-flight fills.

A backend turns a request into a cache key, a ``Policy`` (how long the artifact stays fresh,
which digest it must have) and a ``Fetch`` (how to ask the upstream). The engine does the rest,
the same way for every backend:

    hit, fresh or immutable  -> served from disk, no upstream contact
    hit, expired             -> one conditional GET (304 refreshes it; error serves it STALE)
    negative hit (404)       -> 404 until it expires
    miss                     -> one upstream GET however many clients ask; all stream it
    offline                  -> hits only; a miss is an ``OfflineMiss``
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..config import CacheSettings
from ..errors import OfflineMiss, UpstreamError, UpstreamNotFound, VaultError
from .blobs import BlobStore
from .eviction import Evictor
from .download import Download, NoRoom, kept_headers
from .fill import Fill
from .index import Entry, Index
from .keylock import KeyLocks
from .streams import Fetch, Verified, content_length, read_file, upstream_range

log = logging.getLogger(__name__)

# A range longer than this (a resumed download) waits for the fill, see ``Served.open``.
_PASS_RANGE_MAX = 16 * 1024 * 1024


@dataclass(frozen=True)
class Policy:
    """How one artifact is cached. ``ttl=None`` marks it immutable: never revalidated."""

    ttl: float | None = None
    offline: bool = False
    digest: str | None = None  # expected sha256 hex, when the backend knows it
    size: int | None = None  # expected length, when the backend knows it
    digest_header: str | None = None  # an upstream header naming the body's "sha256:<hex>"
    # Called with the downloaded file, its headers and its sha256 before it is committed;
    # raises UpstreamError if the body is unusable (a page that does not parse), so it is not
    # kept and an expired copy is served instead. (The digest lets a backend keep what it
    # parsed under the name the committed entry will have.)
    check: Callable[[Path, Mapping[str, str], str], None] | None = None


class Observer(Protocol):
    """What the engine reports to metrics; ``metrics.Metrics`` is one."""

    def fill_started(self) -> None: ...

    def fill_ended(self) -> None: ...

    def upstream_bytes(self, backend: str, n: int) -> None: ...


@dataclass
class Served:
    """The engine's answer: a complete file, a fill in progress, or a pass-through stream."""

    cache_status: str  # HIT, MISS, STALE, REVALIDATED or BYPASS
    size: int | None
    headers: Mapping[str, str]
    path: str | None = None  # a str, not a Path: built on every hit
    fill: Fill | None = None
    stream: Verified | None = None
    fetched_at: float | None = None
    digest: str | None = None  # sha256 hex of the body, when known before it is sent
    entry: Entry | None = None  # the index entry a HIT is served from (see ``still_current``)
    fetch: Fetch | None = None  # a fill's: asks the upstream for a range it has not reached

    def open(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The body bytes [start, end): from disk, from the growing fill, or from upstream.

        A short range that the fill has not reached yet is asked of the upstream as a range:
        uv reading a wheel's metadata from its end, or containerd fetching a layer in
        parallel ranges, would otherwise wait for the whole download. A long one (a resumed
        download) waits for the fill rather than fetch its bytes twice."""
        if self.fill is not None:
            if (self.fetch is not None and self.size is not None and start > 0
                    and (end or self.size) - start <= _PASS_RANGE_MAX
                    and not self.fill.reached(start)):
                ranged = upstream_range(self.fetch, start, (end or self.size) - 1)
                if ranged is not None:
                    self.fill.release()
                    return ranged
            return self.fill.read(start, end)
        if self.stream is not None:
            return iter(self.stream)  # type: ignore[call-overload]
        assert self.path is not None
        return read_file(self.path, start, end)

    def discard(self) -> None:
        """The body will not be sent (HEAD, 304, 416): release a pass-through's connection,
        or a fill's hold on its temp file."""
        if self.stream is not None:
            self.stream.close()
        if self.fill is not None:
            self.fill.release()


class Cache:
    def __init__(self, root: Path, settings: CacheSettings, observer: Observer) -> None:
        self.settings = settings
        self.blobs = BlobStore(root)
        self.index = Index(root / "index.sqlite")
        self.evictor = Evictor(self.index, self.blobs, settings)
        self._observer = observer
        self._fills: dict[str, Fill] = {}
        self._closed = False  # a fill failing from now on was cut short by the stop
        self._lock = threading.Lock()
        self._key_locks = KeyLocks(root / "locks")
        self._download = Download(self.index, self.blobs, self.evictor, observer,
                                  settings.negative_ttl, self._forget)
        removed = self.blobs.clean_temp()
        if removed:
            log.info("removed %d temp files left by an earlier run", removed)

    def close(self) -> None:
        self._closed = True
        self.index.close()
        self.blobs.clean_temp()  # fills cut short by the stop: their files are of no use

    def fills_in_progress(self) -> int:
        with self._lock:
            return len(self._fills)

    def get(self, backend: str, key: str, policy: Policy, fetch: Fetch, *,
            wait_commit: bool = True) -> Served:
        """Serve ``key`` from the cache, fetching it with ``fetch`` if needed.

        ``wait_commit``: a fill found already verified is waited for until it is committed
        and served from its blob (a few ms for most bodies); False: the request that started
        the fill is served from it as it is (``get_complete(committed=False)``: a small page
        is often verified before its own request gets here, and must not wait for the fsync)."""
        now = time.time()
        entry = self.index.get(key)
        if entry is not None and entry.status != 200:
            # Only the backend that was told 404 remembers it: a key shared by backends (a
            # registry blob) may well be in another backend's upstream.
            if entry.is_fresh(now) and entry.backend == backend:
                raise UpstreamNotFound(f"{key} is not found upstream (remembered)")
            entry = None
        path = None if entry is None else self.blobs.present(entry.digest or "", entry.size)
        if entry is not None and path is None:
            log.warning("cached blob of %s is missing or truncated; fetching it again", key)
            self.index.delete(key)
            entry = None
        if entry is not None and (entry.is_fresh(now) or policy.offline):
            self.index.touch(key)
            return self._hit(entry, "HIT" if entry.is_fresh(now) else "STALE", path)
        if policy.offline:
            raise OfflineMiss(f"offline mode is on and {key} is not cached")
        try:
            served = self._join(backend, key, policy, fetch, entry, wait_commit)
            if entry is not None and served.fill is not None:
                return self._replaced(key, served)
            return served
        except UpstreamError as exc:
            if entry is not None and now - (entry.fresh_until or now) <= self.settings.max_stale:
                log.warning("serving stale %s: %s", key, exc)
                return self._hit(entry, "STALE")
            raise
        except NoRoom:
            resp = fetch({})
            return Served("BYPASS", content_length(resp.headers), kept_headers(resp.headers),
                          stream=Verified(resp, policy.size, policy.digest), digest=policy.digest)

    def cached(self, key: str) -> bool:
        """Whether ``key`` has a usable copy (fresh or not): lets a backend skip work that is
        only needed to fetch."""
        entry = self.index.get(key)
        return (entry is not None and entry.status == 200
                and self.blobs.has(entry.digest or "", entry.size))

    def alias(self, key: str, new_key: str) -> None:
        """Record ``new_key`` as an immutable name for the body cached under ``key`` (a
        manifest fetched by tag is also its digest's manifest)."""
        entry = self.index.get(key)
        if entry is not None and entry.status == 200:
            self.index.put(dataclasses.replace(entry, key=new_key, fresh_until=None))

    def get_complete(self, backend: str, key: str, policy: Policy, fetch: Fetch,
                     committed: bool = True) -> Served:
        """Like ``get``, but wait for the whole body: for bodies Vault itself parses.

        ``committed``: wait until it is in the index too (the caller needs its entry or blob
        path). Otherwise return once it is verified, its fsync and commit still running: a
        PyPI page the ``check`` has already parsed is answered that much sooner (tens of ms
        per page while wheels are being written), and its body reads from the fill."""
        served = self.get(backend, key, policy, fetch, wait_commit=committed)
        if served.fill is None:
            return served
        served.discard()  # read from the committed entry below (or anew from the fill)
        if not committed and served.fill.wait_verified():  # raises the fill's own error
            return dataclasses.replace(served, digest=served.fill.digest)
        served.fill.wait_done()  # raises the fill's own error: nothing was sent yet
        if served.fill.entry is None:
            raise UpstreamError(f"disk full: could not keep {key}")
        done = self.get(backend, key, dataclasses.replace(policy, offline=True), fetch)
        return dataclasses.replace(done, cache_status=served.cache_status)

    def _replaced(self, key: str, served: Served) -> Served:
        """An expired copy is being replaced: wait for the new one to be committed before
        sending a byte, so that an upstream failing mid-body serves the old copy (STALE, by
        the caller) instead of a broken transfer. Expiring files are index files and pages,
        small next to the artifacts they list, so the wait is short."""
        fill = served.fill
        assert fill is not None
        fill.release()  # read from the committed entry, not from the fill
        fill.wait_done()  # raises the fill's error
        if fill.entry is None:  # passed through, not kept (disk full): the old copy it is
            raise UpstreamError(f"could not keep the new copy of {key} (disk full)")
        return self._hit(fill.entry, "MISS")

    def _hit(self, entry: Entry, status: str, path: str | None = None) -> Served:
        assert entry.digest is not None
        return Served(status, entry.size, entry.headers, path=path or self.blobs.file(entry.digest),
                      fetched_at=entry.fetched_at, digest=entry.digest, entry=entry)

    def still_current(self, entry: Entry) -> bool:
        """Whether a HIT served from ``entry`` may be sent again as it was, and if so count it.

        True while the index still holds this very object: every write through this process
        replaces or drops it, and a lookup older than the index's memo (a second) reads a new
        one, so another process's purge is seen within a second, as by ``get``."""
        if self.index.get(entry.key) is not entry or not entry.is_fresh(time.time()):
            return False
        self.index.touch(entry.key)
        return True

    def start(self, backend: str, key: str, policy: Policy, fetch: Fetch) -> None:
        """Start filling ``key`` unless a fill of it is running, without waiting for it or
        reading it: for a client that will ask for the body in a moment (uv's HEAD before its
        ranges). A key committed meanwhile is not fetched again (``_filled_elsewhere``)."""
        with self._lock:
            if key not in self._fills:
                fill = self._fills[key] = Fill(key, self.blobs.new_temp())
                self._spawn(fill, backend, policy, fetch, None)

    def _spawn(self, fill: Fill, backend: str, policy: Policy, fetch: Fetch,
               stale: Entry | None) -> None:
        # copy_context: the fill's log lines carry the id of the request that started it
        threading.Thread(target=contextvars.copy_context().run, name=f"fill {fill.key[:60]}",
                         daemon=True,
                         args=(self._run, fill, backend, policy, fetch, stale)).start()

    def _join(self, backend: str, key: str, policy: Policy, fetch: Fetch,
              stale: Entry | None, wait_commit: bool = True) -> Served:
        """Wait for the fill of ``key``, starting it if no one has yet."""
        with self._lock:
            fill = self._fills.get(key)
            start = fill is None
            if fill is None:
                fill = self._fills[key] = Fill(key, self.blobs.new_temp())
            fill.join()
            if start:
                self._spawn(fill, backend, policy, fetch, stale)
        head = fill.wait_head()
        # Verified already: a few ms from a HIT, so wait, unless this request started the
        # fill and must not wait for its fsync (get_complete(committed=False)).
        if (wait_commit or not start) and not isinstance(head, Entry) and fill.committing:
            fill.release()
            fill.wait_done()
            if fill.entry is None:
                raise UpstreamError(f"could not keep {key} (disk full or failing)")
            if start:  # the request that asked for the download: a small body can be
                return self._hit(fill.entry, "MISS")  # committing before it gets here
            self.index.touch(key)
            return self._hit(fill.entry, "HIT")
        if isinstance(head, Entry):
            return self._hit(head, "HIT" if fill.filled_elsewhere else "REVALIDATED")
        return Served("MISS", head.size, head.headers, fill=fill, fetched_at=time.time(),
                      digest=policy.digest, fetch=fetch)

    def _run(self, fill: Fill, backend: str, policy: Policy, fetch: Fetch,
             stale: Entry | None) -> None:
        """The fill thread: fetch, stream to the temp file, verify, commit."""
        self._observer.fill_started()
        try:
            with self._key_locks.hold(fill.key):
                if not self._filled_elsewhere(fill):
                    self._download.run(fill, backend, policy, fetch, stale)
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the readers
            if self._closed:
                log.info("fill of %s cut short by the stop", fill.key)
            elif not isinstance(exc, (VaultError, NoRoom)):
                log.exception("fill of %s failed", fill.key)
            self._forget(fill)  # first: the next request must start a new fill
            fill.failed(exc)
        finally:
            self._observer.fill_ended()

    def _filled_elsewhere(self, fill: Fill) -> bool:
        """Under the key's lock: end ``fill`` with the entry another process committed, if any.

        Single-flight across processes (the server and ``artifact-vault prefetch`` on one
        cache): whoever fills a key holds its file lock (``keylock``), so by the time we hold
        it, a fill by another process is committed. The index is read again, past its 1 s
        lookup memo, which may still say "missing" or "expired". One SQLite read per miss;
        hits never get here."""
        entry = self.index.reread(fill.key)
        if (entry is None or entry.status != 200 or not entry.is_fresh(time.time())
                or not self.blobs.has(entry.digest or "", entry.size)):
            return False
        fill.filled_elsewhere = True
        self._forget(fill)
        fill.finished(entry)
        return True

    def _forget(self, fill: Fill) -> None:
        with self._lock:
            if self._fills.get(fill.key) is fill:
                del self._fills[fill.key]


