"""The heap trimmer: found on glibc, runs, and stops when told."""

from __future__ import annotations

import platform
import threading
import time

import pytest

from artifact_vault.heap import start_trimming


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_the_trimmer_runs_on_glibc_and_stops(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")  # as an operator's: this process keeps its arenas
    stop = threading.Event()
    assert start_trimming(stop, interval=0.01)
    time.sleep(0.1)  # several trims: none may crash the process
    assert any(t.name == "malloc_trim" for t in threading.enumerate())
    stop.set()
    deadline = time.monotonic() + 5
    while any(t.name == "malloc_trim" for t in threading.enumerate()):
        assert time.monotonic() < deadline
        time.sleep(0.01)
