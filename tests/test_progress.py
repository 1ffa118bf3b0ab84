"""The progress display: lines redrawn in place on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import io
import time

import pytest

from artifact_vault import progress
from artifact_vault.progress import Progress, human_bytes


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def wait_for(out: io.StringIO, text: str) -> None:
    deadline = time.monotonic() + 10
    while text not in out.getvalue():
        assert time.monotonic() < deadline, out.getvalue()
        time.sleep(0.01)


def test_on_a_terminal_the_frame_is_redrawn_with_a_bar_per_large_transfer(monkeypatch):
    monkeypatch.setattr(progress, "_REDRAW_SECONDS", 0.01)
    out = Terminal()
    with Progress("export", out, items=4, total_bytes=4 * 1024**2) as bar:
        bar.advance(1, 1024**2)
        big = bar.start("big.whl", 2 * 1024**2)
        big.advance(1024**2)
        bar.start("small.whl", 1000).advance(10)
        wait_for(out, "  [############............]   1.0 MiB / 2.0 MiB   big.whl\n")
        big.finish()
    text = out.getvalue()
    assert "[############............] export: 1/4 items, 2.0 MiB/4.0 MiB, " in text
    assert "small.whl" not in text  # under the size that earns a bar
    assert "\x1b[2F" in text  # the final frame moved back over the two lines of the last one
    last = text.rsplit("\x1b[2K", 1)[1]
    assert last.startswith("export: 2/4 items, 2.0 MiB/4.0 MiB, ") and " done in " in last


def test_in_a_log_plain_lines_are_written_and_no_control_characters():
    out = io.StringIO()
    with Progress("import", out, interval=0.01) as bar:
        bar.advance(1, 100)
        wait_for(out, "import: 1 items, 100 B")
        bar.advance(1, 100)
    lines = out.getvalue().splitlines()
    assert len(lines) >= 2 and all(line.startswith("import: ") for line in lines)
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert lines[-1].startswith("import: 2 items, 200 B") and " done in " in lines[-1]


def test_disabled_progress_writes_nothing():
    out = Terminal()
    with Progress("verify", out, enabled=False) as bar:
        bar.advance(1, 10)
    assert out.getvalue() == ""


def test_a_job_that_fails_gets_no_done_line():
    out = io.StringIO()
    with pytest.raises(ValueError), Progress("import", out) as bar:
        bar.advance(1, 10)
        raise ValueError("corrupt")
    assert out.getvalue() == ""


def test_human_bytes():
    assert [human_bytes(n) for n in (0, 1023, 1024, 5 * 1024**3, 3 * 1024**4)] == [
        "0 B", "1023 B", "1.0 KiB", "5.0 GiB", "3.0 TiB"]
