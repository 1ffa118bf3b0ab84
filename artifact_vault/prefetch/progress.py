"""Progress of a long job (items and bytes): a live display on a terminal, log lines otherwise.

Used by ``artifact-vault prefetch``; written so ``export``/``import`` can use it too: the job
says how many items it knows of (``add``), and wraps each transfer in ``start(...)`` /
``advance`` / ``finish``. On a terminal a refresher thread redraws a few lines in place
(totals, rate, ETA, one bar per large transfer in flight); when the output is a file or a pipe
(CI logs) it writes one plain line every ``interval`` seconds instead, and never a control
character.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TextIO

_BAR_MIN_BYTES = 1024 * 1024  # transfers at least this large get their own bar
_MAX_BARS = 8
_REDRAW_SECONDS = 0.2
_BAR_WIDTH = 24


class Transfer:
    """One item in flight: bytes so far of ``total`` (None when unknown)."""

    def __init__(self, progress: Progress, name: str, total: int | None) -> None:
        self.name = name
        self.total = total
        self.done = 0
        self._progress = progress

    def advance(self, n: int) -> None:
        self._progress._advance(self, n)

    def finish(self) -> None:
        self._progress._finish(self)


class Progress:
    """Counts items and bytes for one job; use as a context manager around the job."""

    def __init__(self, title: str, stream: TextIO, tty: bool | None = None,
                 interval: float = 5.0) -> None:
        self.title = title
        self._stream = stream
        self._tty = stream.isatty() if tty is None else tty
        self._interval = interval
        self._lock = threading.Lock()
        self._total = 0
        self._finished = 0
        self._bytes = 0
        self._active: dict[int, Transfer] = {}
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drawn = 0  # lines of the last frame, to move back over

    def __enter__(self) -> Progress:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._refresh, name="progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._draw(final=True)

    def add(self, n: int = 1) -> None:
        """``n`` more items are known to be part of the job."""
        with self._lock:
            self._total += n

    def start(self, name: str, total: int | None = None) -> Transfer:
        transfer = Transfer(self, name, total)
        with self._lock:
            self._active[id(transfer)] = transfer
        return transfer

    def _advance(self, transfer: Transfer, n: int) -> None:
        with self._lock:
            transfer.done += n
            self._bytes += n

    def _finish(self, transfer: Transfer) -> None:
        with self._lock:
            if self._active.pop(id(transfer), None) is not None:
                self._finished += 1

    # -- rendering ---------------------------------------------------------------------------

    def _refresh(self) -> None:
        wait = _REDRAW_SECONDS if self._tty else self._interval
        while not self._stop.wait(wait):
            self._draw()

    def _draw(self, final: bool = False) -> None:
        lines = list(self._frame(final))
        if not self._tty:
            self._stream.write(lines[0] + "\n")
        else:
            # Back to the first line of the last frame, then rewrite it with each line cleared.
            up = f"\x1b[{self._drawn}F" if self._drawn else ""
            text = "".join(f"\x1b[2K{line}\n" for line in lines)
            clear = "\x1b[J"  # a frame shorter than the last leaves no stale lines below
            self._stream.write(up + text + clear)
            self._drawn = len(lines)
        self._stream.flush()

    def _frame(self, final: bool) -> Iterator[str]:
        with self._lock:
            elapsed = max(time.monotonic() - self._started, 1e-6)
            done, total, nbytes = self._finished, self._total, self._bytes
            active = sorted(self._active.values(), key=lambda t: -(t.total or 0))
            remaining = sum(t.total - t.done for t in active if t.total)
        rate = nbytes / elapsed
        head = (f"{self.title}: {done}/{max(total, done)} items, {human_bytes(nbytes)}, "
                f"{human_bytes(rate)}/s")
        if final:
            yield f"{head}, done in {human_time(elapsed)}"
            return
        # ETA: bytes left in flight, plus the items not started at the average size so far.
        pending = max(total - done - len(active), 0)
        if rate > 0:
            remaining += pending * nbytes / max(done + len(active), 1)
            yield f"{head}, ETA {human_time(remaining / rate)}"
        else:
            yield f"{head}, ETA -"
        if not self._tty:
            return
        for t in [t for t in active if (t.total or 0) >= _BAR_MIN_BYTES][:_MAX_BARS]:
            assert t.total is not None
            filled = int(_BAR_WIDTH * min(t.done / t.total, 1.0))
            bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
            yield (f"  [{bar}] {human_bytes(t.done):>9} / {human_bytes(t.total):<9} "
                   f"{shorten(t.name, 60)}")


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def human_time(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def shorten(text: str, width: int) -> str:
    """``text`` cut in the middle to ``width``: a wheel's name and its tags both stay readable."""
    if len(text) <= width:
        return text
    head = (width - 3) // 2
    return text[:head] + "..." + text[-(width - 3 - head):]
