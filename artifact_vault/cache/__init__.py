"""One cache engine for every backend: content-addressed blobs, an SQLite index, single-flight
fills, freshness and eviction. Backends use ``Cache.get`` and nothing else."""

from .engine import Cache, Fetch, Policy, Served
from .streams import Answer, Fetched

__all__ = ["Answer", "Cache", "Fetch", "Fetched", "Policy", "Served"]
