"""What Vault keeps about each upstream besides the connection itself: a cap on concurrent
connections (so a burst of cold misses cannot flood an index or a registry), and the last
success and failure (for the status page)."""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass

from .errors import UpstreamTimeout


@dataclass(frozen=True)
class UpstreamState:
    """When one upstream of one backend last answered usefully, and last failed, and how."""

    backend: str
    upstream: str  # host[:port]
    last_success: float | None = None
    last_error: float | None = None
    error: str | None = None


class UpstreamHealth:
    """Last success and last error per (backend, upstream), for the status page.

    Written once per upstream call (a dict update under a lock: nothing next to the request it
    follows), read when someone looks at the status page."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[tuple[str, str], UpstreamState] = {}

    def record(self, backend: str, upstream: str, error: str | None) -> None:
        now = time.time()
        with self._lock:
            old = self._states.get((backend, upstream)) or UpstreamState(backend, upstream)
            self._states[(backend, upstream)] = (
                dataclasses.replace(old, last_success=now) if error is None
                else dataclasses.replace(old, last_error=now, error=error))

    def states(self) -> list[UpstreamState]:
        with self._lock:
            return list(self._states.values())


class Permit:
    """One slot of a ``ConnectionLimit``; releasing it twice is harmless, because a body can
    end several ways (read to the end, closed early, broken, garbage-collected)."""

    def __init__(self, limit: ConnectionLimit) -> None:
        self._limit: ConnectionLimit | None = limit

    def release(self) -> None:
        limit, self._limit = self._limit, None
        if limit is not None:
            limit._release()


class ConnectionLimit:
    """At most ``size`` upstream connections of one backend at a time.

    Vault protects its upstreams: 200 cold clients for 200 different files must not open 200
    connections to one index or registry (single-flight already folds clients of the *same*
    file into one). A slot is held from the request until its body is read or closed; a
    request that cannot get one within ``wait`` seconds fails with a 504 rather than queueing
    without bound. Followers of a fill wait on the fill, not here, so they cannot deadlock it."""

    def __init__(self, size: int, wait: float) -> None:
        self.size = size
        self._wait = wait
        self._free = threading.Semaphore(size)
        self._lock = threading.Lock()
        self.in_use = 0
        self.peak = 0

    def acquire(self, host: str) -> Permit:
        if not self._free.acquire(timeout=self._wait):
            raise UpstreamTimeout(f"upstream connection limit reached ({self.size} to {host} "
                                  f"at once), waited {self._wait:g}s; see "
                                  "max_upstream_connections", upstream=host)
        with self._lock:
            self.in_use += 1
            self.peak = max(self.peak, self.in_use)
        return Permit(self)

    def _release(self) -> None:
        with self._lock:
            self.in_use -= 1
        self._free.release()
