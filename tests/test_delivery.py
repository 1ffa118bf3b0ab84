"""Ranges, conditionals and HEAD, decided from the cache's record alone."""

from __future__ import annotations

import pytest

from artifact_vault.cache import Served
from artifact_vault.delivery import deliver, parse_range
from artifact_vault.errors import RangeNotSatisfiable

STORED = {"content-type": "application/x-debian-package", "etag": '"abc"',
          "last-modified": "Wed, 01 Jan 2025 00:00:00 GMT"}


def served(size: int | None = 1000) -> Served:
    return Served("HIT", size, STORED)


@pytest.mark.parametrize("header,expected", [
    ("bytes=0-99", (0, 100)), ("bytes=900-", (900, 1000)), ("bytes=-100", (900, 1000)),
    ("bytes=990-5000", (990, 1000)), ("bytes=-5000", (0, 1000)),
    ("bytes=5-1", None), ("items=0-1", None), ("bytes=0-1,5-6", None), ("bytes=-", None)])
def test_parse_range(header, expected):
    assert parse_range(header, 1000) == expected


def test_a_range_past_the_end_is_unsatisfiable():
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=1000-", 1000)


def test_range_gives_206_with_content_range():
    d = deliver("GET", {"range": "bytes=10-19"}, served())
    assert (d.status, d.start, d.end) == (206, 10, 20)
    assert d.headers["content-range"] == "bytes 10-19/1000"
    assert d.headers["content-length"] == "10"


def test_if_none_match_gives_304():
    d = deliver("GET", {"if-none-match": 'W/"abc", "zzz"'}, served())
    assert d.status == 304 and not d.send_body and d.headers["etag"] == '"abc"'


def test_if_modified_since_gives_304_when_not_modified():
    assert deliver("GET", {"if-modified-since": "Thu, 02 Jan 2025 00:00:00 GMT"}, served()).status == 304
    assert deliver("GET", {"if-modified-since": "Tue, 31 Dec 2024 00:00:00 GMT"}, served()).status == 200


def test_if_range_with_a_stale_etag_gives_the_whole_body():
    d = deliver("GET", {"range": "bytes=0-9", "if-range": '"old"'}, served())
    assert d.status == 200 and d.headers["content-length"] == "1000"


def test_if_range_with_the_current_etag_gives_the_range():
    assert deliver("GET", {"range": "bytes=0-9", "if-range": '"abc"'}, served()).status == 206


def test_head_sends_headers_only():
    d = deliver("HEAD", {}, served())
    assert d.status == 200 and not d.send_body and d.headers["content-length"] == "1000"


def test_unknown_size_means_no_ranges():
    d = deliver("GET", {"range": "bytes=0-9"}, served(None))
    assert d.status == 200 and "accept-ranges" not in d.headers


def test_positions_too_long_for_int_are_past_the_end_not_a_500():
    # Found by tests/hostile.py: int() refuses strings of over 4300 digits (ValueError).
    huge = "7" * 5000
    assert parse_range(f"bytes=0-{huge}", 1000) == (0, 1000)
    assert parse_range(f"bytes=-{huge}", 1000) == (0, 1000)
    assert parse_range(f"bytes=000000000000000000000000000000005-9", 1000) == (5, 10)
    with pytest.raises(RangeNotSatisfiable):
        parse_range(f"bytes={huge}-", 1000)


def test_a_suffix_range_of_an_empty_body_serves_it_whole():
    # Found by tests/hostile.py: (0, 0) made a 206 with 'Content-Range: bytes 0--1/0'.
    assert parse_range("bytes=-5", 0) is None
    assert deliver("GET", {"range": "bytes=-5"}, served(0)).status == 200
