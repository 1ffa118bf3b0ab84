"""Which backend a request path belongs to, and under what mount.

Plain backends own a path prefix (``/debian/``). Registry clients can only address the
``/v2/`` API, so registry backends are also reached there, chosen in this order:

1. ``?ns=<registry host>`` (containerd's mirror hosts.toml), matched to a backend's upstream;
2. the first path segment after ``/v2/`` (``docker pull vault:8080/<prefix>/<name>``);
3. the backend marked ``default: true`` (docker's ``registry-mirrors``, which sends
   ``/v2/<name>/...`` and nothing else).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs

from .backends import Backend
from .errors import NotFound

API_ROOT = "/v2/"


@dataclass(frozen=True)
class Route:
    backend: Backend | None  # None: one of Vault's own endpoints, named by ``mount``
    mount: str  # the path prefix the backend is reached under
    rest: str  # the raw (still percent-encoded) path below the mount


class Router:
    def __init__(self, backends: Sequence[Backend], own: Sequence[str]) -> None:
        self._by_prefix = sorted(backends, key=lambda b: len(b.prefix), reverse=True)
        self._registries = [b for b in backends if getattr(b, "registry_hosts", ())]
        self._default = next((b for b in self._registries if getattr(b, "default", False)), None)
        self._own = set(own) | ({API_ROOT.rstrip("/")} if self._registries else set())

    def route(self, raw_path: str, query: str) -> Route:
        own = raw_path.rstrip("/") or "/"
        if own in self._own:
            return Route(None, own, "")
        if self._registries and raw_path.startswith(API_ROOT):
            return self._route_api(raw_path[len(API_ROOT):], query)
        for backend in self._by_prefix:
            if raw_path.startswith(backend.prefix) or raw_path == backend.prefix.rstrip("/"):
                return Route(backend, backend.prefix, raw_path[len(backend.prefix):])
        raise NotFound(f"no backend serves {raw_path}; configured prefixes: "
                       f"{', '.join(b.prefix for b in self._by_prefix)}")

    def _route_api(self, rest: str, query: str) -> Route:
        first = rest.split("/", 1)[0]
        by_segment = {b.prefix.strip("/"): b for b in self._registries}
        namespace = parse_qs(query).get("ns", [""])[0].lower()
        if namespace:
            for backend in self._registries:
                if namespace in backend.registry_hosts:  # type: ignore[attr-defined]
                    if by_segment.get(first) is backend:  # a mirror URL that carries the prefix
                        return Route(backend, f"{API_ROOT}{first}/", rest[len(first) + 1:])
                    return Route(backend, API_ROOT, rest)
        if first in by_segment and "/" in rest:
            return Route(by_segment[first], f"{API_ROOT}{first}/", rest[len(first) + 1:])
        if self._default is not None:
            return Route(self._default, API_ROOT, rest)
        raise NotFound(f"no registry backend serves /v2/{rest}; name one by prefix "
                       f"(/v2/<prefix>/<name>/...) or mark a backend default: true",
                       code="NAME_UNKNOWN")
