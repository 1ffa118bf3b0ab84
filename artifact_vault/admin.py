"""Admin endpoints under ``/-/admin/``: the cache's stats as JSON, and purge.

    GET  /-/admin/stats                        per-backend stats (as ``artifact-vault stats --json``)
    POST /-/admin/purge?pattern=PREFIX/GLOB    remove matching entries (as ``artifact-vault purge``)
    POST /-/admin/purge  {"pattern": "...", "dry_run": true}

Access control is not done here: client auth requires the ``admin`` scope for the whole
``/-/admin/`` prefix in one place, before a request reaches this module.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from .cache import Cache
from .catalog import Catalog
from .config import Config
from .errors import BadRequest, MethodNotAllowed, NotFound
from .exchange import Reply, json_reply
from . import maintenance

PREFIX = "/-/admin/"
_MAX_BODY = 64 * 1024


class Admin:
    def __init__(self, config: Config, cache: Cache) -> None:
        self._config = config
        self._cache = cache

    def handle(self, environ: dict[str, Any], method: str, path: str) -> Reply:
        name = path[len(PREFIX):] if path.startswith(PREFIX) else None
        if name == "stats":
            if method not in ("GET", "HEAD"):
                raise MethodNotAllowed(f"{method} is not allowed on {path}")
            return json_reply(200, maintenance.stats_json(self._cache.index))
        if name == "purge":
            if method != "POST":
                raise MethodNotAllowed(f"{method} is not allowed on {path}", allowed=("POST",))
            pattern, dry_run = _purge_args(environ)
            return json_reply(200, self._purge(pattern, dry_run))
        raise NotFound(f"no admin endpoint at {path}; there are {PREFIX}stats and {PREFIX}purge")

    def _purge(self, pattern: str, dry_run: bool) -> dict[str, Any]:
        # A catalog per request: it reads the cached manifests as they are now.
        catalog = Catalog(self._config.backends, self._cache.index, self._cache.blobs)
        found, freed = maintenance.purge(self._cache.index, self._cache.blobs, catalog, pattern,
                                         dry_run)
        return {"pattern": pattern, "dry_run": dry_run, "freed_bytes": freed,
                "removed": [{"key": e.key, "path": name, "size": e.size} for e, name in found]}


def _purge_args(environ: dict[str, Any]) -> tuple[str, bool]:
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    doc: dict[str, Any] = {}
    length = environ.get("CONTENT_LENGTH") or "0"
    if not length.isdigit() or int(length) > _MAX_BODY:
        raise BadRequest(f"the request body must be JSON of at most {_MAX_BODY} bytes")
    if int(length):
        try:
            doc = json.loads(environ["wsgi.input"].read(int(length)))
        except ValueError:
            raise BadRequest("the request body is not JSON") from None
        if not isinstance(doc, dict):
            raise BadRequest('the request body must be a JSON object: {"pattern": "..."}')
    pattern = doc.get("pattern", query.get("pattern"))
    if not isinstance(pattern, str) or not pattern.strip("/"):
        raise BadRequest("give a pattern: PREFIX/PATH-GLOB, e.g. pypi/files/six/*")
    dry_run = doc.get("dry_run", query.get("dry_run", "false"))
    return pattern, dry_run in (True, "1", "true", "yes")
