"""A local upstream for tests: serves configured routes, counts requests, misbehaves on demand."""

from __future__ import annotations

import collections
import dataclasses
import gzip
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None  # answer If-None-Match with 304 when it matches
    last_modified: str | None = None
    chunked: bool = False  # no Content-Length: Transfer-Encoding: chunked
    announce: int | None = None  # Content-Length to announce instead of the true one
    reset_at: int | None = None  # drop the connection after this many body bytes
    delay: float = 0.0  # before the response headers
    hold: threading.Event | None = None  # before the response headers, until set
    trickle: float = 0.0  # between chunks
    chunk: int = 64 * 1024
    gate: threading.Event | None = None  # pause at gate_at bytes until set
    gate_at: int = 0
    stall_at: int | None = None  # go silent for ``stall`` seconds after this many body bytes
    stall: float = 0.0
    location: str | None = None  # for redirects
    gzip: bool = False  # send the body gzip'd to a client that accepts it (as PyPI does)
    ranges: bool = False  # answer "Range: bytes=A-B" with a 206 (at once: no gate or trickle)


class FakeUpstream:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: collections.Counter[str] = collections.Counter()
        self.log: list[tuple[str, str, dict[str, str]]] = []
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        # Concurrency seen by the upstream: open connections and requests being answered.
        self.open_now = self.open_peak = self.busy_now = self.busy_peak = 0
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                upstream._conns.add(self.connection)
                upstream._gauge("open", +1)

            def finish(self) -> None:
                upstream._gauge("open", -1)
                super().finish()

            def do_GET(self) -> None:  # noqa: N802
                upstream._serve(self, send_body=True)

            def do_HEAD(self) -> None:  # noqa: N802
                upstream._serve(self, send_body=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and cut kept-alive connections: the upstream is gone."""
        self.server.shutdown()
        self.server.server_close()
        for conn in list(self._conns):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def add(self, path: str, body: bytes = b"", **kw: object) -> Route:
        route = Route(body=body, **kw)  # type: ignore[arg-type]
        self.routes[path] = route
        return route

    def count(self, path: str) -> int:
        with self._lock:
            return self.hits[path]

    def _gauge(self, name: str, delta: int) -> None:
        with self._lock:
            now = getattr(self, f"{name}_now") + delta
            setattr(self, f"{name}_now", now)
            setattr(self, f"{name}_peak", max(now, getattr(self, f"{name}_peak")))

    def _serve(self, h: BaseHTTPRequestHandler, send_body: bool) -> None:
        self._gauge("busy", +1)
        try:
            self._answer(h, send_body)
        finally:
            self._gauge("busy", -1)

    def _answer(self, h: BaseHTTPRequestHandler, send_body: bool) -> None:
        path = h.path
        with self._lock:
            self.hits[path] += 1
            self.log.append((h.command, path, dict(h.headers.items())))
        route = self.routes.get(path)
        if route is None:
            self._simple(h, 404, b"not found\n")
            return
        if route.delay:
            time.sleep(route.delay)
        if route.hold is not None:
            route.hold.wait(30)
        if route.location:
            h.send_response(route.status)
            h.send_header("Location", route.location)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if route.status != 200:
            self._simple(h, route.status, b"upstream says no\n", route.headers)
            return
        if route.etag and h.headers.get("If-None-Match") == route.etag:
            h.send_response(304)
            h.send_header("ETag", route.etag)
            h.end_headers()
            return
        asked = re.fullmatch(r"bytes=(\d+)-(\d+)", h.headers.get("Range", ""))
        if route.ranges and asked and int(asked[1]) < len(route.body):
            first, last = int(asked[1]), min(int(asked[2]), len(route.body) - 1)
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {first}-{last}/{len(route.body)}")
            h.send_header("Content-Length", str(last - first + 1))
            h.end_headers()
            if send_body:
                h.wfile.write(route.body[first:last + 1])
            return
        if route.gzip and "gzip" in h.headers.get("Accept-Encoding", ""):
            route = dataclasses.replace(route, body=gzip.compress(route.body),
                                        headers={**route.headers, "Content-Encoding": "gzip"})
        h.send_response(200)
        for k, v in route.headers.items():
            h.send_header(k, v)
        if route.etag:
            h.send_header("ETag", route.etag)
        if route.last_modified:
            h.send_header("Last-Modified", route.last_modified)
        if route.chunked:
            h.send_header("Transfer-Encoding", "chunked")
        else:
            h.send_header("Content-Length", str(route.announce if route.announce is not None
                                                 else len(route.body)))
        h.end_headers()
        if send_body:
            self._body(h, route)

    def _body(self, h: BaseHTTPRequestHandler, route: Route) -> None:
        body = route.body
        pos = 0
        try:
            while pos < len(body):
                if route.gate is not None and pos >= route.gate_at and not route.gate.is_set():
                    route.gate.wait(30)
                end = min(pos + route.chunk, len(body))
                if route.gate is not None and pos < route.gate_at < end:
                    end = route.gate_at
                if route.reset_at is not None and end > route.reset_at:
                    end = route.reset_at
                if route.stall_at is not None and pos < route.stall_at < end:
                    end = route.stall_at
                piece = body[pos:end]
                if piece:
                    if route.chunked:
                        h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    else:
                        h.wfile.write(piece)
                    h.wfile.flush()
                pos = end
                if route.reset_at is not None and pos >= route.reset_at:
                    _reset(h)
                    return
                if route.stall_at is not None and pos == route.stall_at:
                    time.sleep(route.stall)
                if route.trickle:
                    time.sleep(route.trickle)
            if route.chunked:
                h.wfile.write(b"0\r\n\r\n")
            elif route.announce is not None and route.announce > len(body):
                _reset(h)  # announced more than it has: end the connection early
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _simple(self, h: BaseHTTPRequestHandler, status: int, body: bytes,
                headers: dict[str, str] | None = None) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)


def _reset(h: BaseHTTPRequestHandler) -> None:
    """Close the connection abruptly, as a crashed upstream or a cut cable would."""
    h.close_connection = True
    try:
        h.wfile.flush()
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        h.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
