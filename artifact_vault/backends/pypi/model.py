"""One model of a project page, parsed from either simple-API format (PEP 503 HTML, PEP 691 JSON).

Vault stores the upstream's page byte for byte (so revalidation, stale-if-error and offline
mode come from the cache engine), parses it into this model, and renders whichever format
the client asked for from the model. A client's format never decides what is cached.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from html.parser import HTMLParser
from typing import Annotated
from urllib.parse import urldefrag, urljoin

import msgspec
from packaging.utils import (InvalidSdistFilename, InvalidWheelFilename, canonicalize_name,
                             parse_sdist_filename, parse_wheel_filename)

from ...errors import UpstreamError

# A file name Vault can serve is one path segment: no '/', '\\', control characters, '.' or '..'.
_BAD_CHAR = re.compile(r"[/\\\x00-\x1f\x7f]")
_HASH = re.compile(r"^(sha256|sha384|sha512|md5|sha1|sha224)=([0-9a-fA-F]+)$")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
# A file name that is its own URL path segment: what quote() leaves as it is.
PLAIN_NAME = re.compile(r"[A-Za-z0-9_.~-]+").fullmatch
# A string the full parse reads as absent when empty (a file name: as unservable); the
# decoder refuses an empty one, and the full parse takes the page.
_Text = Annotated[str, msgspec.Meta(min_length=1)]


class File(msgspec.Struct, frozen=True, gc=False):
    """One file of a page, and the type a PEP 691 page's entries are decoded into, in C
    (``_decoded``): the field names are the JSON keys. Not tracked by the garbage collector:
    a large page has 15,000 (pydantic-core), and no field can hold a cycle."""

    filename: _Text
    url: str  # absolute upstream URL, fragment removed
    hashes: dict[str, str]
    requires_python: _Text | None = msgspec.field(default=None, name="requires-python")
    yanked: bool | _Text = False  # True, or the reason as a non-empty string
    size: int | None = None
    upload_time: _Text | None = msgspec.field(default=None, name="upload-time")
    # upstream serves <url>.metadata (PEP 658/714)
    core_metadata: bool | dict[str, str] = msgspec.field(default=False, name="core-metadata")

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
    """A parsed page, remembered per stored page: every rendering and file request reads it."""

    name: str
    versions: tuple[str, ...]
    files: tuple[File, ...]

    @cached_property
    def ids(self) -> tuple[str, ...]:
        """``File.id`` of every file, in order, worked out once per parsed page: rendering it
        in either format and looking for extractable metadata all need them."""
        return tuple(f.id for f in self.files)

    @cached_property
    def _positions(self) -> dict[str, int]:
        """Where the first file of each name is, as the page lists them."""
        found: dict[str, int] = {}
        for i, f in enumerate(self.files):
            found.setdefault(f.filename, i)
        return found

    def file(self, filename: str) -> File | None:
        i = self._positions.get(filename)
        return None if i is None else self.files[i]


class _Page(msgspec.Struct):
    """A PEP 691 page as ``_decoded`` reads it; other keys are ignored, as the full parse
    ignores them."""

    files: list[File]
    name: str = ""
    versions: list[str] | None = None


_PAGE = msgspec.json.Decoder(_Page)


def parse_page(body: bytes, content_type: str, page_url: str, name: str) -> Project:
    """Parse an upstream project page; raise ``UpstreamError`` if it is not a usable page."""
    try:
        if "json" in content_type:
            return (_decoded(body, name)
                    or _parse_json(msgspec.json.decode(body), page_url, name))
        return _parse_html(body.decode("utf-8", "replace"), page_url, name)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise UpstreamError(f"the upstream page for {name} is not a valid simple-API page "
                            f"({type(exc).__name__}: {exc})") from None


def _decoded(body: bytes, name: str) -> Project | None:
    """A JSON page decoded straight into ``File``s, in C, when that gives what the full parse
    (``_parse_json``) gives; None otherwise, and the full parse decides.

    Parsing into dicts and checking each entry in Python took 105-150 ms of CPU for
    pydantic-core's 15,000 files on the bench machine; this takes 60-90 ms. The decoder checks
    every type, and refuses the empty strings the full parse reads as absent. What it cannot
    check is looked for over the whole page at once, not per entry: the pre-PEP 714 metadata
    key (which the full parse falls back to), a file name that is not one path segment, a URL
    to resolve against the page, upper-case hex (which it lowers)."""
    if b'"dist-info-metadata"' in body:
        return None
    try:
        page = _PAGE.decode(body)
    except msgspec.DecodeError:
        return None
    files = page.files
    names = f"|{'|'.join(f.filename for f in files)}|"  # '|' is no bad character
    hexes = "".join([v for f in files for v in f.hashes.values()]
                    + [v for f in files if type(f.core_metadata) is dict
                       for v in f.core_metadata.values()])
    if (_BAD_CHAR.search(names) or "|.|" in names or "|..|" in names
            or not all(f.url.startswith(("https://", "http://")) for f in files)
            or "#" in "".join(f.url for f in files) or hexes != hexes.lower()):
        return None
    versions = (tuple(page.versions) if page.versions is not None
                else _versions(files))
    return Project(page.name or name, versions, tuple(files))


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
    """Any JSON page: each entry read leniently, as a dict."""
    items = doc["files"]
    if not isinstance(items, list):
        raise TypeError("'files' is not a list")
    files = tuple(f for item in items if (f := _json_file(item, page_url)))
    versions = doc.get("versions")
    return Project(str(doc.get("name") or name),
                   tuple(map(str, versions)) if isinstance(versions, list) else _versions(files),
                   files)


def _json_file(item: dict, page_url: str) -> File | None:
    """One JSON file entry as a ``File``; None if it could not be served under its name."""
    filename = str(item["filename"])
    if _unservable(filename):
        return None
    hashes = item.get("hashes") or {}
    yanked = item.get("yanked", False)
    size = item.get("size")
    return File(
        filename, _absolute(page_url, str(item["url"])),
        {str(k): str(v).lower() for k, v in hashes.items()} if hashes else {},
        _text(item.get("requires-python")),
        yanked if isinstance(yanked, str) and yanked else bool(yanked),
        size if type(size) is int else None,  # not a bool
        _text(item.get("upload-time")),
        _metadata_value(item.get("core-metadata", item.get("dist-info-metadata", False))))


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
    return Project(name, _versions(files), tuple(files))


def _versions(files: Iterable[File]) -> tuple[str, ...]:
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
