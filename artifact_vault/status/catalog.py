"""The catalog: what is cached, per backend, paged in SQL over the index.

Caches hold hundreds of thousands of entries, so nothing here lists a directory or loads a
whole backend into Python. An item (a repository, a project, a path) is a group of index rows
whose keys share a prefix (``CatalogShape``); every query is a range scan of the primary key
over that prefix, grouped by the item name, with LIMIT/OFFSET. The catalog reads over a
connection of its own, so a long listing never holds the lock that cache lookups take.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends.base import CatalogShape
from ..errors import BadRequest

SORTS = {"name": "name ASC", "size": "size DESC, name ASC", "hits": "hits DESC, name ASC",
         "last_access": "last_access DESC, name ASC"}
MAX_PER_PAGE = 200
DEFAULT_PER_PAGE = 50
MAX_MEMBERS = 500  # members shown in one item's detail view


@dataclass(frozen=True)
class Query:
    """One catalog listing request, validated: bad parameters are a 400, never a guess."""

    backend: str
    q: str = ""
    sort: str = "name"
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE

    @classmethod
    def parse(cls, params: Mapping[str, str], backend: str) -> Query:
        sort = params.get("sort", "name") or "name"
        if sort not in SORTS:
            raise BadRequest(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
        page = _number(params, "page", 1, 1, 10**9)
        per_page = _number(params, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
        q = params.get("q", "").strip()
        if len(q) > 200:
            raise BadRequest("q is longer than 200 characters")
        return cls(backend, q, sort, page, per_page)


@dataclass(frozen=True)
class Item:
    """One row of a listing: an item and the totals of its cached members."""

    name: str
    entries: int
    size: int  # bytes of its index rows (for images: the manifests; see images.py)
    hits: int
    last_access: float


@dataclass(frozen=True)
class Member:
    """One cached entry of an item (a tag or digest, a file, the path itself)."""

    key: str
    facts: Mapping[str, str]
    digest: str | None
    size: int
    hits: int
    last_access: float
    fetched_at: float
    fresh_until: float | None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    query: Query
    kind: str
    total: int
    items: list[Item]

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.query.per_page))


class Catalog:
    """Read-only queries over the index of one cache directory. Thread-safe."""

    def __init__(self, index_path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(index_path), check_same_thread=False,
                                   isolation_level=None, timeout=30)
        self._db.execute("PRAGMA query_only = 1")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _rows(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def count(self, shape: CatalogShape) -> int:
        """How many items a backend has."""
        return int(self._rows(f"SELECT COUNT(DISTINCT name) FROM ({_rows_sql(shape)})",
                              _bounds(shape.key_prefix))[0][0])

    def page(self, shape: CatalogShape, query: Query) -> Page:
        where, params = "", _bounds(shape.key_prefix)
        if query.q:
            # instr, not LIKE: '%' and '_' in a search are literal characters.
            where, params = "WHERE instr(lower(name), ?) > 0", (*params, query.q.lower())
        rows_sql = f"SELECT * FROM ({_rows_sql(shape)}) {where}"
        limit = (*params, query.per_page, (query.page - 1) * query.per_page)
        if shape.name_ends:
            total = self._rows(f"SELECT COUNT(DISTINCT name) FROM ({rows_sql})", params)[0][0]
            rows = self._rows(
                f"SELECT name, COUNT(*), SUM(size) AS size, SUM(hits) AS hits, "
                f"MAX(last_access) AS last_access FROM ({rows_sql}) GROUP BY name "
                f"ORDER BY {SORTS[query.sort]} LIMIT ? OFFSET ?", limit)
        else:
            # One row per item, and key order is name order: sorted by name, a page is read
            # straight off the primary-key index, with no sort and no grouping.
            total = self._rows(f"SELECT COUNT(*) FROM ({rows_sql})", params)[0][0]
            order = SORTS[query.sort].replace("name ASC", "key ASC")
            rows = self._rows(f"SELECT name, 1, size, hits, last_access FROM ({rows_sql}) "
                              f"ORDER BY {order} LIMIT ? OFFSET ?", limit)
        return Page(query, shape.kind, int(total), [Item(*row) for row in rows])

    def members(self, shape: CatalogShape, name: str) -> list[Member]:
        """The cached entries of one item, in key order (at most ``MAX_MEMBERS``)."""
        prefix = shape.key_prefix + name
        rows = self._rows(
            f"SELECT key, digest, size, hits, last_access, fetched_at, fresh_until, headers "
            f"FROM ({_rows_sql(shape, extra=', digest, fetched_at, fresh_until, headers')}) "
            f"WHERE name = ? ORDER BY key LIMIT ?",
            (*_bounds(prefix), name, MAX_MEMBERS))
        cut = len(prefix)
        return [Member(key, shape.member(key[cut:]), digest, size, hits, last_access,
                       fetched_at, fresh_until, _json_headers(headers))
                for key, digest, size, hits, last_access, fetched_at, fresh_until, headers
                in rows]

    def entry(self, key: str) -> tuple[str | None, int] | None:
        """(digest, size) of a positive entry: the registry's manifests and configs."""
        rows = self._rows("SELECT digest, size FROM entries WHERE key = ? AND status = 200",
                          (key,))
        return (rows[0][0], rows[0][1]) if rows else None

    def backend_totals(self) -> dict[str, tuple[int, int]]:
        """(entries, bytes) per backend, from the covering (backend, size) index."""
        rows = self._rows("SELECT backend, COUNT(*), COALESCE(SUM(size), 0) FROM entries "
                          "GROUP BY backend", ())
        return {backend: (count, size) for backend, count, size in rows}

    def most_requested(self, limit: int = 10) -> list[tuple[str, str, int, int]]:
        """(backend, key, hits, size) of the entries served most often from the cache."""
        return [tuple(row) for row in self._rows(  # type: ignore[misc]
            "SELECT backend, key, hits, size FROM entries WHERE hits > 0 AND status = 200 "
            "ORDER BY hits DESC LIMIT ?", (limit,))]

    def plan(self, shape: CatalogShape) -> list[str]:
        """SQLite's plan for a listing: the tests check it searches an index, never scans."""
        rows = self._rows(f"EXPLAIN QUERY PLAN SELECT name FROM ({_rows_sql(shape)})",
                          _bounds(shape.key_prefix))
        return [str(row[-1]) for row in rows]


