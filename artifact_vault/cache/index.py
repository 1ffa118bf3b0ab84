"""The SQLite index: cache key -> blob digest, size, headers and freshness.

The index is what makes start-up instant (no tree scan) and what lets two keys share one blob.
Writes go through one connection behind a lock: every one is a single-row write, far cheaper
than the request around it. Lookups on the request path use connections of their own (WAL
readers never wait for the writer): SQLite lets go of the GIL for each statement, and taking
it back takes tens of ms while a cold install keeps many threads busy, so one lock held across
that wait made every lookup queue behind the others (up to a second per page, measured).
Last-access times change on every hit, so they are kept in memory and written in batches.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key          TEXT PRIMARY KEY,
    backend      TEXT NOT NULL,
    status       INTEGER NOT NULL,      -- 200, or 404 for a negative entry
    digest       TEXT,                  -- sha256 hex of the blob; NULL for a negative entry
    size         INTEGER NOT NULL,
    headers      TEXT NOT NULL,         -- JSON: content-type, etag, last-modified, ...
    fetched_at   REAL NOT NULL,
    fresh_until  REAL,                  -- NULL: immutable, never revalidated
    last_access  REAL NOT NULL,
    hits         INTEGER NOT NULL DEFAULT 0  -- requests served from this entry
);
CREATE INDEX IF NOT EXISTS entries_lru ON entries (last_access);
CREATE INDEX IF NOT EXISTS entries_digest ON entries (digest);
-- for the status page: per-backend totals (covering) and the most requested entries
CREATE INDEX IF NOT EXISTS entries_backend ON entries (backend, size);
CREATE INDEX IF NOT EXISTS entries_hits ON entries (hits);
"""
_TOUCH_FLUSH_SECONDS = 5.0
_READER_CACHE_KIB = 256
# Lookups are remembered this long: a hot key is read from SQLite once a second, not once per
# request. Writes through this Index forget the key at once; another process's writes (the
# CLI) are seen within this time.
_RECENT_SECONDS = 1.0
_RECOUNT_SECONDS = 60.0


@dataclass(frozen=True)
class Entry:
    key: str
    backend: str
    status: int
    digest: str | None
    size: int
    headers: Mapping[str, str] = field(default_factory=dict)
    fetched_at: float = 0.0
    fresh_until: float | None = None
    last_access: float = 0.0
    hits: int = 0

    @property
    def immutable(self) -> bool:
        return self.fresh_until is None

    def is_fresh(self, now: float) -> bool:
        return self.fresh_until is None or now < self.fresh_until


