"""Vault's own pages: the status page and the catalog of what is cached.

    GET /                       status page (HTML)
    GET /-/api/status           the same, as JSON
    GET /-/catalog              catalog listing (HTML): ?backend=&q=&sort=&page=&per_page=
    GET /-/catalog/item         one repository, project or path: ?backend=&name=
    GET /-/api/catalog          the same as JSON (without backend: the backends and counts)
    GET /-/api/catalog/item

``app.py`` hands these paths here and renders the ``Reply``; errors are the usual
``VaultError``s. Nothing here takes part in serving artifacts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl

from ..backends import Backend
from ..cache import Cache
from ..config import Config
from ..errors import BadRequest, MethodNotAllowed
from ..exchange import Reply
from ..metrics import Metrics
from .browse import API, PAGE, Browser, Source
from .catalog import Catalog
from .clients import Origin
from .html import CSP
from .images import Images
from .overview import Configured, Overview

__all__ = ["PUBLIC", "StatusPages"]

# What anyone may see when client auth is on: that Vault is up and how its upstreams are, with
# no artifact names, upstream addresses or error messages (``reply(..., detailed=False)``).
PUBLIC = frozenset({"/", "/-/api/status"})


class StatusPages:
    def __init__(self, config: Config, cache: Cache, backends: Sequence[Backend],
                 metrics: Metrics, started: float) -> None:
        self._catalog = Catalog(cache.index.path)
        configured = [Configured(b.name, spec, getattr(b, "upstreams", []),
                                 b.catalog() if hasattr(b, "catalog") else None)
                      for b, spec in zip(backends, config.backends)]
        self._browser = Browser(self._catalog, Images(self._catalog, cache.blobs), [
            Source(c.name, c.spec.type, c.spec.prefix, c.shape)
            for c in configured if c.shape is not None])
        self._overview = Overview(config, cache, metrics, self._catalog, configured, started)
        self._flush = cache.index.flush_access
        self._public = Origin.public(config.public_url) if config.public_url else None
        # Each route: (query parameters, origin, detailed) -> Reply.
        self._routes: dict[str, Callable[[dict[str, str], Origin, bool], Reply]] = {
            "/": lambda _, origin, detailed: _html(self._overview.page(origin, detailed)),
            "/-/api/status": lambda _, __, detailed: _json(self._overview.document(detailed)),
            PAGE: lambda params, _, __: _html(self._browser.listing_page(params)),
            f"{PAGE}/item": lambda params, origin, _: _html(
                self._browser.item_page(params, origin)),
            API: lambda params, _, __: _json(self._browser.listing(params)
                                             if params.get("backend") else
                                             self._browser.summary()),
            f"{API}/item": lambda params, _, __: _json(self._browser.item(params)),
        }

    def close(self) -> None:
        self._catalog.close()

    def reply(self, environ: dict[str, Any], method: str, path: str,
              detailed: bool = True) -> Reply | None:
        """The reply for one of our paths; None for any other path (a backend's).

        ``detailed=False`` is for a status page open to anyone (client auth with anonymous
        read): it leaves out upstream addresses, error messages and artifact names, and
        answers only the PUBLIC paths (None for any other)."""
        key = path if path == "/" else path.rstrip("/")
        route = self._routes.get(key)
        if route is None or not (detailed or key in PUBLIC):
            return None
        if method not in ("GET", "HEAD"):
            raise MethodNotAllowed(f"{method} is not allowed on {path}")
        try:
            params = dict(parse_qsl(environ.get("QUERY_STRING", ""), errors="strict"))
        except (UnicodeDecodeError, ValueError):
            raise BadRequest("the query string is not valid UTF-8") from None
        if any("\x00" in v for v in params.values()):
            raise BadRequest("NUL in a query parameter")
        self._flush()  # hits and last-access times are batched; show the latest
        return route(params, self._public or Origin.of(environ), detailed)


def _html(body: bytes) -> Reply:
    return Reply(status=200, body=[body], headers={
        "Content-Type": "text/html; charset=utf-8", "Content-Length": str(len(body)),
        "Cache-Control": "no-store", "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"})


def _json(doc: dict[str, Any]) -> Reply:
    body = json.dumps(doc, indent=1).encode() + b"\n"
    return Reply(status=200, body=[body], headers={
        "Content-Type": "application/json", "Content-Length": str(len(body)),
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
