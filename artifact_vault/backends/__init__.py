"""Backends: one module per upstream kind, registered here by the name used in the config.

A backend is small on purpose: it turns a request path into a cache key, a ``Policy`` and a
way to fetch, and lets the cache engine do everything else.
"""

from __future__ import annotations

from typing import Protocol

from ..exchange import Reply, Request
from .base import Context
from .http import HttpBackend
from .pypi import PypiBackend
from .registry import DockerHubBackend, RegistryBackend


class Backend(Protocol):
    """The extension point: one upstream kind behind a URL prefix.

    ``handle`` gets the part of the path below ``prefix`` and returns a ``Reply``; it raises
    ``errors.VaultError`` subclasses for everything that is not a success. For example::

        class Static:
            name, prefix = "static", "/static/"
            def handle(self, request):
                return Reply(body=[b"hello"], headers={"content-type": "text/plain"})
            def close(self):
                pass
    """

    name: str
    prefix: str

    # Optional, for registry backends: ``registry_hosts`` (names ``?ns=`` may use),
    # ``default`` (serves /v2/ requests that name no backend) and ``render_error(exc, status)``
    # (errors in the protocol's own format). app.py reads them with getattr.
    # For maintenance (catalog.py): a static ``client_path(spec, key)`` maps a cache key back
    # to the path a client asks for (every backend has one), and a registry's static
    # ``blob_paths(spec, key, read_manifest)`` names the blobs a cached manifest lists.
    # For the status page (status/): ``catalog()`` says how keys group into items (a
    # ``CatalogShape``), ``upstreams`` lists the ``Upstream``s whose health is shown.
    # For a stop: ``stop_background()`` is called when it begins, so that no background work
    # (registries fetching blobs ahead) starts while it waits for the downloads running.

    def handle(self, request: Request) -> Reply: ...

    def close(self) -> None: ...


__all__ = ["BACKENDS", "SETTINGS", "Backend", "Context"]

BACKENDS = {"http": HttpBackend, "pypi": PypiBackend, "registry-v2": RegistryBackend,
            "dockerhub": DockerHubBackend}
SETTINGS = {name: cls.Settings for name, cls in BACKENDS.items()}
