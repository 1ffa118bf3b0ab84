"""Refetch removed entries (``verify --repair``) by asking Vault itself for their client paths.

Going through the app, not around it, means a repaired entry is fetched, verified and indexed
exactly as a client's request would have done it: same keys, same policies, same checks. The
app is built in this process on the same config and cache directory as the server, which may
be running; the cache is safe to share between processes.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

from .app import App
from .backends.registry import oci
from .cache.index import Entry
from .catalog import Catalog

_SAFE = "/:@!$&'()*+,;=-._~"


@dataclass(frozen=True)
class Repaired:
    key: str
    path: str | None  # the client path asked for; None: no path reaches this entry
    status: int | None  # the app's answer; 200 means the entry is back

    @property
    def ok(self) -> bool:
        return self.status == 200


def repair(app: App, catalog: Catalog, entries: Iterable[Entry]) -> list[Repaired]:
    """GET each entry's first client path through ``app``. Registry manifests come before
    blobs, so a blob whose manifest was damaged too can still be found through it. The catalog
    must have been asked about the entries before they were removed (``Catalog.prepare``)."""
    results = []
    for entry in sorted(entries, key=lambda e: e.key.startswith(oci.BLOB_KEY)):
        paths = catalog.paths(entry)
        if entry.status != 200 or not paths:
            results.append(Repaired(entry.key, None, None))
            continue
        results.append(Repaired(entry.key, paths[0], get(app, paths[0])))
    while app.cache.fills_in_progress():  # the last byte reaches us just before the commit
        time.sleep(0.01)
    return results


def get(app: App, path: str) -> int:
    """One GET through the WSGI app, its body read to the end and discarded."""
    raw_path, _, query = path.partition("?")
    raw_path = quote(raw_path, safe=_SAFE)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": raw_path, "REQUEST_URI": raw_path,
               "QUERY_STRING": query, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "0",
               "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
               "wsgi.input": io.BytesIO(), "wsgi.errors": io.StringIO(),
               "HTTP_X_REQUEST_ID": "repair"}
    status: list[int] = []

    def start_response(line: str, headers: list[tuple[str, str]], exc_info: object = None) -> None:
        status.append(int(line.split(" ", 1)[0]))

    body = app(environ, start_response)
    try:
        for _ in body:
            pass
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return status[0]
