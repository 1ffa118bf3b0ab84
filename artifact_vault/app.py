"""The WSGI layer: route by prefix, turn replies and errors into responses, log each request.

Nothing here knows about any upstream protocol. A request is checked (its path can never name
anything outside its backend), handed to the backend whose prefix matches best, and the reply
is rendered: cached bodies through ``delivery`` (ranges, 304s), errors through the one status
table in ``errors``.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlsplit

from . import __version__
from .admin import PREFIX as ADMIN_PREFIX, Admin
from .auth import CHALLENGE, Gate
from .backends import BACKENDS, Backend, Context
from .bodies import FileBody, Primed, Whole, wrap_body
from .cache import Cache
from .config import Config
from .delivery import deliver, etag_matches
from .errors import (AuthFailed, BadRequest, MethodNotAllowed, RangeNotSatisfiable, VaultError,
                     status_for)
from .exchange import Reply, Request, json_reply
from .hot import Hot, HotHits
from .logs import REQUEST_ID, AccessLog
from .metrics import Metrics
from .routing import Route, Router
from .status import StatusPages

log = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_UNSAFE_ENCODED = re.compile(r"%(2f|5c|00)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")
_QUERY_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
StartResponse = Callable[..., Any]
_SMALL = 64 * 1024
_STATUS_LINES = {s.value: f"{s.value} {s.phrase}" for s in HTTPStatus}
_ENV_NAMES: dict[str, str] = {}  # header name -> WSGI environ key; names come from our code


def target_path(target: str) -> str:
    """The path of a request target, never raising. Origin-form ("/p?q") is cut at "?":
    urlsplit would read "//h/p" as a host and raise on "//[" (a 500). Absolute-form
    ("http://h/p") gives its path, so Vault answers for its own paths and never forwards to
    the named host; "" if it does not parse, which is refused like any proxy request."""
    if target.startswith("/"):
        return target.partition("?")[0].partition("#")[0]
    try:
        return urlsplit(target).path
    except ValueError:
        return ""


def safe_path(raw: str) -> str:
    """Percent-decode a request path, refusing anything that could climb out of its prefix.

    Encoded slashes, backslashes and NULs, '.' and '..' segments and empty segments ('//')
    are refused outright rather than normalized: a normalizing proxy in front of Vault and
    Vault itself could disagree on the result, and no real client sends them."""
    path = raw
    if "%" in raw:
        if _UNSAFE_ENCODED.search(raw):
            raise BadRequest("encoded '/', '\\' or NUL in the path")
        try:
            path = unquote(raw, errors="strict")
        except UnicodeDecodeError:
            raise BadRequest("the path is not valid UTF-8") from None
    segments = path.split("/")
    if _CONTROL.search(path) or any(s in (".", "..") for s in segments) or "" in segments[:-1]:
        raise BadRequest("the path has '.', '..', '//' or control characters")
    return path


def safe_query(environ: dict[str, Any]) -> str:
    """The raw query string, refused if it holds a raw control character. Backends forward it
    upstream and into Location headers; waitress never passes CR/LF there, but a server or
    proxy in front that decodes the query might."""
    query: str = environ.get("QUERY_STRING", "")
    if _QUERY_CONTROL.search(query):
        raise BadRequest("control characters in the query string")
    return query


class App:
    """The WSGI application. Build it with ``build_app``; call ``close`` when done."""

    def __init__(self, config: Config, cache: Cache, backends: list[Backend],
                 metrics: Metrics, access_log: AccessLog) -> None:
        self.config = config
        self.cache = cache
        self.metrics = metrics
        self._access_log = access_log
        self._backends = backends
        self._started = time.time()
        # Request ids: a random prefix per process and a counter. Unique, and no getrandom
        # system call (which also hands the GIL around) per request.
        self._rid_prefix = os.urandom(4).hex()
        self._rids = itertools.count()
        self._own = {"/health": self._health, "/ready": self._ready, "/metrics": self._metrics,
                     "/v2": self._registry_root}
        self._router = Router(backends, ["/health", "/ready", "/metrics"])
        self._admin = Admin(config, cache)
        self._pages = StatusPages(config, cache, backends, metrics, self._started)
        self._gate = Gate(config.auth)
        self._hot = HotHits(cache) if not self._gate.enabled else None
        # Errors on the registry API (even before routing: a 401) use the OCI error format.
        self._api_errors = next((b for b in backends if getattr(b, "registry_hosts", ())), None)

    def close(self) -> None:
        for backend in self._backends:
            backend.close()
        self._pages.close()
        self.cache.close()
        self._access_log.close()

    def stop_background(self) -> None:
        """A stop has begun: the backends start no more background work."""
        for backend in self._backends:
            stop = getattr(backend, "stop_background", None)
            if stop is not None:
                stop()

    def busy(self) -> int:
        """Responses still being sent plus downloads still running: what a stop waits for."""
        return self.metrics.in_progress + self.cache.fills_in_progress()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.monotonic()
        self.metrics.request_started()
        rid = environ.get("HTTP_X_REQUEST_ID", "")
        rid = rid if _REQUEST_ID.match(rid) else f"{self._rid_prefix}{next(self._rids):08x}"
        method = environ["REQUEST_METHOD"]
        hot = self._hot.lookup(environ) if self._hot is not None else None
        if hot is not None:
            start_response(hot.status, [*hot.headers, ("X-Request-Id", rid)])
            return Whole(hot.body, _AccessRecord(self.metrics, self._access_log, hot.backend,
                                                 method, hot.path, 200, "HIT", rid, started,
                                                 0.0).finished)
        raw_path = target_path(environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/"))
        token = REQUEST_ID.set(rid)
        try:
            backend, reply_status, headers, body, cache_status = self._respond(
                environ, method, raw_path)
        finally:
            REQUEST_ID.reset(token)
        if cache_status:
            headers["X-Cache"] = cache_status
        status_line = _STATUS_LINES.get(reply_status) or str(reply_status)
        items = list(headers.items())
        if (isinstance(body, _Inline) and body.entry is not None and reply_status == 200
                and self._hot is not None):
            assert backend is not None
            self._hot.keep(environ, Hot(body.entry, backend.name, raw_path, status_line, items,
                                        body[0]))
        start_response(status_line, [*items, ("X-Request-Id", rid)])
        # Time in the backend is upstream time unless the answer came from the cache.
        upstream_time = (time.monotonic() - started
                         if cache_status not in (None, "HIT", "STALE") else 0.0)
        record = _AccessRecord(self.metrics, self._access_log, backend.name if backend else "-",
                               method, raw_path,
                               reply_status, cache_status, rid, started, upstream_time)
        return wrap_body(body, record.finished)

    def _respond(self, environ: dict[str, Any], method: str, raw_path: str) -> tuple[
            Backend | None, int, dict[str, str], Iterable[bytes], str | None]:
        """Route, handle and render one request; every failure becomes an error response."""
        backend = None
        try:
            if method == "CONNECT" or not raw_path.startswith("/"):
                # Vault is never a forward proxy: CONNECT host:port or a target with no path
                raise MethodNotAllowed(f"{method} {raw_path[:100]}: Vault is not a proxy")
            try:
                token = self._gate.authenticate(environ, raw_path)
            except AuthFailed:
                public = None if "HTTP_AUTHORIZATION" in environ else self._pages.reply(
                    environ, method, raw_path, detailed=False)
                if public is None:
                    raise
                return (None, *self._render(environ, method, public), None)
            pages = self._pages.reply(environ, method, raw_path)  # /, /-/catalog, /-/api/...
            if pages is not None:
                return (None, *self._render(environ, method, pages), None)
            if raw_path.startswith(ADMIN_PREFIX):
                reply = self._admin.handle(environ, method, raw_path)
                return None, *self._render(environ, method, reply), None
            route = self._router.route(raw_path, environ.get("QUERY_STRING", ""))
            self._gate.authorize(token, raw_path, route.backend.prefix if route.backend else None)
            backend = route.backend
            if backend is None:
                if method not in ("GET", "HEAD"):
                    raise MethodNotAllowed(f"{method} is not allowed on {raw_path}")
                reply = self._own[route.mount]()
            else:
                reply = self._handle(backend, environ, method, route)
            try:
                status, headers, body = self._render(environ, method, reply)
            except FileNotFoundError:
                if backend is None:
                    raise
                # Evicted between the lookup and open(): asking again refetches it.
                reply = self._handle(backend, environ, method, route)
                status, headers, body = self._render(environ, method, reply)
            return backend, status, headers, body, reply.cache_status if backend else None
        except VaultError as exc:
            api = self._api_errors if (raw_path + "/").startswith("/v2/") else None
            status, headers, body = self._error(environ, exc, backend or api)
            return backend, status, headers, body, "BYPASS" if backend else None
        except Exception as exc:  # noqa: BLE001 - log it in full, answer without a traceback
            log.exception("unexpected error handling %s %s", method, raw_path)
            status, headers, body = self._error(
                environ, VaultError(f"internal error: {type(exc).__name__}"), backend)
            return backend, status, headers, body, None

    def _handle(self, backend: Backend, environ: dict[str, Any], method: str,
                route: Route) -> Reply:
        request = Request(method, safe_path(route.rest), safe_query(environ),
                          _Headers(environ), route.mount)
        return backend.handle(request)

    def _render(self, environ: dict[str, Any], method: str,
                reply: Reply) -> tuple[int, dict[str, str], Iterable[bytes]]:
        if reply.served is None:
            etag = reply.headers.get("ETag")
            match = environ.get("HTTP_IF_NONE_MATCH")
            if reply.status == 200 and etag and match and etag_matches(match, etag):
                return 304, {k: v for k, v in reply.headers.items()
                             if k in ("ETag", "Last-Modified", "Vary", "Cache-Control")}, ()
            body: Iterable[bytes] = reply.body if method != "HEAD" else ()
            return reply.status, dict(reply.headers), body
        served = reply.served
        try:
            d = deliver(method, _Headers(environ), served)
        except RangeNotSatisfiable as exc:
            served.discard()
            return 416, {"Content-Range": f"bytes */{exc.size}", "Content-Length": "0"}, ()
        headers = {**d.headers, **{k.lower(): v for k, v in reply.headers.items()}}
        if not d.send_body:
            served.discard()
            return d.status, headers, ()
        wrapper = environ.get("wsgi.file_wrapper")
        if served.path is not None and served.fill is None:
            length = (served.size if d.end is None else d.end) - d.start  # type: ignore[operator]
            if length <= _SMALL:
                # Small bodies are sent from this thread: handing a file to the server's I/O
                # loop costs a thread hand-off that is dearer than the copy.
                with open(served.path, "rb") as f:
                    f.seek(d.start)
                    return d.status, headers, _Inline(f.read(length), served)
            if wrapper is not None:
                f = open(served.path, "rb")
                f.seek(d.start)
                return d.status, headers, FileBody(f, wrapper, length)
        if served.fill is not None or served.stream is not None:
            return d.status, headers, Primed(served.open(d.start, d.end))
        return d.status, headers, served.open(d.start, d.end)

    def _error(self, environ: dict[str, Any], exc: VaultError,
               backend: Backend | None) -> tuple[int, dict[str, str], Iterable[bytes]]:
        status = status_for(exc)
        if status >= 500:
            log.warning("%d: %s", status, exc.message)
        headers: dict[str, str] = {}
        render_error = getattr(backend, "render_error", None)
        if render_error is not None:  # the backend's protocol has its own error format
            reply = render_error(exc, status)
            headers = dict(reply.headers)
            body = reply.body if environ["REQUEST_METHOD"] != "HEAD" else []
            return status, {**headers, **self._error_headers(exc)}, body
        headers.update(self._error_headers(exc))
        if "json" in environ.get("HTTP_ACCEPT", ""):
            doc = {"error": {"status": status, "message": exc.message}}
            if exc.upstream:
                doc["error"]["upstream"] = exc.upstream
            body = json.dumps(doc).encode() + b"\n"
            headers["Content-Type"] = "application/json"
        else:
            body = f"{status} {HTTPStatus(status).phrase}: {exc.message}\n".encode()
            headers["Content-Type"] = "text/plain; charset=utf-8"
        headers["Content-Length"] = str(len(body))
        return status, headers, [body] if environ["REQUEST_METHOD"] != "HEAD" else []

    @staticmethod
    def _error_headers(exc: VaultError) -> dict[str, str]:
        headers = {}
        if isinstance(exc, MethodNotAllowed):
            headers["Allow"] = ", ".join(exc.allowed)
        if isinstance(exc, AuthFailed):
            headers["WWW-Authenticate"] = CHALLENGE
        if getattr(exc, "retry_after", None):
            headers["Retry-After"] = exc.retry_after  # type: ignore[attr-defined]
        return headers

    def _registry_root(self) -> Reply:
        """``GET /v2/``: clients probe it to learn that this is a registry API."""
        return Reply(status=200, body=[b"{}"], headers={
            "Docker-Distribution-API-Version": "registry/2.0", "Content-Type": "application/json",
            "Content-Length": "2"})

    def _health(self) -> Reply:
        doc = {"status": "ok", "version": __version__,
               "uptime_seconds": round(time.time() - self._started, 1)}
        return json_reply(200, doc)

    def _ready(self) -> Reply:
        writable = os.access(self.cache.blobs.tmp_dir, os.W_OK)
        index = self.cache.index.healthy()
        ok = writable and index
        return json_reply(200 if ok else 503, {"ready": ok, "cache_dir_writable": writable,
                                                "index_open": index})

    def _metrics(self) -> Reply:
        body = self.metrics.render()
        return Reply(status=200, body=[body], headers={
            "Content-Type": "text/plain; version=0.0.4; charset=utf-8",
            "Content-Length": str(len(body))})


class _Headers(Mapping[str, str]):
    """Request headers by lower-case name, read from the WSGI environ on demand: a request
    asks for two or three of them, so no dict of all of them is built."""

    def __init__(self, environ: dict[str, Any]) -> None:
        self._environ = environ

    def __getitem__(self, name: str) -> str:
        return self._environ[_env_name(name)]  # type: ignore[no-any-return]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _env_name(name) in self._environ

    def __iter__(self) -> Iterator[str]:
        return (k[5:].replace("_", "-").lower() for k in self._environ if k.startswith("HTTP_"))

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _Inline(list):  # type: ignore[type-arg]
    """A small cached body read whole, with the cache entry it came from (for ``HotHits``)."""

    def __init__(self, data: bytes, served: Any) -> None:
        super().__init__((data,))
        self.entry = served.entry if served.cache_status == "HIT" else None


def _env_name(name: str) -> str:
    key = _ENV_NAMES.get(name)
    if key is None:
        key = _ENV_NAMES[name] = "HTTP_" + name.upper().replace("-", "_")
    return key


@dataclass(frozen=True)
class _AccessRecord:
    """What the access log line and the request metrics need, once the body is sent."""

    metrics: Metrics
    log: AccessLog
    backend: str
    method: str
    path: str
    status: int
    cache: str | None
    request_id: str
    started: float
    upstream_time: float

    def finished(self, sent: int) -> None:
        self.metrics.request_done(self.backend, self.cache or "-", self.status, sent)
        if self.log.enabled:
            self.log.write(self.request_id, self.method, self.path, self.status, sent,
                           time.monotonic() - self.started, self.cache, self.upstream_time)


def build_app(config: Config) -> App:
    """Build the cache, the metrics and every configured backend, and the app around them."""
    metrics = Metrics()
    cache = Cache(config.cache_dir, config.cache, metrics)
    metrics.watch_cache(cache.index.totals)
    ctx = Context(cache=cache, metrics=metrics, offline=config.offline,
                  pool_size=config.threads, public_url=config.public_url)
    backends: list[Backend] = [BACKENDS[spec.type](spec, ctx) for spec in config.backends]
    return App(config, cache, backends, metrics, AccessLog(config.log_format))
