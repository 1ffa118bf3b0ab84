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
    hit (bench/small_rps.py: 0.45 of a bare waitress app with it, 0.85 without). The line has
    the shape of every other line, text or JSON, and is written only when INFO is enabled."""

    NAME = "artifact_vault.access"

    def __init__(self, fmt: str, stream: TextIO | None = None) -> None:
        self._json = fmt == "json"
        self._stream = stream or sys.stderr
        self._enabled = logging.getLogger(self.NAME).isEnabledFor(logging.INFO)
        self._lock = threading.Lock()
        self._second = -1
        self._stamp = ""

    def write(self, request_id: str, message: str, fields: dict[str, Any]) -> None:
        if not self._enabled:
            return
        now = time.time()
        if self._json:
            line = json_line(now, "INFO", self.NAME, request_id, message, **fields)
        else:
            second = int(now)
            if second != self._second:  # strftime once a second, not once a request
                self._second = second
                self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            line = (f"{self._stamp},{int((now - second) * 1000):03d} INFO {self.NAME} "
                    f"[{request_id}] {message}")
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()
