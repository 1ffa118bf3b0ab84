"""The request a backend sees and the reply it gives: HTTP reduced to what backends need."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .cache import Served

# Marks the requests of ``artifact-vault prefetch`` itself: it reports them on its own, and it
# asks for an index's children itself (only the platforms its job names).
PREFETCH_HEADER = "X-Vault-Prefetch"


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # below the backend prefix, percent-decoded and checked: no '..', no '//'
    query: str  # raw query string, '' when absent
    headers: Mapping[str, str]  # lower-case names
    mount: str = ""  # the URL path the client put before ``path`` (for links it must follow)


@dataclass
class Reply:
    """A body from the cache (``served``: ranges and conditionals apply) or generated here."""

    served: Served | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Iterable[bytes] = ()
    cache_status: str = "BYPASS"


def json_reply(status: int, doc: dict[str, Any]) -> Reply:
    """A small JSON document of Vault's own (health, readiness, admin answers): never cached."""
    body = json.dumps(doc).encode() + b"\n"
    return Reply(status=status, body=[body], headers={
        "Content-Type": "application/json", "Content-Length": str(len(body)),
        "Cache-Control": "no-store"})