def _rows_sql(shape: CatalogShape, extra: str = "") -> str:
    """The positive index rows of one shape, with their item ``name`` computed from the key;
    two bound parameters: the key range."""
    return (f"SELECT {_name_sql(shape)} AS name, key, size, hits, last_access{extra} "
            "FROM entries WHERE key >= ? AND key < ? AND status = 200")


def _name_sql(shape: CatalogShape) -> str:
    """SQL for the item name: the key after ``key_prefix``, up to the first of ``name_ends``.

    Every end character is first replaced by the first one, so one ``instr`` finds the
    earliest of them."""
    rest = f"substr(key, {len(shape.key_prefix) + 1})"
    if not shape.name_ends:
        return rest
    first = _literal(shape.name_ends[0])
    normalized = rest
    for char in shape.name_ends[1:]:
        normalized = f"replace({normalized}, {_literal(char)}, {first})"
    pos = f"instr({normalized}, {first})"
    return f"(CASE {pos} WHEN 0 THEN {rest} ELSE substr({rest}, 1, {pos} - 1) END)"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _bounds(prefix: str) -> tuple[str, str]:
    """The key range of everything that starts with ``prefix``: a primary-key range search."""
    return prefix, prefix + "\U0010ffff"


def _number(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name, "")
    if raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise BadRequest(f"{name} must be a whole number from {low} to {high}, not {raw!r}")
    return int(raw)


def _json_headers(text: str) -> dict[str, str]:
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in doc.items()} if isinstance(doc, dict) else {}
