"""One model of a project page, parsed from either simple-API format (PEP 503 HTML, PEP 691 JSON).

Vault stores the upstream's page byte for byte (so revalidation, stale-if-error and offline
mode come from the cache engine), parses it into this model, and renders whichever format
the client asked for from the model. A client's format never decides what is cached.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
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
_LOWER_SHA256 = re.compile(r"[0-9a-f]{64}").fullmatch
# A file name that is its own URL path segment: what quote() leaves as it is.
PLAIN_NAME = re.compile(r"[A-Za-z0-9_.~-]+").fullmatch
_PLAIN_KEYS = frozenset({"filename", "url", "hashes", "requires-python", "yanked", "size",
                         "upload-time", "core-metadata"})


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
    """A parsed page. A JSON page keeps the entries orjson parsed, with the id of each that
    has PyPI's plain shape (``plain_id``): rendering JSON from those needs no ``File`` at all,
    and building 15,000 of them (pydantic-core) was most of a cold page's CPU. A ``File`` is
    built when something needs it: a file request, an HTML rendering."""

    name: str
    versions: tuple[str, ...]
    page_url: str = ""
    items: tuple[dict, ...] = ()  # JSON pages: the upstream's file entries, as parsed
    plain: tuple[str | None, ...] = ()  # per item: its id if it has the plain shape
    parsed: tuple[File, ...] | None = None  # HTML pages: their files

    @property
    def files(self) -> tuple[File, ...]:
        """Every file, built anew for a JSON page: only an HTML rendering (itself remembered)
        needs them all, and keeping them too would double a large page's memory."""
        if self.parsed is not None:
            return self.parsed
        return tuple(f for item in self.items if (f := json_file(item, self.page_url)))

    def ids_without_metadata(self) -> Iterator[str]:
        """Ids of the files whose metadata the upstream does not serve."""
        if self.parsed is not None:
            yield from (f.id for f in self.parsed if not f.core_metadata)
            return
        for item, file_id in zip(self.items, self.plain):
            if file_id is None:
                f = json_file(item, self.page_url)
                if f is not None and not f.core_metadata:
                    yield f.id
            elif not item.get("core-metadata"):
                yield file_id

    @cached_property
    def _positions(self) -> dict[str, int]:
        """Where the first file of each name is, as the page lists them."""
        names = ([f.filename for f in self.parsed] if self.parsed is not None
                 else [str(item["filename"]) for item in self.items])
        found: dict[str, int] = {}
        for i, filename in enumerate(names):
            found.setdefault(filename, i)
        return found

    def file(self, filename: str) -> File | None:
        """The file of that name, without building the ``File`` of every other one."""
        i = self._positions.get(filename)
        if i is None:
            return None
        return self.parsed[i] if self.parsed is not None else json_file(self.items[i],
                                                                          self.page_url)


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
    items = doc["files"]
    if not isinstance(items, list):
        raise TypeError("'files' is not a list")
    plain = []
    for item in items:
        file_id = plain_id(item)
        if file_id is None:
            json_file(item, page_url)  # raises if the entry is not a usable one
        plain.append(file_id)
    versions = doc.get("versions")
    project = Project(str(doc.get("name") or name),
                      tuple(map(str, versions)) if isinstance(versions, list) else (),
                      page_url, tuple(items), tuple(plain))
    if not isinstance(versions, list):  # an API 1.0 page: from the file names
        project = dataclasses.replace(project, versions=_versions(project.files))
    return project


def plain_id(item: object) -> str | None:
    """The id of a JSON file entry of the shape PyPI gives (a file name that is its own path
    segment, one lower-case sha256, well-typed optional fields), which renders the same
    straight from the entry as through a ``File``; None for any other entry, which takes the
    full parse. Checked once per entry of every page fetched: kept to the fields rendered."""
    if type(item) is not dict or not item.keys() <= _PLAIN_KEYS:
        return None
    filename, hashes = item.get("filename"), item.get("hashes")
    if not (type(filename) is str and PLAIN_NAME(filename) and filename not in (".", "..")
            and type(hashes) is dict and len(hashes) == 1 and "url" in item):
        return None
    sha = hashes.get("sha256")
    python, uploaded = item.get("requires-python"), item.get("upload-time")
    yanked, size = item.get("yanked", False), item.get("size")
    metadata = item.get("core-metadata", False)
    if (type(sha) is str and _LOWER_SHA256(sha)
            and (python is None or (type(python) is str and python != ""))
            and (uploaded is None or (type(uploaded) is str and uploaded != ""))
            and (yanked is False or yanked is True or (type(yanked) is str and yanked != ""))
            and (size is None or type(size) is int)
            and (metadata is False or metadata is True or (
                type(metadata) is dict and metadata.keys() == {"sha256"}
                and type(metadata["sha256"]) is str and _LOWER_SHA256(metadata["sha256"])))):
        return sha
    return None


def json_file(item: dict, page_url: str) -> File | None:
    """One JSON file entry as a ``File``; None if it could not be served under its name."""
    filename = str(item["filename"])
    if _unservable(filename):
        return None
    hashes = item.get("hashes") or {}
    yanked = item.get("yanked", False)
    size = item.get("size")
    return tuple.__new__(File, (  # File(...) with keywords costs a third more
        filename, _absolute(page_url, str(item["url"])),
        {str(k): str(v).lower() for k, v in hashes.items()} if hashes else {},
        _text(item.get("requires-python")),
        yanked if isinstance(yanked, str) and yanked else bool(yanked),
        size if type(size) is int else None,  # not a bool
        _text(item.get("upload-time")),
        _metadata_value(item.get("core-metadata", item.get("dist-info-metadata", False)))))


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
    return Project(name, _versions(files), page_url, parsed=tuple(files))


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
