"""Prometheus metrics, on a registry of their own so each app (and each test) has its own."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .upstream_state import UpstreamHealth


class Metrics:
    """Counters the app, the cache engine and the upstreams report to."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._done: dict[tuple[str, str, int], list[int]] = {}  # -> [requests, bytes]
        self._done_lock = threading.Lock()
        self.in_progress = 0  # requests whose response is not finished yet
        r.register(_RequestCollector(self._done, self._done_lock, lambda: self.in_progress))
        self._upstream_bytes = Counter("vault_upstream_bytes", "Body bytes fetched upstream",
                                       ["backend"], registry=r)
        self._upstream_errors = Counter("vault_upstream_errors", "Upstream failures by reason",
                                        ["backend", "reason"], registry=r)
        self._upstream_latency = Histogram("vault_upstream_latency_seconds",
                                           "Time to upstream response headers", ["backend"],
                                           registry=r)
        self._ratelimit = Gauge("vault_upstream_ratelimit_remaining",
                                "The upstream's last ratelimit-remaining header", ["backend"],
                                registry=r)
        self._fills = Gauge("vault_fills_in_progress", "Upstream downloads running", registry=r)
        self.upstream_health = UpstreamHealth()  # for the status page

    def request_started(self) -> None:
        with self._done_lock:
            self.in_progress += 1

    def request_done(self, backend: str, cache: str, code: int, sent: int) -> None:
        """Count one finished request. This runs for every request, so it is a few additions
        under one lock; the counters are turned into metrics only when scraped."""
        key = (backend, cache, code)
        with self._done_lock:
            self.in_progress -= 1
            counts = self._done.get(key)
            if counts is None:
                counts = self._done[key] = [0, 0]
            counts[0] += 1
            counts[1] += sent

    def watch_cache(self, totals: Callable[[], tuple[int, int]]) -> None:
        """Report cache entries and bytes, read at scrape time from ``totals()``."""
        self.registry.register(_CacheCollector(totals))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # -- cache.engine.Observer ------------------------------------------------------------

    def fill_started(self) -> None:
        self._fills.inc()

    def fill_ended(self) -> None:
        self._fills.dec()

    def upstream_bytes(self, backend: str, n: int) -> None:
        self._upstream_bytes.labels(backend).inc(n)

    # -- upstream.UpstreamObserver ------------------------------------------------------

    def upstream_latency(self, backend: str, seconds: float) -> None:
        self._upstream_latency.labels(backend).observe(seconds)

    def upstream_error(self, backend: str, reason: str) -> None:
        self._upstream_errors.labels(backend, reason).inc()

    def upstream_ratelimit(self, backend: str, remaining: int) -> None:
        self._ratelimit.labels(backend).set(remaining)

    def upstream_outcome(self, backend: str, upstream: str, error: str | None) -> None:
        self.upstream_health.record(backend, upstream, error)

    def cache_statuses(self) -> dict[tuple[str, str], float]:
        """Requests since start by (backend, cache status): the status page's hit ratio."""
        counts: dict[tuple[str, str], float] = {}
        with self._done_lock:
            for (backend, cache, _), (n, _) in self._done.items():
                counts[(backend, cache)] = counts.get((backend, cache), 0.0) + n
        return counts


class _RequestCollector(Collector):
    def __init__(self, done: dict[tuple[str, str, int], list[int]], lock: threading.Lock,
                 in_progress: Callable[[], int]) -> None:
        self._done = done
        self._lock = lock
        self._in_progress = in_progress

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            done = [(key, counts[0], counts[1]) for key, counts in self._done.items()]
        requests = CounterMetricFamily("vault_requests", "Requests by backend, cache status "
                                       "and code", labels=["backend", "cache", "code"])
        served: dict[str, int] = {}
        for (backend, cache, code), n, sent in done:
            requests.add_metric([backend, cache, str(code)], n)
            served[backend] = served.get(backend, 0) + sent
        yield requests
        served_bytes = CounterMetricFamily("vault_served_bytes", "Body bytes sent to clients",
                                           labels=["backend"])
        for backend, sent in served.items():
            served_bytes.add_metric([backend], sent)
        yield served_bytes
        yield GaugeMetricFamily("vault_requests_in_progress", "Responses not finished yet",
                                value=self._in_progress())

    def describe(self) -> Iterator[Metric]:
        return iter(())


class _CacheCollector(Collector):
    def __init__(self, totals: Callable[[], tuple[int, int]]) -> None:
        self._totals = totals

    def collect(self) -> Iterator[Metric]:
        entries, size = self._totals()
        yield GaugeMetricFamily("vault_cache_entries", "Entries in the cache index", value=entries)
        yield GaugeMetricFamily("vault_cache_bytes", "Bytes of blobs in the cache", value=size)

    def describe(self) -> Iterator[Metric]:
        return iter(())
