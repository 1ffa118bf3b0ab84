"""Logging set-up: one format for every line, each tagged with the id of its request."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import threading
import time
from typing import Any, TextIO

# The id of the request being handled; fill threads inherit the id of the request that
# started them, so a failed download can be traced to who asked for it.
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


def json_line(created: float, level: str, logger: str, request_id: str, message: str,
              **fields: Any) -> str:
    """One JSON log line; every JSON line, the access log's included, has these keys."""
    return json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)),
                       "level": level, "logger": logger, "request_id": request_id,
                       "message": message, **fields})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = {"traceback": self.formatException(record.exc_info)} if record.exc_info else {}
        return json_line(record.created, record.levelname, record.name,
                         getattr(record, "request_id", "-"), record.getMessage(), **extra)


def setup_logging(level: str, fmt: str) -> None:
    # Every request logs a line: skip what our formats never show (caller frame, process and
    # thread lookups cost more than the rest of a cache hit's logging).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("urllib3").setLevel(max(logging.WARNING, root.level))


class AccessLog:
    """The access log: one line per request, written straight to the log stream.

    It is the one line every request pays for, so it skips the logging machinery (a record
    object, formatter and filter per line), which cost more than all the rest of a small cache
    hit, and lines are written in batches, at most ``_FLUSH_SECONDS`` late (nginx's
    ``access_log ... buffer= flush=``): a write call per request cost as much again. The line
    has the shape of every other line, text or JSON, and is written only when INFO is
    enabled."""

    NAME = "artifact_vault.access"
    _FLUSH_SECONDS = 0.5
    _FLUSH_LINES = 256

    def __init__(self, fmt: str, stream: TextIO | None = None) -> None:
        self._json = fmt == "json"
        self._stream = stream or sys.stderr
        self.enabled = logging.getLogger(self.NAME).isEnabledFor(logging.INFO)
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        self._lines: list[str] = []
        self._second = -1
        self._stamp = ""
        self._closed = threading.Event()
        if self.enabled:
            threading.Thread(target=self._flusher, name="access log", daemon=True).start()

    def write(self, request_id: str, method: str, path: str, status: int, sent: int,
              elapsed: float, cache: str | None, upstream_time: float) -> None:
        now = time.time()
        if self._json:
            line = json_line(now, "INFO", self.NAME, request_id,
                             f"{method} {path} {status} {sent}B", method=method, path=path,
                             status=status, bytes=sent, duration=round(elapsed, 4),
                             cache=cache, upstream_time=round(upstream_time, 4))
        else:
            second = int(now)
            if second != self._second:  # strftime once a second, not once a request
                self._second = second
                self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            line = (f"{self._stamp},{int((now - second) * 1000):03d} INFO {self.NAME} "
                    f"[{request_id}] {method} {path} {status} {sent}B {elapsed:.3f}s "
                    f"cache={cache or '-'} upstream={upstream_time:.3f}s")
        with self._lock:
            self._lines.append(line)
            full = len(self._lines) >= self._FLUSH_LINES
        if full:
            self._flush()

    def close(self) -> None:
        self._closed.set()
        self._flush()

    def _flusher(self) -> None:
        while not self._closed.wait(self._FLUSH_SECONDS):
            self._flush()

    def _flush(self) -> None:
        # The batch is taken under the lock every request appends under, and written outside
        # it: requests never wait for the log file. One writer at a time keeps batches in order.
        with self._writing:
            with self._lock:
                lines, self._lines = self._lines, []
            if lines:
                lines.append("")
                self._stream.write("\n".join(lines))
                self._stream.flush()
