"""Cache entries by the names users know them by: the client paths that reach them.

Keys are the engine's business (``"pypi file six/<sha256>/six-1.16.0-py2.py3-none-any.whl"``,
``"oci blob sha256:..."``); people think in the paths their clients ask for
(``/pypi/files/six/...``, ``/hub/team/app/blobs/sha256:...``). Each backend knows how its keys
map to paths (its ``client_path``); this module asks the right backend for each entry, so
purge patterns, reports and ``verify --repair`` speak in paths.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

from .backends import BACKENDS
from .backends.registry import oci
from .cache.blobs import BlobStore
from .cache.index import Entry, Index
from .config import BackendSpec


class Catalog:
    def __init__(self, specs: Sequence[BackendSpec], index: Index, blobs: BlobStore) -> None:
        self._specs = {spec.prefix.strip("/"): spec for spec in specs}
        self._index = index
        self._blobs = blobs
        self._blob_paths: dict[str, list[str]] | None = None

    def paths(self, entry: Entry) -> list[str]:
        """Client paths of ``entry``: one for most; one per repository for a registry blob
        (found through the cached manifests that list it); none if its backend is gone from the
        config or no cached manifest lists the blob."""
        if entry.key.startswith(oci.BLOB_KEY):
            return self._blob_map().get(entry.key[len(oci.BLOB_KEY):], [])
        spec = self._specs.get(entry.backend)
        if spec is None:
            return []
        path = BACKENDS[spec.type].client_path(spec, entry.key)
        return [path] if path else []

    def prepare(self) -> None:
        """Read the cached manifests now: before entries are removed, so that the paths of
        blobs can still be found through manifests that are about to go."""
        self._blob_map()

    def names(self, entry: Entry) -> list[str]:
        """What a purge pattern is matched against: the paths, else the raw key."""
        return self.paths(entry) or [entry.key]

    def matching(self, pattern: str, entries: Iterable[Entry]) -> list[tuple[Entry, str]]:
        """Entries with a name matching ``pattern`` (see ``matches``), with that name."""
        found = []
        for entry in entries:
            name = next((n for n in self.names(entry) if matches(pattern, n)), None)
            if name is not None:
                found.append((entry, name))
        return found

    def _blob_map(self) -> dict[str, list[str]]:
        if self._blob_paths is None:
            self._blob_paths = {}
            for entry in self._index.scan():
                spec = self._specs.get(entry.backend)
                blob_paths = getattr(BACKENDS[spec.type], "blob_paths", None) if spec else None
                if blob_paths is None or not entry.digest or entry.size > oci.MAX_MANIFEST:
                    continue
                try:  # the backend reads only its manifests, not every small blob
                    found = blob_paths(spec, entry.key, self._blobs.path(entry.digest).read_bytes)
                except OSError:
                    continue
                for digest, path in found.items():
                    paths = self._blob_paths.setdefault(digest, [])
                    if path not in paths:
                        paths.append(path)
        return self._blob_paths


def matches(pattern: str, name: str) -> bool:
    """``PREFIX/PATH-PATTERN`` against a client path: a shell glob (``*`` also crosses '/',
    ``?`` and ``[...]`` as usual), anchored at both ends, a leading '/' optional on either.
    A raw cache key (an entry no path reaches) is matched as it is."""
    return fnmatch.fnmatchcase(name.lstrip("/"), pattern.lstrip("/"))
