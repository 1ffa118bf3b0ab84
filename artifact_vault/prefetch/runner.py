"""The running job: the local Vault, a client for it, a pool of fetches, and their outcomes."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

from ..progress import Progress
from .local import Client, FetchFailed, LocalVault, Outcomes

WORKERS = 4  # parallel fetches: enough to hide latency, few enough to be polite upstream


class Runner:
    """Leaf fetches (files, blobs) run in a pool; the work that discovers them (pages,
    manifests) runs in the caller's thread, so no task ever waits on another one."""

    def __init__(self, vault: LocalVault, progress: Progress, outcomes: Outcomes) -> None:
        self.vault = vault
        self.progress = progress
        self.outcomes = outcomes
        self.client = Client(vault.url, progress, outcomes)
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="prefetch")
        self._queued: set[str] = set()
        self._lock = threading.Lock()

    def first(self, key: str) -> bool:
        """True the first time ``key`` is seen: a blob shared by two images is fetched once."""
        with self._lock:
            if key in self._queued:
                return False
            self._queued.add(key)
            return True

    def submit(self, item: str, path: str, headers: dict[str, str] | None = None,
               key: str | None = None) -> None:
        """Fetch ``path`` in the pool, once per ``key`` (default: the path), discarding the
        body."""
        if not self.first(key or path):
            return
        self.progress.add()
        future: Future[bytes] = self._pool.submit(self.client.get, item, path, headers)
        future.add_done_callback(_swallow_fetch_failed)

    def wait(self, cancel: bool = False) -> None:
        """Wait for the queued fetches; ``cancel`` (Ctrl-C, a bug): only for those running."""
        self._pool.shutdown(wait=True, cancel_futures=cancel)
        self.client.close()


def _swallow_fetch_failed(future: Future[bytes]) -> None:
    exc = future.exception()
    if exc is not None and not isinstance(exc, FetchFailed):
        raise exc  # a bug, not a failed fetch: let the pool's thread report it
