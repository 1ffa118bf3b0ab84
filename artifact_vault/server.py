"""The HTTP server around the app: waitress, tuned for long streaming responses."""

from __future__ import annotations

from typing import Any

import waitress
from waitress.channel import HTTPChannel


class _Channel(HTTPChannel):
    """Closes a connection that opens with a TLS handshake instead of waiting for a request.

    docker, podman and skopeo try HTTPS first against a registry they were told is insecure,
    and fall back to HTTP only when the TLS attempt fails. Without this, waitress would wait
    for a request line that never comes, and every pull would stall for the client's TLS
    timeout (10 s in skopeo)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        # waitress reads a cached file in pieces of the socket's send buffer, which Linux sizes
        # up to 4 MiB: twenty clients meant 80 MiB of transient copies. 512 KiB still sends at
        # full speed (bench/hit_throughput.py).
        self.sendbuf_len = min(self.sendbuf_len, 512 * 1024)

    def received(self, data: bytes) -> bool:
        if self.request is None and not self.requests and data[:2] == b"\x16\x03":
            self.will_close = True
            self.close()
            return False
        return super().received(data)


def create_server(app: Any, host: str, port: int, threads: int) -> Any:
    """A waitress server for ``app``, not yet running (call ``.run()``)."""
    # A streamed miss blocks its worker once 2 MiB wait unsent, below the 4 MiB at which
    # waitress would spill the buffer to a temp file: memory per slow client stays bounded and
    # nothing is written to disk twice (bench/rss.py: cold peak 644 -> ~150 MiB).
    server = waitress.create_server(
        app, host=host, port=port, threads=threads, ident="artifact-vault",
        channel_timeout=300, connection_limit=1000, asyncore_use_poll=True,
        outbuf_overflow=4 * 1024 * 1024, outbuf_high_watermark=2 * 1024 * 1024)
    server.channel_class = _Channel
    return server
