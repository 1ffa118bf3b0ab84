"""Progress of a long command (export, import, verify, prefetch) on stderr.

On a terminal one line is redrawn in place: a bar, items and bytes done, and the rate. When
stderr is a file or a pipe (CI logs, cron mail) a plain line is written every few seconds
instead, so the log shows progress without thousands of carriage returns. Written here rather
than taken from ``rich``/``tqdm``: forty lines do it, and a dependency would be one more thing
to pin and audit for every deployment.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

_BAR = 24
_REDRAW_SECONDS = 0.2
_LINE_SECONDS = 5.0


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - the loop always returns


class Progress:
    """``advance`` as work is done, ``close`` at the end. Totals may be unknown (0)."""

    def __init__(self, label: str, items: int = 0, total_bytes: int = 0,
                 stream: TextIO | None = None, enabled: bool = True) -> None:
        self._label = label
        self._items, self._bytes = items, total_bytes
        self._done_items = self._done_bytes = 0
        self._out = stream if stream is not None else sys.stderr
        self._enabled = enabled
        self._tty = enabled and self._out.isatty()
        self._started = self._last = time.monotonic()

    def advance(self, items: int = 0, nbytes: int = 0) -> None:
        self._done_items += items
        self._done_bytes += nbytes
        now = time.monotonic()
        if self._enabled and now - self._last >= (_REDRAW_SECONDS if self._tty else _LINE_SECONDS):
            self._last = now
            self._write(self._line(now), final=False)

    def close(self) -> None:
        if self._enabled:
            self._write(self._line(time.monotonic()) + " done", final=True)

    def _line(self, now: float) -> str:
        rate = self._done_bytes / max(now - self._started, 1e-6)
        items = f"{self._done_items}/{self._items}" if self._items else str(self._done_items)
        size = (f"{human_bytes(self._done_bytes)}/{human_bytes(self._bytes)}" if self._bytes
                else human_bytes(self._done_bytes))
        line = f"{self._label}: {items} items, {size}, {human_bytes(rate)}/s"
        if self._bytes or self._items:
            part = (self._done_bytes / self._bytes if self._bytes
                    else self._done_items / self._items)
            filled = int(_BAR * min(part, 1.0))
            line = f"[{'#' * filled}{'.' * (_BAR - filled)}] {line}"
        return line

    def _write(self, line: str, final: bool) -> None:
        if self._tty:
            self._out.write(f"\r\x1b[K{line}" + ("\n" if final else ""))
        else:
            self._out.write(line + "\n")
        self._out.flush()
