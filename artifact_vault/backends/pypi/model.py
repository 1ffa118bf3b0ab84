"""One model of a project page, parsed from either simple-API format (PEP 503 HTML, PEP 691 JSON).

Vault stores the upstream's page byte for byte (so revalidation, stale-if-error and offline
mode come from the cache engine), parses it into this model, and renders whichever format
the client asked for from the model. A client's format never decides what is cached.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import NamedTuple
from urllib.parse import urldefrag, urljoin

import orjson
from packaging.utils import (InvalidSdistFilename, InvalidWheelFilename, canonicalize_name,
                             parse_sdist_filename, parse_wheel_filename)

from ...errors import UpstreamError

# A file name Vault can serve is one path segment: no '/', '\\', control characters, '.' or '..'.
_BAD_CHAR = re.compile(r"[/\\\x00-\x1f\x7f]")
_HASH = re.compile(r"^(sha256|sha384|sha512|md5|sha1|sha224)=([0-9a-fA-F]+)$")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class File(NamedTuple):
    """One file of a page. A named tuple, not a frozen dataclass: a large page has 15,000
    (pydantic-core), and a tuple is built in a third of the time and is smaller."""

    filename: str
    url: str  # absolute upstream URL, fragment removed
    hashes: dict[str, str] = {}  # noqa: RUF012 - never changed after parsing
    requires_python: str | None = None
    yanked: bool | str = False  # True, or the reason as a non-empty string
    size: int | None = None
    upload_time: str | None = None
    core_metadata: bool | dict[str, str] = False  # upstream serves <url>.metadata

    @property
    def id(self) -> str:
        """The id in Vault's URL of this file (``files/<project>/<id>/<filename>``): the
        index's sha256 when it gives a well-formed one (which then also verifies the
        download), else a hash of the upstream URL."""
        value = self.hashes.get("sha256")
        if value and _SHA256.fullmatch(value):
            return value.lower()
        return "url-" + hashlib.sha256(self.url.encode()).hexdigest()[:40]


@dataclass(frozen=True)
class Project:
    name: str
    files: tuple[File, ...]
    versions: tuple[str, ...]

    def file(self, filename: str) -> File | None:
        return next((f for f in self.files if f.filename == filename), None)


def parse_page(body: bytes, content_type: str, page_url: str, name: str) -> Project:
    """Parse an upstream project page; raise ``UpstreamError`` if it is not a usable page."""
    try:
        if "json" in content_type:
            return _parse_json(orjson.loads(body), page_url, name)
        return _parse_html(body.decode("utf-8", "replace"), page_url, name)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise UpstreamError(f"the upstream page for {name} is not a valid simple-API page "
                            f"({type(exc).__name__}: {exc})") from None


def _unservable(filename: str) -> bool:
    """Whether a link could not be served under its file name (a one-character class is
    scanned 3x faster than with the '.'/'..' alternatives in the same pattern)."""
    return filename in ("", ".", "..") or _BAD_CHAR.search(filename) is not None


def _text(value: object) -> str | None:
    """A string field of a JSON page; any other type (a list, a number) counts as absent."""
    return value if isinstance(value, str) and value else None


def _metadata_value(value: object) -> bool | dict[str, str]:
    if isinstance(value, dict):
        return {str(k): str(v).lower() for k, v in value.items()}
    if isinstance(value, str):
        match = _HASH.match(value)
        if match:
            return {match[1]: match[2].lower()}
        return value.lower() == "true"
    return bool(value)


def _absolute(page_url: str, url: str) -> str:
    """``url`` made absolute, without its fragment. Most index URLs already are absolute, and
    skipping urljoin for them makes parsing a large page (numpy: 4000+ files) 3x faster."""
    if url.startswith(("https://", "http://")) and "#" not in url:
        return url
    return urldefrag(urljoin(page_url, url))[0]


def _parse_json(doc: dict, page_url: str, name: str) -> Project:
    files = []
    new = tuple.__new__  # File(...) with keywords costs a third of a large page's parse
    for item in doc["files"]:
        filename = str(item["filename"])
        if _unservable(filename):
            continue
        hashes = item.get("hashes") or {}
        yanked = item.get("yanked", False)
        size = item.get("size")
        files.append(new(File, (
            filename, _absolute(page_url, str(item["url"])),
            {str(k): str(v).lower() for k, v in hashes.items()} if hashes else {},
            _text(item.get("requires-python")),
            yanked if isinstance(yanked, str) and yanked else bool(yanked),
            size if type(size) is int else None,  # not a bool
            _text(item.get("upload-time")),
            _metadata_value(item.get("core-metadata", item.get("dist-info-metadata", False))))))
    versions = doc.get("versions")
    return Project(str(doc.get("name") or name), tuple(files),
                   tuple(map(str, versions)) if isinstance(versions, list) else _versions(files))


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self.base: str | None = None
        self._current: dict[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "base" and self.base is None:
            self.base = dict(attrs).get("href")
        elif tag == "a":
            self._current, self._text = dict(attrs), []

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._current is not None:
            self.anchors.append((self._current, "".join(self._text).strip()))
            self._current = None


def _parse_html(text: str, page_url: str, name: str) -> Project:
    parser = _Anchors()
    parser.feed(text)
    parser.close()
    base = urljoin(page_url, parser.base) if parser.base else page_url
    files = []
    for attrs, text_ in parser.anchors:
        href = attrs.get("href")
        if not href:
            continue
        url, fragment = urldefrag(urljoin(base, href))
        filename = text_ or url.rsplit("/", 1)[-1]
        if _unservable(filename):
            continue  # its link would point outside the project's files, or nowhere
        match = _HASH.match(fragment)
        yanked = attrs.get("data-yanked")
        metadata = attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
        files.append(File(
            filename=filename, url=url,
            hashes={match[1]: match[2].lower()} if match else {},
            requires_python=attrs.get("data-requires-python") or None,
            yanked=False if yanked is None else (yanked or True),
            core_metadata=False if metadata is None else _metadata_value(metadata)))
    return Project(name, tuple(files), _versions(files))


def _versions(files: list[File]) -> tuple[str, ...]:
    """PEP 700 versions, for upstreams that do not list them: from the file names."""
    return tuple(sorted({v for f in files if (v := file_version(f.filename))}))


def file_version(filename: str) -> str:
    """The version in a wheel's or an sdist's file name; '' for names that follow no rule."""
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[1])
        return str(parse_sdist_filename(filename)[1])
    except (InvalidWheelFilename, InvalidSdistFilename, ValueError):
        return ""


def normalize(name: str) -> str:
    """PEP 503 normalized name."""
    return canonicalize_name(name)
