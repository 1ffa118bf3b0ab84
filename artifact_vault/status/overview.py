"""The status page (``GET /``) and its JSON twin (``GET /-/api/status``).

What this Vault is, each backend with client setup for the URL the browser used, cache size
against ``max_size``, the hit ratio since start, upstream health and the most requested
artifacts. Everything is read from state Vault keeps anyway (metrics, the index's running
totals, a few indexed queries); nothing here walks the cache.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import __version__
from ..backends import BACKENDS
from ..backends.base import CatalogShape
from ..cache import Cache
from ..config import BackendSpec, Config
from ..metrics import Metrics
from ..upstream import Upstream
from . import html as h
from .browse import PAGE
from .catalog import Catalog
from .clients import Origin, snippets

_FROM_CACHE = ("HIT", "STALE", "REVALIDATED")
_FROM_UPSTREAM = ("MISS", "BYPASS")

@dataclass(frozen=True)
class Configured:
    """One backend: its spec, its upstreams and its catalog shape (if it has one)."""

    name: str
    spec: BackendSpec
    upstreams: Sequence[Upstream]
    shape: CatalogShape | None

class Overview:
    def __init__(self, config: Config, cache: Cache, metrics: Metrics, catalog: Catalog,
                 backends: Sequence[Configured], started: float) -> None:
        self._config = config
        self._cache = cache
        self._metrics = metrics
        self._catalog = catalog
        self._backends = backends
        self._started = started

    def document(self, detailed: bool = True) -> dict[str, Any]:
        """The status as data. ``detailed=False`` leaves out what only operators should see
        (upstream addresses, error messages, artifact names) for a page open to anyone."""
        entries, size = self._cache.index.totals()
        per_backend = self._catalog.backend_totals()
        statuses = self._metrics.cache_statuses()
        health = {(s.backend, s.upstream): s for s in self._metrics.upstream_health.states()}
        backends = []
        for b in self._backends:
            count, nbytes = per_backend.get(b.name, (0, 0))
            upstreams = []
            for up in b.upstreams:
                state = health.get((b.name, up.host))
                upstreams.append({"url": up.base_url if detailed else None,
                                  "host": up.host if detailed else None,
                                  "last_success": state.last_success if state else None,
                                  "last_error": state.last_error if state else None,
                                  "error": state.error if state and detailed else None})
            backends.append({"name": b.name, "type": b.spec.type, "prefix": b.spec.prefix,
                             "entries": count, "bytes": nbytes, "upstreams": upstreams,
                             **_ratio(statuses, b.name),
                             "catalog": f"{PAGE}?backend={b.name}" if b.shape else None})
        top = [{"backend": backend, "artifact": self._label(backend, key), "hits": hits,
                "size": nbytes} for backend, key, hits, nbytes in
               (self._catalog.most_requested() if detailed else [])]
        settings = self._config.cache
        return {
            "vault": {"version": __version__, "uptime_seconds": round(time.time() - self._started),
                      "offline": self._config.offline},
            "cache": {"entries": entries, "bytes": size, "max_size": settings.max_size,
                      "min_free": settings.min_free, "free_bytes": self._cache.blobs.free_bytes(),
                      "fills_in_progress": self._cache.fills_in_progress()},
            "requests": _ratio(statuses, None),
            "backends": backends,
            "most_requested": top}

    def _label(self, backend: str, key: str) -> str:
        """A key as people name the artifact: ``library/alpine:3.20``, ``six 1.16.0 (file)``."""
        for b in self._backends:
            if b.name != backend:
                continue
            if b.shape and key.startswith(b.shape.key_prefix):
                return key[len(b.shape.key_prefix):]
            path = BACKENDS[b.spec.type].client_path(b.spec, key)  # e.g. a pypi page's path
            return path or key.removeprefix(f"{backend} ")
        return key.removeprefix(f"{backend} ")

    def page(self, origin: Origin, detailed: bool = True) -> bytes:
        doc = self.document(detailed)
        cache, req = doc["cache"], doc["requests"]
        limit = cache["max_size"]
        used = f"{h.size(cache['bytes'])} of {h.size(limit)}" if limit else h.size(cache["bytes"])
        bar = (f'<div class="bar"><span style="width:{min(100, 100 * cache["bytes"] // limit)}%">'
               "</span></div>" if limit else "")
        cards = [
            ("Cache", f'<div class="big">{used}</div>{bar}<div class="muted">{cache["entries"]} '
                      f"entries; {h.size(cache['free_bytes'])} free on disk</div>"),
            ("Hit ratio since start", f'<div class="big">{_percent(req["hit_ratio"])}</div>'
                                      f'<div class="muted">{req["from_cache"]} from cache, '
                                      f'{req["from_upstream"]} from upstream</div>'),
            ("Vault", f'<div class="big">{h.esc(doc["vault"]["version"])}</div>'
                      f'<div class="muted">up {_duration(doc["vault"]["uptime_seconds"])}'
                      f'{"; offline mode" if doc["vault"]["offline"] else ""}; '
                      f'{cache["fills_in_progress"]} downloads running</div>'),
        ]
        parts = ["<h1>Status</h1><p>This is an Artifact Vault: a caching proxy for package "
                 "indexes, container registries and file mirrors. Point your clients at the "
                 "backends below; each artifact is fetched from its upstream once and served "
                 "from the cache after that. "
                 f'<a href="{PAGE}">Browse what is cached</a>.</p>',
                 '<div class="cards">' + "".join(
                     f'<div class="card"><h3>{t}</h3>{c}</div>' for t, c in cards) + "</div>",
                 "<h2>Backends</h2>"]
        origin_specs = {b.name: b.spec for b in self._backends}
        for b in doc["backends"]:
            parts.append(self._backend(b, origin_specs[b["name"]], origin))
        parts.append("<h2>Most requested</h2>")
        parts.append(h.table(["Artifact", "Backend", "#Hits", "#Size"], [
            [h.esc(t["artifact"]), h.esc(t["backend"]), str(t["hits"]), h.size(t["size"])]
            for t in doc["most_requested"]], "top") if doc["most_requested"]
            else '<p class="muted">Nothing has been served from the cache yet.</p>')
        return h.page("Artifact Vault status", "".join(parts))

    @staticmethod
    def _backend(b: dict[str, Any], spec: BackendSpec, origin: Origin) -> str:
        health = []
        for up in b["upstreams"]:
            failing = up["last_error"] and (up["last_success"] or 0) < up["last_error"]
            state = (f'<span class="bad">failing</span>: {h.esc(up["error"] or "")} '
                     f'({h.ago(up["last_error"])})' if failing else
                     f'<span class="ok">ok</span>, last answer {h.ago(up["last_success"])}'
                     if up["last_success"] else '<span class="muted">not contacted yet</span>')
            earlier = (f'; last error {h.ago(up["last_error"])}: {h.esc(up["error"] or "")}'
                       if up["last_error"] and not failing else "")
            where = f"<code>{h.esc(up['url'])}</code>" if up["url"] else "upstream"
            health.append(f"<li>{where}: {state}{earlier}</li>")
        catalog = (f' · <a href="{h.esc(b["catalog"])}">catalog</a>' if b["catalog"] else "")
        setup = "".join(h.snippet(s.title, s.text) for s in snippets(spec, origin))
        return (f'<section class="card backend" id="backend-{h.esc(b["name"])}">'
                f'<h3>{h.esc(b["name"])} <span class="muted">({h.esc(b["type"])}, '
                f'<code>{h.esc(b["prefix"])}</code>)</span></h3>'
                f'<div>{b["entries"]} entries, {h.size(b["bytes"])}; hit ratio '
                f'{_percent(b["hit_ratio"])}{catalog}</div>'
                f'<ul>{"".join(health)}</ul>'
                f"<details><summary>Client setup</summary>{setup}</details></section>")

def _ratio(statuses: dict[tuple[str, str], float], backend: str | None) -> dict[str, Any]:
    def total(kinds: tuple[str, ...]) -> int:
        return int(sum(n for (b, c), n in statuses.items()
                       if c in kinds and (backend is None or b == backend)))
    hits, misses = total(_FROM_CACHE), total(_FROM_UPSTREAM)
    return {"from_cache": hits, "from_upstream": misses,
            "hit_ratio": hits / (hits + misses) if hits + misses else None}

def _percent(ratio: float | None) -> str:
    return "–" if ratio is None else f"{100 * ratio:.1f}%"

def _duration(seconds: int) -> str:
    return h.ago(time.time() - seconds).removesuffix(" ago")
