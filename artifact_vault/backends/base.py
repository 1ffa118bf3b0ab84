"""What every backend shares: the context it is built with, and the set-up from its spec."""

from __future__ import annotations

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


class BackendBase:
    """Names, settings and the cache, set up the same way for every backend."""

    def __init__(self, spec: BackendSpec, ctx: Context) -> None:
        self.name = spec.prefix.strip("/")
        self.prefix = spec.prefix
        self._settings: Any = spec.settings
        self._cache = ctx.cache
        self._offline = ctx.offline or spec.settings.offline
