"""Prometheus metrics, on a registry of their own so each app (and each test) has its own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .upstream import UpstreamHealth


class Metrics:
    """Counters the app, the cache engine and the upstreams report to."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("vault_requests", "Requests by backend, cache status and code",
                                ["backend", "cache", "code"], registry=r)
        self.bytes_served = Counter("vault_served_bytes", "Body bytes sent to clients",
                                    ["backend"], registry=r)
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
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.upstream_health = UpstreamHealth()  # for the status page

    def request_done(self, backend: str, cache: str, code: int, sent: int) -> None:
        """Count one finished request. Label children are kept: ``labels()`` costs more than
        the increment, and this runs for every request."""
        key = (backend, cache, code)
        children = self._children.get(key)
        if children is None:
            children = (self.requests.labels(backend, cache, str(code)),
                        self.bytes_served.labels(backend))
            self._children[key] = children
        children[0].inc()
        children[1].inc(sent)

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
        for metric in self.requests.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    key = (sample.labels["backend"], sample.labels["cache"])
                    counts[key] = counts.get(key, 0.0) + sample.value
        return counts


class _CacheCollector(Collector):
    def __init__(self, totals: Callable[[], tuple[int, int]]) -> None:
        self._totals = totals

    def collect(self) -> Iterator[Metric]:
        entries, size = self._totals()
        yield GaugeMetricFamily("vault_cache_entries", "Entries in the cache index", value=entries)
        yield GaugeMetricFamily("vault_cache_bytes", "Bytes of blobs in the cache", value=size)

    def describe(self) -> Iterator[Metric]:
        return iter(())
