"""Day-2 work on an opened cache: stats, prune, verify and purge, as plain functions.

Everything here runs while a server uses the same cache directory. The index is SQLite in WAL
mode (other processes read and write it safely); a server sees another process's writes within
about a second (its lookup memo) and refetches an entry whose blob file has gone. So removing an
entry is always: delete the index row, then delete the blob file if no other row still names
that digest. The CLI (``commands.py``) and the admin endpoints (``admin.py``) both call these.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .cache.blobs import BlobStore
from .cache.eviction import drop_if_unused
from .cache.index import Entry, Index
from .catalog import Catalog

_HASH_CHUNK = 1024 * 1024


@dataclass
class BackendStats:
    """One backend's share of the cache.

    ``hit_ratio`` is hits / (hits + entries): each entry cost one upstream fetch (a miss) when
    it was filled, and ``hits`` counts the requests served from it since. Entries evicted or
    purged take their history with them, so this is the ratio of what the cache holds now."""

    backend: str
    entries: int = 0  # positive entries (a body on disk)
    negative: int = 0  # remembered upstream 404s
    bytes: int = 0  # sum of entry sizes (a blob shared by two entries counts twice)
    hits: int = 0
    oldest: float | None = None  # fetched_at of the oldest positive entry
    newest: float | None = None

    @property
    def hit_ratio(self) -> float | None:
        return self.hits / (self.hits + self.entries) if self.entries else None

    def as_json(self) -> dict[str, object]:
        return {"backend": self.backend, "entries": self.entries, "negative": self.negative,
                "bytes": self.bytes, "hits": self.hits, "hit_ratio": self.hit_ratio,
                "oldest": self.oldest, "newest": self.newest}


def stats(index: Index) -> list[BackendStats]:
    """Per-backend figures, sorted by backend name."""
    by_backend: dict[str, BackendStats] = {}
    for e in index.scan():
        s = by_backend.setdefault(e.backend, BackendStats(e.backend))
        if e.status != 200:
            s.negative += 1
            continue
        s.entries += 1
        s.bytes += e.size
        s.hits += e.hits
        s.oldest = e.fetched_at if s.oldest is None else min(s.oldest, e.fetched_at)
        s.newest = e.fetched_at if s.newest is None else max(s.newest, e.fetched_at)
    return [by_backend[k] for k in sorted(by_backend)]


def stats_json(index: Index) -> dict[str, object]:
    """The stats as ``stats --json`` and ``GET /-/admin/stats`` print them."""
    entries, size = index.totals()
    return {"backends": [s.as_json() for s in stats(index)],
            "total": {"entries": entries, "blob_bytes": size}}


def remove(index: Index, blobs: BlobStore, entries: Iterable[Entry]) -> int:
    """Remove entries; returns the bytes of blob files deleted (a shared blob stays)."""
    freed = 0
    for entry in entries:
        index.delete(entry.key)
        try:
            size = blobs.path(entry.digest).stat().st_size if entry.digest else 0
        except OSError:
            size = 0
        if drop_if_unused(index, blobs, entry.digest):
            freed += size
    return freed


def select_prune(index: Index, now: float, older_than: float | None,
                 max_size: int | None) -> list[Entry]:
    """Entries to prune: those not used for ``older_than`` seconds, then least recently used
    ones until the distinct blob bytes left fit ``max_size``."""
    entries = sorted(index.scan(), key=lambda e: e.last_access)
    chosen = [e for e in entries if older_than is not None and e.last_access < now - older_than]
    if max_size is not None:
        gone = {e.key for e in chosen}
        uses = Counter(e.digest for e in entries if e.digest and e.key not in gone)
        sizes = {e.digest: e.size for e in entries if e.digest}
        held = sum(sizes[d] for d in uses)
        for e in entries:
            if held <= max_size:
                break
            if e.key in gone:
                continue
            chosen.append(e)
            if e.digest:
                uses[e.digest] -= 1
                if uses[e.digest] == 0:
                    held -= sizes[e.digest]
    return chosen


def purge(index: Index, blobs: BlobStore, catalog: Catalog, pattern: str,
          dry_run: bool = False) -> tuple[list[tuple[Entry, str]], int]:
    """Remove every entry with a client path (or, failing one, a key) matching ``pattern``.
    Returns (entry, matched name) pairs and the blob bytes freed."""
    found = catalog.matching(pattern, index.scan())
    freed = 0 if dry_run else remove(index, blobs, (e for e, _ in found))
    return found, freed


@dataclass
class VerifyReport:
    blobs: int = 0  # distinct blobs checked
    bytes: int = 0
    bad: dict[str, str] = field(default_factory=dict)  # digest -> why ("missing", "corrupt")
    removed: list[Entry] = field(default_factory=list)  # entries that named a bad blob


def verify(index: Index, blobs: BlobStore,
           progress: Callable[[int], None] = lambda n: None) -> VerifyReport:
    """Re-hash every blob the index names; a blob that is missing, of the wrong size or whose
    content does not match its name is deleted with every entry that names it (the server then
    refetches it on the next request)."""
    report = VerifyReport()
    by_digest: dict[str, list[Entry]] = {}
    for e in index.scan():
        if e.digest:
            by_digest.setdefault(e.digest, []).append(e)
    for digest, entries in by_digest.items():
        problem = _check_blob(blobs, digest, entries[0].size)
        report.blobs += 1
        report.bytes += entries[0].size
        progress(entries[0].size)
        if problem is None:
            continue
        report.bad[digest] = problem
        for e in entries:
            current = index.get(e.key)
            if current is not None and current.digest == digest:  # not refetched meanwhile
                index.delete(e.key)
                report.removed.append(e)
        drop_if_unused(index, blobs, digest)
    return report


def _check_blob(blobs: BlobStore, digest: str, size: int) -> str | None:
    try:
        with open(blobs.file(digest), "rb") as f:
            if os.fstat(f.fileno()).st_size != size:
                return "wrong size"
            sha = hashlib.sha256()
            while chunk := f.read(_HASH_CHUNK):
                sha.update(chunk)
    except FileNotFoundError:
        return "missing"
    return None if sha.hexdigest() == digest else "corrupt"
