"""The floor for Vault's small-file hits: waitress, one WSGI app that only returns one file.

    .venv/bin/python bench/bare_waitress.py FILE --port PORT [--threads 32]

Same waitress settings as ``artifact_vault.cli.serve`` (threads, poll loop, connection limit,
outbuf_overflow), no routing, no cache lookup, no logging: every request, whatever its path,
gets FILE (read per request, like a cache hit reads its blob) with a Content-Length.
"""

from __future__ import annotations

import argparse
import signal
from typing import Any

import waitress


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=32)
    args = parser.parse_args()
    path = args.file

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with open(path, "rb") as f:
            body = f.read()
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    server = waitress.create_server(
        app, host="127.0.0.1", port=args.port, threads=args.threads, ident="bare",
        channel_timeout=300, connection_limit=1000, asyncore_use_poll=True,
        outbuf_overflow=8 * 1024 * 1024)
    signal.signal(signal.SIGTERM, lambda *_: server.close())
    try:
        server.run()
    except (KeyboardInterrupt, OSError):
        pass


if __name__ == "__main__":
    main()
