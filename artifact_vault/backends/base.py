"""What every backend shares: the context it is built with, and the set-up from its spec."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..cache import Cache
from ..config import BackendSpec
from ..metrics import Metrics


@dataclass(frozen=True)
class Context:
    """What every backend is built with, passed explicitly (there are no globals)."""

    cache: Cache
    metrics: Metrics
    offline: bool  # the global switch; a backend's own ``offline`` can only add to it
    pool_size: int  # upstream connections to keep per backend
    public_url: str | None = None  # where clients reach Vault (config.public_url)


class BackendBase:
    """Names, settings and the cache, set up the same way for every backend."""

    def __init__(self, spec: BackendSpec, ctx: Context) -> None:
        self.name = spec.prefix.strip("/")
        self.prefix = spec.prefix
        self._settings: Any = spec.settings
        self._cache = ctx.cache
        self._offline = ctx.offline or spec.settings.offline


@dataclass(frozen=True)
class CatalogShape:
    """How a backend's cache keys group into catalog items (repositories, projects, paths).

    The catalog pages through the index in SQL, so the grouping must be expressible there: an
    item's keys all start with ``key_prefix``, and the item's name is the rest of the key up to
    the first of ``name_ends`` (the whole rest when empty). ``member`` turns what follows the
    name into the facts of one cached member (a tag, a digest, a file), in Python, for the rows
    on the page being shown. For example, with ``key_prefix="ghcr manifest "`` and
    ``name_ends=":@"``, the key ``ghcr manifest org/app:1.2`` is member ``{"tag": "1.2"}`` of
    item ``org/app``."""

    kind: str  # what an item is: "image", "project" or "path"
    key_prefix: str
    name_ends: str
    member: Callable[[str], Mapping[str, str]]
