"""Progress of a long command (export, import, verify, prefetch) on stderr.

One display for every command, so they all look and read alike: a line with items and bytes
done (of the totals, when known), the rate and an ETA. On a terminal a refresher thread redraws
a few lines in place: that line behind a bar for the whole job when its size is known, and one
bar per large transfer in flight (prefetch downloads several at once). When the output is a
file or a pipe (CI logs, cron mail) it writes one plain line every ``interval`` seconds instead
and never a control character, so the log shows progress without thousands of redraws. Written
here rather than taken from ``rich``/``tqdm``: a hundred lines do it, and a dependency would be
one more thing to pin and audit for every deployment.
"""

from __future__ import annotations

import sys
import threading
import time
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
    """Counts items and bytes for one job; use as a context manager around the job.

    Work is counted whole with ``advance`` (an exported blob, a verified file) or as a transfer
    (``start``, then ``Transfer.advance`` and ``finish``) that has a bar while in flight.
    Totals are given up front (``items``, ``total_bytes``) or grow with ``add`` as the job
    discovers its items; 0 is unknown. The final "done" line is drawn only if the job ends
    without an exception: after an error, its message is the last word.
    """

    def __init__(self, title: str, stream: TextIO | None = None, *, items: int = 0,
                 total_bytes: int = 0, tty: bool | None = None, interval: float = 5.0,
                 enabled: bool = True) -> None:
        self.title = title
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty() if tty is None else tty
        self._interval = interval
        self._enabled = enabled
        self._lock = threading.Lock()
        self._total, self._total_bytes = items, total_bytes
        self._finished = self._bytes = 0
        self._active: dict[int, Transfer] = {}
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drawn = 0  # lines of the last frame, to move back over

    def __enter__(self) -> Progress:
        self._started = time.monotonic()
        if self._enabled:
            self._thread = threading.Thread(target=self._refresh, name="progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            if exc_type is None:
                self._draw(final=True)

    def add(self, n: int = 1) -> None:
        """``n`` more items are known to be part of the job."""
        with self._lock:
            self._total += n

    def advance(self, items: int = 0, nbytes: int = 0) -> None:
        """``items`` more done, ``nbytes`` more read or written."""
        with self._lock:
            self._finished += items
            self._bytes += nbytes

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
        lines = self._frame(final)
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

    def _frame(self, final: bool) -> list[str]:
        with self._lock:
            elapsed = max(time.monotonic() - self._started, 1e-6)
            done, nbytes, total_bytes = self._finished, self._bytes, self._total_bytes
            total = max(self._total, done) if self._total else 0
            active = sorted(self._active.values(), key=lambda t: -(t.total or 0))
            in_flight = sum(t.total - t.done for t in active if t.total)
        rate = nbytes / elapsed
        items = f"{done}/{total}" if total else str(done)
        size = (f"{human_bytes(nbytes)}/{human_bytes(total_bytes)}" if total_bytes
                else human_bytes(nbytes))
        head = f"{self.title}: {items} items, {size}, {human_bytes(rate)}/s"
        if final:
            return [f"{head}, done in {human_time(elapsed)}"]
        if total_bytes or total:
            # Without a byte total: bytes left in flight, plus the items not started at the
            # average size so far.
            pending = max(total - done - len(active), 0)
            left = (total_bytes - nbytes if total_bytes
                    else in_flight + pending * nbytes / max(done + len(active), 1))
            head += f", ETA {human_time(left / rate)}" if rate > 0 else ", ETA -"
        if not self._tty:
            return [head]
        if total_bytes or total:
            head = f"{_bar(nbytes / total_bytes if total_bytes else done / total)} {head}"
        big = [t for t in active if (t.total or 0) >= _BAR_MIN_BYTES][:_MAX_BARS]
        return [head] + [f"  {_bar(t.done / t.total)} {human_bytes(t.done):>9} / "
                         f"{human_bytes(t.total):<9} {shorten(t.name, 60)}"
                         for t in big if t.total]


def _bar(part: float) -> str:
    filled = int(_BAR_WIDTH * min(part, 1.0))
    return f"[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}]"


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable: the loop returns at TiB")


def human_time(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def shorten(text: str, width: int) -> str:
    """``text`` cut in the middle to ``width``: a wheel's name and its tags both stay readable."""
    if len(text) <= width:
        return text
    head = (width - 3) // 2
    return text[:head] + "..." + text[-(width - 3 - head):]
