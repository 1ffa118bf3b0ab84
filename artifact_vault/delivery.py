"""HTTP semantics of a cached body: conditional requests (304), ranges (206, 416), HEAD.

Everything here is answered from the cache's own record of the artifact, so a client that
revalidates or resumes never costs an upstream request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from .cache import Served
from .errors import RangeNotSatisfiable

_PASSED_ON = ("content-encoding", "etag", "last-modified", "content-disposition")
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")
_PAST_ANY_END = 10**20  # a byte position longer than 20 digits is past the end of any body


@dataclass(frozen=True)
class Delivery:
    status: int
    headers: dict[str, str]
    start: int = 0
    end: int | None = None  # exclusive; None: to the end of the body
    send_body: bool = True


def deliver(method: str, request_headers: Mapping[str, str], served: Served) -> Delivery:
    """Decide status, headers and byte range for sending ``served`` to this request."""
    stored = served.headers
    headers = {"content-type": stored.get("content-type", "application/octet-stream")}
    for name in _PASSED_ON:
        if name in stored:
            headers[name] = stored[name]
    if "etag" not in headers and served.digest:
        headers["etag"] = f'"sha256:{served.digest}"'  # content-addressed: a strong validator
    size = served.size
    if size is not None:
        headers["accept-ranges"] = "bytes"
    if _not_modified(request_headers, headers):
        return Delivery(304, {k: v for k, v in headers.items()
                              if k in ("etag", "last-modified")}, send_body=False)
    byte_range = None
    if size is not None and "range" in request_headers and _if_range_holds(request_headers,
                                                                             headers):
        byte_range = parse_range(request_headers["range"], size)
    if byte_range is not None:
        start, end = byte_range
        headers["content-range"] = f"bytes {start}-{end - 1}/{size}"
        headers["content-length"] = str(end - start)
        return Delivery(206, headers, start, end, send_body=method != "HEAD")
    if size is not None:
        headers["content-length"] = str(size)
    return Delivery(200, headers, send_body=method != "HEAD")


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """[start, end) of a single ``bytes=`` range; None to ignore it (serve the whole body).

    Multi-range and malformed headers are ignored, as RFC 9110 allows; a syntactically valid
    range that starts past the end raises ``RangeNotSatisfiable`` (416)."""
    match = _RANGE.match(value)
    if not match or (not match[1] and not match[2]):
        return None
    if not match[1]:  # suffix range: the last N bytes
        length = _position(match[2])
        if length == 0:
            raise RangeNotSatisfiable(f"empty suffix range {value!r}", size=size)
        if size == 0:
            return None  # all of nothing: a 206 could not even write its Content-Range
        return max(0, size - length), size
    start = _position(match[1])
    end = size if not match[2] else _position(match[2]) + 1
    if match[2] and end <= start:
        return None  # last < first: invalid, ignored
    if start >= size:
        raise RangeNotSatisfiable(f"range {value!r} starts past the end ({size} bytes)", size=size)
    return start, min(end, size)


def _position(digits: str) -> int:
    """A byte position from its digits. int() refuses strings of over 4300 digits (a 500 from
    one header), and no body is anywhere near 20 digits long, so longer ones saturate."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 20 else _PAST_ANY_END


def etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    weak = etag.removeprefix("W/")
    return any(t.strip().removeprefix("W/") == weak for t in header.split(","))


def _not_modified(request: Mapping[str, str], stored: Mapping[str, str]) -> bool:
    if "if-none-match" in request:
        return "etag" in stored and etag_matches(request["if-none-match"], stored["etag"])
    if "if-modified-since" in request and "last-modified" in stored:
        since, modified = _date(request["if-modified-since"]), _date(stored["last-modified"])
        return since is not None and modified is not None and modified <= since
    return False


def _if_range_holds(request: Mapping[str, str], stored: Mapping[str, str]) -> bool:
    """If-Range: the range applies only if the client's copy is still the current one."""
    value = request.get("if-range")
    if value is None:
        return True
    if value.startswith('"') or value.startswith("W/"):
        # RFC 9110: If-Range needs a strong comparison; a weak tag never matches.
        return not value.startswith("W/") and stored.get("etag") == value
    since, modified = _date(value), _date(stored.get("last-modified", ""))
    return since is not None and modified is not None and modified <= since


def _date(value: str):  # noqa: ANN202 - datetime | None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
