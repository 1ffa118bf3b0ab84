"""Give freed heap memory back to the system every half minute (glibc's ``malloc_trim``).

Each fill runs in a thread of its own, and glibc serves threads from several malloc arenas
(up to eight per CPU). Memory freed in an arena mostly stays mapped and counted in RSS. Under
a stream of new keys RSS rose ~6 MiB over a 10-minute soak, while Python's own blocks were
flat; mallinfo2 put the growth in the arenas, half of it as free space (bench/load.py
--soak). ``malloc_trim(0)`` hands the free pages of every arena back; ctypes releases the GIL
for the call, which takes a few milliseconds. Elsewhere than glibc there is nothing to do.
"""

from __future__ import annotations

import ctypes
import logging
import threading

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 30.0


def start_trimming(stop: threading.Event, interval: float = INTERVAL_SECONDS) -> bool:
    """Trim every ``interval`` seconds until ``stop`` is set; False if malloc_trim is absent."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]

    def run() -> None:
        while not stop.wait(interval):
            trim(0)

    threading.Thread(target=run, name="malloc_trim", daemon=True).start()
    return True
