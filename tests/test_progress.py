"""The progress display: a redrawn bar on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import io

from artifact_vault import progress
from artifact_vault.progress import Progress, human_bytes


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_one_line_is_redrawn_with_a_bar(monkeypatch):
    monkeypatch.setattr(progress, "_REDRAW_SECONDS", 0.0)
    out = Terminal()
    bar = Progress("export", items=4, total_bytes=4096, stream=out)
    bar.advance(2, 2048)
    bar.close()
    text = out.getvalue()
    assert text.count("\r") == 2 and text.endswith("done\n") and text.count("\n") == 1
    assert "[############............] export: 2/4 items, 2.0 KiB/4.0 KiB" in text


def test_in_a_log_plain_lines_are_written_and_no_carriage_returns(monkeypatch):
    monkeypatch.setattr(progress, "_LINE_SECONDS", 0.0)
    out = io.StringIO()
    bar = Progress("import", stream=out)
    bar.advance(1, 100)
    bar.advance(1, 100)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in out.getvalue()
    assert lines[-1].startswith("import: 2 items, 200 B") and lines[-1].endswith("done")


def test_disabled_progress_writes_nothing():
    out = Terminal()
    bar = Progress("verify", stream=out, enabled=False)
    bar.advance(1, 10)
    bar.close()
    assert out.getvalue() == ""


def test_human_bytes():
    assert [human_bytes(n) for n in (0, 1023, 1024, 5 * 1024**3)] == [
        "0 B", "1023 B", "1.0 KiB", "5.0 GiB"]