class Index:
    """Thread-safe access to the entries table of one cache directory."""

    def __init__(self, path: Path) -> None:
        self.path = path  # the catalog reads it over a connection of its own
        self._lock = threading.Lock()
        if not path.exists():
            # A deleted index starts empty (its blobs stay unused until fetched again); a WAL
            # left behind by the old file must not be replayed into the new one.
            for stale in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                stale.unlink(missing_ok=True)
        self._db = _connect(path)
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._writes = 0  # counts writes: a lookup that raced one is not remembered
        self._recent_lock = threading.Lock()  # never held across a statement
        try:
            self._db.execute("PRAGMA journal_mode=WAL")  # readers in other processes never block
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(entries)")}
            if "hits" not in columns:  # an index written before hits were counted
                self._db.execute("ALTER TABLE entries ADD COLUMN hits INTEGER NOT NULL DEFAULT 0")
        except sqlite3.DatabaseError as exc:
            # Refuse rather than guess: a damaged index could map a key to the wrong blob.
            self._db.close()
            raise ConfigError(f"config.cache_dir: {path} is not a usable SQLite index ({exc}); "
                              "move it away and restart; the cache will be refilled") from None
        self._touched: dict[str, tuple[float, int]] = {}
        # Every hit notes itself here: under a lock of its own, so hits never queue behind a
        # query or commit holding the database lock (under load they convoyed on it).
        self._touch_lock = threading.Lock()
        self._last_flush = time.monotonic()
        self._recent: dict[str, tuple[float, Entry | None]] = {}
        self._swept = time.monotonic()
        with self._lock:
            self._recount()

    def close(self) -> None:
        self.flush_access()
        with self._lock:
            self._db.close()
            while not self._readers.empty():
                self._readers.get_nowait().close()

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection of the pool; a new one when all are in use (at most one
        per thread that looks something up at the same moment)."""
        try:
            db = self._readers.get_nowait()
        except queue.Empty:
            db = _connect(self.path)
            db.execute("PRAGMA query_only = ON")
            # Point lookups touch a few pages each, and the OS caches the file: a reader needs
            # no 2 MiB page cache of its own, and there may be one per server thread.
            db.execute(f"PRAGMA cache_size = -{_READER_CACHE_KIB}")
        try:
            yield db
        finally:
            self._readers.put(db)

    def get(self, key: str) -> Entry | None:
        now = time.monotonic()
        recent = self._recent.get(key)
        if recent is not None and now - recent[0] < _RECENT_SECONDS:
            return recent[1]
        writes = self._writes
        with self._reader() as db:
            row = db.execute("SELECT * FROM entries WHERE key = ?", (key,)).fetchone()
        entry = _entry(row) if row else None
        with self._recent_lock:
            if now - self._swept > _RECENT_SECONDS:
                # Only the last second's lookups are of use: memory follows the keys asked
                # for lately, not every key ever asked for (bench/load.py --soak).
                self._recent = {k: v for k, v in self._recent.items()
                                if now - v[0] < _RECENT_SECONDS}
                self._swept = now
            if writes == self._writes:  # else a write may have come after this read
                self._recent[key] = (now, entry)
        return entry

    def reread(self, key: str) -> Entry | None:
        """``get`` past the lookup memo: what the database says now, other processes'
        writes included."""
        self._recent.pop(key, None)
        return self.get(key)

    def put(self, entry: Entry) -> None:
        with self._lock:
            old = self._row_blob(entry.key)
            shared = entry.digest is not None and self._in_use(entry.digest)
            # A refetch replaces the body but keeps the key's hit count.
            self._db.execute(
                "INSERT INTO entries VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (key) DO UPDATE SET "
                "backend = excluded.backend, status = excluded.status, digest = excluded.digest, "
                "size = excluded.size, headers = excluded.headers, "
                "fetched_at = excluded.fetched_at, fresh_until = excluded.fresh_until, "
                "last_access = excluded.last_access",
                (entry.key, entry.backend, entry.status, entry.digest, entry.size,
                 json.dumps(dict(entry.headers)), entry.fetched_at, entry.fresh_until,
                 entry.last_access, entry.hits))
            self._count += 0 if old else 1
            if entry.digest is not None and not shared:
                self._bytes += entry.size
            self._release(old)
            with self._touch_lock:
                self._touched.pop(entry.key, None)
            self._forget(entry.key)

    def delete(self, key: str) -> None:
        with self._lock:
            old = self._row_blob(key)
            self._db.execute("DELETE FROM entries WHERE key = ?", (key,))
            self._count -= 1 if old else 0
            self._release(old)
            with self._touch_lock:
                self._touched.pop(key, None)
            self._forget(key)

    def _forget(self, key: str) -> None:
        """After a write: the key's remembered lookup is out of date, and so is any lookup
        that read the database before this write."""
        with self._recent_lock:
            self._recent.pop(key, None)
            self._writes += 1

    # Running totals, so the evictor (once per fill) need not sum the whole table. Callers
    # hold the lock. Another process's writes (the CLI) are caught by a periodic recount.

    def _row_blob(self, key: str) -> tuple[str | None, int] | None:
        row = self._db.execute("SELECT digest, size FROM entries WHERE key = ?", (key,)).fetchone()
        return (row[0], row[1]) if row else None

    def _in_use(self, digest: str) -> bool:
        return self._db.execute("SELECT 1 FROM entries WHERE digest = ? LIMIT 1",
                                (digest,)).fetchone() is not None

    def _release(self, old: tuple[str | None, int] | None) -> None:
        if old is not None and old[0] is not None and not self._in_use(old[0]):
            self._bytes -= old[1]

    def _recount(self) -> None:
        self._count = self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        self._bytes = self._db.execute(
            "SELECT COALESCE(SUM(size), 0) FROM (SELECT DISTINCT digest, size FROM entries "
            "WHERE digest IS NOT NULL)").fetchone()[0]
        self._counted_at = time.monotonic()

    def refresh(self, key: str, fresh_until: float | None, headers: Mapping[str, str]) -> None:
        """Record a successful revalidation (a 304): new freshness, possibly new validators."""
        with self._lock:
            self._db.execute(
                "UPDATE entries SET fresh_until = ?, headers = ?, fetched_at = ? WHERE key = ?",
                (fresh_until, json.dumps(dict(headers)), time.time(), key))
            self._forget(key)

    def touch(self, key: str) -> None:
        """Note a hit (for LRU and hit counts); written to disk at most every few seconds."""
        now = time.time()
        with self._touch_lock:
            self._touched[key] = (now, self._touched.get(key, (0.0, 0))[1] + 1)
            due = time.monotonic() - self._last_flush > _TOUCH_FLUSH_SECONDS
        if due:
            self.flush_access()

    def flush_access(self) -> None:
        with self._touch_lock:
            touched, self._touched = self._touched, {}
            self._last_flush = time.monotonic()
        if touched:
            with self._lock:
                self._db.executemany(
                    "UPDATE entries SET last_access = ?, hits = hits + ? WHERE key = ?",
                    [(t, n, k) for k, (t, n) in touched.items()])

    def keys_under(self, prefix: str) -> list[str]:
        """Keys with a positive entry that start with ``prefix``: a range search on the primary
        key, so the cost follows what is cached, not how many keys could be."""
        with self._reader() as db:
            rows = db.execute("SELECT key FROM entries WHERE status = 200 AND key >= ? "
                              "AND key < ?", (prefix, prefix + "\U0010ffff")).fetchall()
        return [r[0] for r in rows]

    def digest_in_use(self, digest: str) -> bool:
        with self._lock:
            return self._in_use(digest)

    def totals(self) -> tuple[int, int]:
        """(entries, bytes of distinct blobs): what the cache holds on disk."""
        with self._lock:
            if time.monotonic() - self._counted_at > _RECOUNT_SECONDS:
                self._recount()
            return self._count, self._bytes

    def least_recent(self, limit: int = 100) -> Iterator[Entry]:
        """Oldest-accessed entries first: the eviction order."""
        self.flush_access()
        with self._lock:
            rows = self._db.execute("SELECT * FROM entries ORDER BY last_access LIMIT ?",
                                    (limit,)).fetchall()
        return (_entry(r) for r in rows)

    def scan(self, batch: int = 1000) -> Iterator[Entry]:
        """Every entry, in key order, read in batches: the lock is held for one batch at a
        time, so a full scan by a maintenance command never stalls the server's lookups."""
        self.flush_access()
        after = ""
        while True:
            with self._lock:
                rows = self._db.execute("SELECT * FROM entries WHERE key > ? ORDER BY key LIMIT ?",
                                        (after, batch)).fetchall()
            if not rows:
                return
            yield from (_entry(r) for r in rows)
            after = rows[-1][0]

    def healthy(self) -> bool:
        try:
            with self._lock:
                self._db.execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)


def _entry(row: tuple) -> Entry:
    key, backend, status, digest, size, headers, fetched_at, fresh_until, last_access, hits = row
    return Entry(key, backend, status, digest, size, json.loads(headers), fetched_at,
                 fresh_until, last_access, hits)
