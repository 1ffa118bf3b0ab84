"""Rendering the simple API (PEP 503 HTML, PEP 691 JSON) from the model, and choosing between them.

File URLs are written relative to the project page (``../../files/...``), so pages are the
same whatever Host or prefix a client used to reach Vault; or absolute, under the configured
``public_url``. The Host header never decides them.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import msgspec

from .model import PLAIN_NAME, File, Project, normalize

API_VERSION = "1.1"
JSON = "application/vnd.pypi.simple.v1+json"
HTML = "application/vnd.pypi.simple.v1+html"
TEXT_HTML = "text/html"
_OFFERS = {JSON: JSON, HTML: HTML, TEXT_HTML: TEXT_HTML,
           "application/vnd.pypi.simple.latest+json": JSON,
           "application/vnd.pypi.simple.latest+html": HTML}
_FORMATS = {"json": JSON, "html": HTML, "text/html": TEXT_HTML, JSON: JSON, HTML: HTML}
_ANCHOR = re.compile(rb"<a\b[^>]*>([^<]*)</a>", re.IGNORECASE)
_JSON_NAME = re.compile(rb'"name"\s*:\s*"([^"\\]*)"')
_ENCODE = msgspec.json.Encoder().encode
_PLAIN_CHARS = re.compile(r"[A-Za-z0-9_.~-]*")  # what PLAIN_NAME allows


@dataclass(frozen=True)
class Links:
    """Where a page links its files (``<base><id>/<filename>``), and the ids of cached wheels
    whose metadata Vault announces because it can extract it."""

    base: str  # the project's files URL, relative or absolute, ending in '/'
    extractable: frozenset[str] = frozenset()

    def url(self, file_id: str, filename: str) -> str:
        return f"{self.base}{file_id}/{filename if PLAIN_NAME(filename) else quote(filename)}"

    def each(self, project: Project) -> Iterator[tuple[File, str, bool | dict[str, str] | None]]:
        """Every file as rendered: with its URL (no fragment) and the metadata to announce,
        or None. The names are checked for characters to quote all at once, and the URLs
        built in this one loop: a method call or two per file took half the time it takes to
        render a large page (pydantic-core: 15,000 files)."""
        files, base, extractable = project.files, self.base, self.extractable
        plain = _PLAIN_CHARS.fullmatch("".join(f.filename for f in files)) is not None
        for f, file_id in zip(files, project.ids):
            url = f"{base}{file_id}/{f.filename}" if plain else self.url(file_id, f.filename)
            yield f, url, f.core_metadata or (file_id in extractable) or None


def choose(accept: str | None, format_param: str | None) -> str | None:
    """The content type to answer with, by ``?format=`` then Accept q-values (PEP 691).

    HTML when Accept is absent or only ``*/*``; None when Accept rules out every format."""
    if format_param:
        return _FORMATS.get(format_param)
    if not accept:
        return TEXT_HTML
    best, best_q = None, 0.0
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        media = media.strip().lower()
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        offer = _OFFERS.get(media) or (TEXT_HTML if media in ("*/*", "text/*") else None)
        # Earlier entries win ties, and a wildcard never beats an explicit type of equal q.
        if offer and q > best_q:
            best, best_q = offer, q
    return best


def project_html(project: Project, links: Links) -> bytes:
    lines = ["<!DOCTYPE html>", "<html>", "<head>",
             f'<meta name="pypi:repository-version" content="{API_VERSION}">',
             f"<title>Links for {html.escape(project.name)}</title>", "</head>", "<body>",
             f"<h1>Links for {html.escape(project.name)}</h1>"]
    for f, url, metadata in links.each(project):
        attrs = [f'href="{html.escape(url + _fragment(f))}"']
        if f.requires_python:
            attrs.append(f'data-requires-python="{html.escape(f.requires_python)}"')
        if f.yanked is not False:
            reason = f.yanked if isinstance(f.yanked, str) else ""
            attrs.append(f'data-yanked="{html.escape(reason)}"')
        if metadata:
            value = _hash_attr(metadata)
            attrs.append(f'data-dist-info-metadata="{value}" data-core-metadata="{value}"')
        lines.append(f"<a {' '.join(attrs)}>{html.escape(f.filename)}</a><br>")
    lines += ["</body>", "</html>", ""]
    return "\n".join(lines).encode()


class _JsonFile(msgspec.Struct, omit_defaults=True, gc=False):
    """A file of a JSON page (PEP 691) as Vault writes it; a field at its default is left out."""

    filename: str
    url: str
    hashes: dict[str, str]
    yanked: bool | str
    requires_python: str | None = msgspec.field(default=None, name="requires-python")
    size: int | None = None
    upload_time: str | None = msgspec.field(default=None, name="upload-time")
    # both names (PEP 714): clients older than it read only the first
    dist_info_metadata: bool | dict[str, str] = msgspec.field(default=False,
                                                              name="dist-info-metadata")
    core_metadata: bool | dict[str, str] = msgspec.field(default=False, name="core-metadata")


def project_json(project: Project, links: Links) -> bytes:
    files = [_JsonFile(f.filename, url, f.hashes, f.yanked, f.requires_python, f.size,
                       f.upload_time, metadata or False, metadata or False)
             for f, url, metadata in links.each(project)]
    return _ENCODE({"meta": {"api-version": API_VERSION}, "name": project.name,
                    "versions": list(project.versions), "files": files})


def _fragment(f: File) -> str:
    for algo in ("sha256", "sha384", "sha512"):
        if algo in f.hashes:
            return f"#{algo}={f.hashes[algo]}"
    return ""


def _hash_attr(metadata: bool | dict[str, str]) -> str:
    if isinstance(metadata, dict) and "sha256" in metadata:
        return f"sha256={metadata['sha256']}"
    return "true"


def root_names(blob: str) -> Iterator[str]:
    """Project names from a cached upstream root page, read in chunks, never whole."""
    with open(blob, "rb") as f:
        head = f.read(1 << 16)
        pattern = _JSON_NAME if head.lstrip().startswith(b"{") else _ANCHOR
        buffer = head
        while True:
            end = 0
            for match in pattern.finditer(buffer):
                yield html.unescape(match[1].decode("utf-8", "replace")).strip()
                end = match.end()
            chunk = f.read(1 << 16)
            if not chunk:
                return
            buffer = buffer[end:][-4096:] + chunk  # keep a partial anchor across chunks


def root_html(names: Iterator[str]) -> Iterator[bytes]:
    yield (f'<!DOCTYPE html>\n<html>\n<head>\n<meta name="pypi:repository-version" '
           f'content="{API_VERSION}">\n<title>Simple index</title>\n</head>\n<body>\n').encode()
    batch = []
    for name in names:
        batch.append(f'<a href="{html.escape(normalize(name))}/">{html.escape(name)}</a>\n')
        if len(batch) == 1000:
            yield "".join(batch).encode()
            batch = []
    yield ("".join(batch) + "</body>\n</html>\n").encode()


def root_json(names: Iterator[str]) -> Iterator[bytes]:
    yield f'{{"meta":{{"api-version":"{API_VERSION}"}},"projects":['.encode()
    batch, first = [], True
    for name in names:
        batch.append(("" if first else ",") + _ENCODE({"name": name}).decode())
        first = False
        if len(batch) == 1000:
            yield "".join(batch).encode()
            batch = []
    yield ("".join(batch) + "]}").encode()
