"""LRU eviction: keep the cache under ``max_size`` and the disk above ``min_free``.

Temp files of running fills count against both budgets: they are real bytes on the disk.
Evicting a blob that a client is still reading is safe: the reader holds an open file, and
POSIX keeps an unlinked file's data until the last descriptor closes, so no read is cut short.
"""

from __future__ import annotations

import logging
import threading

from ..config import CacheSettings
from .blobs import BlobStore
from .index import Entry, Index

log = logging.getLogger(__name__)
_BATCH = 64


def drop_if_unused(index: Index, blobs: BlobStore, digest: str | None) -> bool:
    """Delete the blob ``digest`` unless an index row still names it (content addressing:
    keys share blobs). Call after deleting or replacing a row; True if it was deleted."""
    if not digest or index.digest_in_use(digest):
        return False
    blobs.remove(digest)
    return True


class Evictor:
    def __init__(self, index: Index, blobs: BlobStore, settings: CacheSettings) -> None:
        self._index = index
        self._blobs = blobs
        self._settings = settings
        self._lock = threading.Lock()  # one eviction at a time; others wait for its result

    def make_room(self, incoming: int) -> bool:
        """Evict least recently used entries until ``incoming`` bytes fit; False if they can't."""
        with self._lock:
            need = self._excess(incoming)
            while need > 0:
                victims = list(self._index.least_recent(_BATCH))
                if not victims:
                    break
                for entry in victims:
                    need -= self._evict(entry)
                    if need <= 0:
                        break
            return self._excess(incoming) <= 0

    def _excess(self, incoming: int) -> int:
        """How many bytes must go before ``incoming`` fits both budgets."""
        excess = self._settings.min_free - (self._blobs.free_bytes() - incoming)
        if self._settings.max_size is not None:
            _, used = self._index.totals()
            excess = max(excess, used + self._blobs.temp_bytes() + incoming - self._settings.max_size)
        return excess

    def _evict(self, entry: Entry) -> int:
        """Drop one entry; delete its blob when no other key shares it. Returns bytes freed."""
        self._index.delete(entry.key)
        if not drop_if_unused(self._index, self._blobs, entry.digest):
            return 0
        log.info("evicted %s (%d bytes)", entry.key, entry.size)
        return entry.size
