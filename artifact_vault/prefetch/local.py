"""A Vault served in-process on a loopback port, and the outcome of each fetch through it.

Prefetch fetches everything over HTTP from this Vault, not by calling the cache directly, so
every artifact takes the path a client's request takes: the real backend, its cache keys and
aliases, digest verification, single-flight (across processes too, see ``cache.keylock``).
pip is pointed at the same server for resolution; a small WSGI wrapper watches the files it
downloads so they show up in the progress display and the summary like any other item.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import requests

from ..app import build_app
from ..config import Config
from ..exchange import PREFETCH_HEADER
from ..progress import Progress
from ..server import create_server

FETCHED, CACHED, FAILED = "fetched", "already cached", "failed"
_CHUNK = 256 * 1024
_MAX_KEPT = 16 * 1024 * 1024  # manifests and index pages: parsed, so held in memory
_SETTLE_SECONDS = 120.0


@dataclass
class Outcome:
    item: str
    result: str  # FETCHED, CACHED or FAILED
    size: int = 0
    reason: str = ""


class FetchFailed(Exception):
    """A fetch that did not end in a complete 200; its outcome is recorded already."""


class Outcomes:
    """The results of one prefetch, in the order items ended; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[Outcome] = []

    def add(self, outcome: Outcome) -> None:
        with self._lock:
            self.items.append(outcome)

    def failed(self) -> list[Outcome]:
        with self._lock:
            return [o for o in self.items if o.result == FAILED]


def result_of(cache_status: str) -> str:
    """HIT and STALE answers came from disk; anything else came from the upstream now."""
    return CACHED if cache_status in ("HIT", "STALE") else FETCHED


class LocalVault:
    """``build_app`` + ``create_server`` on 127.0.0.1, port 0, served in a thread."""

    def __init__(self, config: Config, progress: Progress, outcomes: Outcomes) -> None:
        self.app = build_app(config)
        self._watch = _Watcher(self.app, progress, outcomes)
        self.server = create_server(self._watch, "127.0.0.1", 0, config.threads)
        self.url = f"http://127.0.0.1:{self.server.effective_port}"
        self._thread = threading.Thread(target=self.server.run, name="vault", daemon=True)
        self._thread.start()

    def watch(self, path_part: str | None) -> None:
        """Report requests of others (pip) whose path contains ``path_part`` (None: none)."""
        self._watch.part = path_part

    def close(self) -> None:
        # Fills still running (one whose client left early) finish before the cache closes: a
        # fill cut short would be wasted, never corrupt, but it would be a miss later.
        deadline = time.monotonic() + _SETTLE_SECONDS
        while self.app.cache.fills_in_progress() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.server.close()
        self.server.task_dispatcher.shutdown(timeout=5)
        self._thread.join(5)
        self.app.close()


class Client:
    """GETs through the local Vault: reads each body in chunks, reports bytes and the outcome."""

    def __init__(self, base_url: str, progress: Progress, outcomes: Outcomes) -> None:
        self.base_url = base_url
        self._progress = progress
        self._outcomes = outcomes
        self._session = requests.Session()
        self._session.trust_env = False  # no proxy of this machine between us and 127.0.0.1
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=16)
        self._session.mount("http://", adapter)

    def close(self) -> None:
        self._session.close()

    def get(self, item: str, path: str, headers: dict[str, str] | None = None,
            keep: bool = False) -> bytes:
        """GET ``path`` and record its outcome under ``item``; the body if ``keep``, else b"".

        Raises FetchFailed (already recorded) unless the whole body arrived."""
        transfer = self._progress.start(item)
        size = 0
        kept: list[bytes] = []
        try:
            with self._session.get(self.base_url + path,
                                   headers={**(headers or {}), PREFETCH_HEADER: "1"},
                                   stream=True, timeout=(10, 300)) as resp:
                if resp.status_code != 200:
                    raise FetchFailed(f"HTTP {resp.status_code}: {_reason(resp)}")
                length = resp.headers.get("Content-Length", "")
                transfer.total = int(length) if length.isdigit() else None
                for chunk in resp.iter_content(_CHUNK):
                    size += len(chunk)
                    transfer.advance(len(chunk))
                    if keep:
                        if size > _MAX_KEPT:
                            raise FetchFailed(f"over {_MAX_KEPT} bytes, too large to parse")
                        kept.append(chunk)
                if transfer.total is not None and size != transfer.total:
                    raise FetchFailed(f"got {size} of {transfer.total} bytes")
                status = resp.headers.get("X-Cache", "")
        except (FetchFailed, requests.RequestException) as exc:
            reason = str(exc) if isinstance(exc, FetchFailed) else f"{type(exc).__name__}: {exc}"
            self._outcomes.add(Outcome(item, FAILED, size, reason))
            raise FetchFailed(reason) from None
        finally:
            transfer.finish()
        self._outcomes.add(Outcome(item, result_of(status), size))
        return b"".join(kept)


def _reason(resp: requests.Response) -> str:
    """The first line of an error body (Vault's errors are short JSON or text)."""
    text = resp.text[:300].strip().splitlines()
    return text[0] if text else resp.reason or ""


class _Watcher:
    """WSGI wrapper: reports requests made by others (pip) as items of their own."""

    def __init__(self, app: Callable[..., Iterable[bytes]], progress: Progress,
                 outcomes: Outcomes) -> None:
        self._app = app
        self._progress = progress
        self._outcomes = outcomes
        self.part: str | None = None
        self._reported: set[str] = set()  # pip runs for two Pythons share files: one row each

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if environ.get("HTTP_X_VAULT_PREFETCH") or self.part is None or self.part not in path \
                or environ.get("REQUEST_METHOD") != "GET":
            return self._app(environ, start_response)
        seen: dict[str, str] = {}

        def start(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            seen["status"] = status
            seen.update({k.lower(): v for k, v in headers})
            return start_response(status, headers, *exc)

        body = self._app(environ, start)
        self._progress.add()
        name = path.rsplit("/", 1)[-1]
        length = seen.get("content-length", "")

        def ended(sent: int, complete: bool) -> None:
            status = seen.get("status", "?")
            if complete and status.startswith("200"):
                if path not in self._reported:
                    self._reported.add(path)
                    self._outcomes.add(Outcome(name, result_of(seen.get("x-cache", "")), sent))
            else:
                reason = f"HTTP {status}" if not status.startswith("200") else "cut short"
                self._outcomes.add(Outcome(name, FAILED, sent, reason))

        transfer = self._progress.start(name, int(length) if length.isdigit() else None)
        return _Counted(body, transfer, ended)


class _Counted:
    """A response body that reports its bytes as the server sends them."""

    def __init__(self, body: Iterable[bytes], transfer: Any,
                 ended: Callable[[int, bool], None]) -> None:
        self._body = body
        self._it = iter(body)
        self._transfer = transfer
        self._ended = ended
        self._sent = 0

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> bytes:
        chunk = next(self._it)
        self._sent += len(chunk)
        self._transfer.advance(len(chunk))
        return chunk

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            total = self._transfer.total
            self._transfer.finish()
            self._ended(self._sent, total is None or self._sent == total)
