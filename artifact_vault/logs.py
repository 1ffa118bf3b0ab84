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
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
               "level": record.levelname, "logger": record.name,
               "request_id": getattr(record, "request_id", "-"), "message": record.getMessage()}
        doc.update(getattr(record, "fields", {}))
        if record.exc_info:
            doc["traceback"] = self.formatException(record.exc_info)
        return json.dumps(doc)


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
            doc = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)), "level": "INFO",
                   "logger": self.NAME, "request_id": request_id, "message": message, **fields}
            line = json.dumps(doc)
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
