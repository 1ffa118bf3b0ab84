"""The ``http`` backend: any HTTP(S) file tree (a Debian mirror, a release site) under a prefix."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

from ..cache import Policy
from ..config import BackendSpec
from ..config_values import Duration
from ..errors import MethodNotAllowed
from ..exchange import Reply, Request
from ..upstream import Upstream, UpstreamResponse, UpstreamSettings
from .base import BackendBase, CatalogShape, Context

# RFC 3986 pchar minus '%': a literal '%' in a decoded path (Debian's "%3a" epochs) must be
# re-encoded, or the upstream would decode it a second time.
_SAFE = "/:@!$&'()*+,;=-._~"


@dataclass(frozen=True)
class HttpSettings(UpstreamSettings):
    ttl: Duration = 600.0  # freshness of mutable files (apt's InRelease, index pages)
    immutable: tuple[str, ...] = ()  # glob patterns of files that never change


class HttpBackend(BackendBase):
    Settings = HttpSettings

    def __init__(self, spec: BackendSpec, ctx: Context) -> None:
        super().__init__(spec, ctx)
        self._upstream = Upstream(self.name, spec.settings, ctx.metrics, pool_size=ctx.pool_size)
        # One regex for all patterns, built once: this is checked on every request. A pattern
        # matches the whole path or any tail of it that starts at a '/': "by-hash/*" matches
        # "dists/bookworm/main/binary-amd64/by-hash/SHA256/ab12...".
        patterns = [fnmatch.translate(p) for p in spec.settings.immutable]
        patterns += [fnmatch.translate(f"*/{p}") for p in spec.settings.immutable]
        self._immutable = re.compile("|".join(patterns)).match if patterns else lambda _: None
        self._policies = (Policy(ttl=self._settings.ttl, offline=self._offline),
                          Policy(ttl=None, offline=self._offline))

    def close(self) -> None:
        self._upstream.close()

    @staticmethod
    def client_path(spec: BackendSpec, key: str) -> str | None:
        """The path a client asks for to reach cache entry ``key`` (the inverse of the key
        ``handle`` builds), or None if the key is not this backend's. Maintenance commands use
        it to show entries, match purge patterns and refetch entries."""
        head = f"{spec.prefix.strip('/')} {spec.settings.base_url}/"
        if not key.startswith(head):
            return None
        path, mark, query = key[len(head):].partition("?")
        return f"{spec.prefix}{unquote(path)}{mark}{query}"

    def catalog(self) -> CatalogShape:
        """Each cached file is an item, named by its (encoded) path below the prefix."""
        return CatalogShape("path", f"{self.name} {self._settings.base_url}/", "", lambda _: {})

    @property
    def upstreams(self) -> list[Upstream]:
        return [self._upstream]

    def handle(self, request: Request) -> Reply:
        if request.method not in ("GET", "HEAD"):
            raise MethodNotAllowed(f"{request.method} is not supported by the {self.name} backend")
        url, policy = self._resolve(request.path, request.query)

        def fetch(validators: Mapping[str, str]) -> UpstreamResponse:
            return self._upstream.get(url, validators)

        served = self._cache.get(self.name, f"{self.name} {url}", policy, fetch)
        return Reply(served=served, cache_status=served.cache_status)

    def _resolve(self, path: str, query: str) -> tuple[str, Policy]:
        url = f"{self._settings.base_url}/{quote(path, safe=_SAFE)}"
        if query:
            url += f"?{query}"
        return url, self._policies[self._immutable(path) is not None]
