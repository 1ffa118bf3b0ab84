"""The ``pypi`` backend: a PEP 503/691 simple index in front of one or more upstream indexes.

Routes below the prefix:

    simple/                              project list (streamed)
    simple/<project>/                    project page, HTML or JSON by Accept
    files/<project>/<id>/<filename>      a file; <id> is its sha256 (or a hash of its URL)
    files/<project>/<id>/<filename>.metadata    its core metadata (PEP 658/714)

Pages are cached as the upstream sent them and rendered per request from the parsed model;
files are cached by the cache engine, verified against the index's sha256, and immutable.
"""

from __future__ import annotations

import hashlib
import re
import time
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ...cache import Answer, Fetch, Fetched, Policy, Served
from ...config import BackendSpec
from ...config_values import Duration, HttpUrl, PositiveInt, SecretStr, Timeout, TimeoutSpec
from ...errors import (ConfigError, MethodNotAllowed, NotFound, OfflineMiss, UpstreamError,
                       UpstreamNotFound)
from ...exchange import Reply, Request
from ...upstream import Upstream, UpstreamSettings
from ...upstream_state import ConnectionLimit
from ..base import BackendBase, CatalogShape, Context
from . import render
from .memo import Memo
from .model import File, Project, file_version, normalize, parse_page

# Vault's own Accept upstream: JSON preferred, never the client's header (PEP 691).
UPSTREAM_ACCEPT = f"{render.JSON}, {render.HTML};q=0.2, text/html;q=0.01"
_NAME = re.compile(r"^([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9])$")
_ID = re.compile(r"^([0-9a-f]{64}|url-[0-9a-f]{40})$")
_MEMO_BUDGET = 64 * 1024 * 1024
_EXTRACTABLE_SECONDS = 5.0
FILE_CACHE_CONTROL = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class PypiIndex:
    url: HttpUrl
    username: str | None = None
    password: SecretStr | None = None
    headers: Mapping[str, SecretStr] = field(default_factory=dict)


@dataclass(frozen=True)
class PypiSettings:
    prefix: str
    base_url: HttpUrl | None = None  # shorthand for one upstream
    upstreams: tuple[PypiIndex, ...] = ()
    index_ttl: Duration = 600.0  # freshness of a project page
    root_ttl: Duration = 3600.0  # freshness of the project list
    timeout: TimeoutSpec = field(default_factory=Timeout)
    retries: int = 2
    verify_tls: bool = True
    ca_bundle: str | None = None
    offline: bool = False
    # Hosts (host[:port]) the index's file URLs may point at, besides the index's own host;
    # empty: any host the index lists (the index is trusted to say where its files live).
    file_hosts: tuple[str, ...] = ()
    max_upstream_connections: PositiveInt = 16  # at once, over all of this backend's upstreams

    def check(self, key: str) -> None:
        if bool(self.base_url) == bool(self.upstreams):
            raise ConfigError(f"{key}: give either base_url or upstreams (a list of "
                              "{url: ...}), not both and not neither")

    def indexes(self) -> tuple[PypiIndex, ...]:
        return self.upstreams or (PypiIndex(url=self.base_url or ""),)


class PypiBackend(BackendBase):
    Settings = PypiSettings

    def __init__(self, spec: BackendSpec, ctx: Context) -> None:
        super().__init__(spec, ctx)
        settings: PypiSettings = spec.settings
        limit = ConnectionLimit(settings.max_upstream_connections, settings.timeout.connect)
        self._upstreams = [
            Upstream(self.name, UpstreamSettings(
                prefix=spec.prefix, base_url=index.url, headers=index.headers,
                username=index.username, password=index.password, timeout=settings.timeout,
                retries=settings.retries, verify_tls=settings.verify_tls,
                ca_bundle=settings.ca_bundle), ctx.metrics,
                pool_size=ctx.pool_size, limit=limit)
            for index in settings.indexes()]
        # Parsed pages and rendered bodies, keyed by the stored page's digest: a hot page is
        # parsed and rendered once per upstream change, not once per request.
        self._memo = Memo(_MEMO_BUDGET)
        # File links: absolute when the config says where clients reach Vault (pip takes the
        # absolute ones as they are, and runs urljoin on every relative one: a third of its time
        # on a large page), else relative to the page, which is right behind any proxy.
        self._files_url = (f"{ctx.public_url}{self.prefix}files/" if ctx.public_url
                           else "../../files/")
        self._file_hosts = frozenset(h.lower() for h in settings.file_hosts)

    def close(self) -> None:
        for upstream in self._upstreams:
            upstream.close()

    @staticmethod
    def client_path(spec: BackendSpec, key: str) -> str | None:
        """The path a client asks for to reach cache entry ``key``, or None if the key is not
        this backend's (see ``HttpBackend.client_path``)."""
        name = spec.prefix.strip("/")
        if not key.startswith(f"{name} "):
            return None
        kind, _, rest = key[len(name) + 1:].partition(" ")
        if kind == "root":
            return f"{spec.prefix}simple/"
        if kind == "page":  # rest is "<upstream url>/<project>/"
            return f"{spec.prefix}simple/{rest.rstrip('/').rsplit('/', 1)[-1]}/"
        if kind in ("file", "metadata"):  # rest is "<project>/<id>/<filename>"
            return f"{spec.prefix}files/{rest}" + (".metadata" if kind == "metadata" else "")
        return None

    def catalog(self) -> CatalogShape:
        """Items are projects, their members the cached files
        (``<prefix> file <project>/<id>/<filename>``); pages and metadata are not listed."""
        return CatalogShape("project", f"{self.name} file ", "/", _file_member)

    @property
    def upstreams(self) -> list[Upstream]:
        return list(self._upstreams)

    def handle(self, request: Request) -> Reply:
        if request.method not in ("GET", "HEAD"):
            raise MethodNotAllowed(f"{request.method} is not supported by the {self.name} backend")
        parts = request.path.split("/")
        if request.path in ("", "simple"):
            return _redirect(f"{self.prefix}simple/", request.query)
        if request.path == "simple/":
            return self._root(request)
        if parts[0] == "simple" and len(parts) in (2, 3) and parts[-1] in ("", parts[1]):
            name = parts[1]
            if not _NAME.match(name):
                raise NotFound(f"{name!r} is not a valid project name")
            if name != normalize(name) or len(parts) == 2:
                return _redirect(f"{self.prefix}simple/{normalize(name)}/", request.query)
            return self._page(request, name)
        if parts[0] == "files" and len(parts) == 4 and _ID.match(parts[2]):
            project, file_id, filename = parts[1], parts[2], parts[3]
            if filename.endswith(".metadata"):
                return self._metadata(project, file_id, filename.removesuffix(".metadata"))
            return self._file(project, file_id, filename, request.method)
        raise NotFound(f"no such path in the {self.name} index: {request.path}")

    # -- pages -----------------------------------------------------------------------------

    def _project(self, name: str) -> tuple[Project, Served, int]:
        """The parsed page of ``name`` from the first upstream that has it."""
        offline_miss = None
        for i, upstream in enumerate(self._upstreams):
            url = f"{upstream.base_url}/{name}/"
            key = f"{self.name} page {url}"
            try:
                served = self._cache.get_complete(
                    self.name, key,
                    Policy(ttl=self._settings.index_ttl, offline=self._offline,
                           check=lambda path, headers, digest, u=url: self._checked(
                               path, headers, u, name, digest)),
                    lambda v, up=upstream, u=url: up.get(u, {**v, "Accept": UPSTREAM_ACCEPT},
                                                         compressed=True),
                    committed=False)  # parsed by the check: no need to wait for the fsync
            except UpstreamNotFound:
                continue
            except OfflineMiss as exc:
                offline_miss = exc
                continue
            project = self._memo.get(("parsed", url, served.digest or ""))
            if project is None:
                project = self._parse(b"".join(served.open()), served.headers, url, name,
                                      served.digest or "")
            return project, served, i
        if offline_miss is not None:
            raise OfflineMiss(f"offline mode is on and the page of {name} is not cached")
        raise NotFound(f"project {name} is not on any upstream index of {self.name}")

    def _checked(self, path: Path, headers: Mapping[str, str], url: str, name: str,
                 digest: str) -> None:
        """A downloaded page is kept only if it parses (UpstreamError otherwise): one cut
        short at a wrong Content-Length is not kept, and an expired good copy is served
        instead. What it parsed is remembered under the committed page's name, so it is not
        parsed again (a large page takes a fifth of a second)."""
        self._parse(path.read_bytes(), headers, url, name, digest)

    def _parse(self, body: bytes, headers: Mapping[str, str], url: str, name: str,
               digest: str) -> Project:
        """Parse a stored page and remember it under its digest (the memo key ``_project``
        looks for)."""
        project = parse_page(body, headers.get("content-type", "text/html"), url, name)
        self._memo.put(("parsed", url, digest), project, len(body))
        return project

    def _page(self, request: Request, name: str) -> Reply:
        fmt = _format(request)
        project, served, _ = self._project(name)
        extractable = self._extractable(name, project, served.digest or "")
        # The stored page's digest names its content: the rendering is reused until it changes.
        memo_key = ("rendered", name, served.digest or "", fmt, *sorted(extractable))
        body = self._memo.get(memo_key)
        if body is None:
            renderer = render.project_json if fmt == render.JSON else render.project_html
            body = renderer(project, render.Links(f"{self._files_url}{name}/", extractable))
            self._memo.put(memo_key, body, len(body))
        etag = '"%s"' % hashlib.sha256(repr(memo_key).encode()).hexdigest()[:32]
        headers = {"Content-Type": fmt if fmt != render.TEXT_HTML else "text/html; charset=utf-8",
                   "Vary": "Accept", "ETag": etag, "Content-Length": str(len(body)),
                   "Cache-Control": f"max-age={int(self._settings.index_ttl)}, public"}
        if served.fetched_at:
            headers["Last-Modified"] = formatdate(served.fetched_at, usegmt=True)
        return Reply(status=200, headers=headers, body=[body], cache_status=served.cache_status)

    def _extractable(self, name: str, project: Project, digest: str) -> frozenset[str]:
        """Ids of cached wheels whose metadata upstream lacks: Vault can serve it from the wheel.

        Remembered for a few seconds per page version: with thousands of wheels (numpy) the
        lookup costs more than the rest of a page hit, and a wheel cached just now may wait a
        moment before its metadata is announced."""
        memo_key = ("extractable", name)
        remembered = self._memo.get(memo_key)
        now = time.monotonic()
        if (remembered is not None and remembered[1] == digest
                and now - remembered[0] < _EXTRACTABLE_SECONDS):
            return remembered[2]
        prefix = self._file_key(name, "", "")[:-1]  # "<backend> file <project>/"
        cached = [key[len(prefix):].split("/", 1) for key in self._cache.index.keys_under(prefix)]
        wheels = {file_id for file_id, filename in cached if filename.endswith(".whl")}
        found = frozenset(wheels.intersection(
            file_id for f, file_id in zip(project.files, project.ids) if not f.core_metadata)
        ) if wheels else frozenset()
        self._memo.put(memo_key, (now, digest, found), 64 * len(found) + 64)
        return found

    def _root(self, request: Request) -> Reply:
        fmt = _format(request)
        blobs, statuses, tags = [], [], [fmt]
        for upstream in self._upstreams:
            url = f"{upstream.base_url}/"
            served = self._cache.get_complete(
                self.name, f"{self.name} root {url}",
                Policy(ttl=self._settings.root_ttl, offline=self._offline),
                lambda v, up=upstream, u=url: up.get(u, {**v, "Accept": "text/html"},
                                                     compressed=True))
            if served.path is None:
                raise UpstreamError("the cache has no room for the project list right now")
            blobs.append(served.path)
            statuses.append(served.cache_status)
            tags.append(served.digest or "")  # changes when the list does

        def names() -> Iterator[str]:
            for path in blobs:
                yield from render.root_names(path)

        body = render.root_json(names()) if fmt == render.JSON else render.root_html(names())
        content_type = fmt if fmt != render.TEXT_HTML else "text/html; charset=utf-8"
        etag = '"%s"' % hashlib.sha256(" ".join(tags).encode()).hexdigest()[:32]
        return Reply(status=200, body=body, cache_status=statuses[0],
                     headers={"Content-Type": content_type, "Vary": "Accept", "ETag": etag,
                              "Cache-Control": f"max-age={int(self._settings.root_ttl)}, public"})

    # -- files -----------------------------------------------------------------------------

    def _file_key(self, project: str, file_id: str, filename: str) -> str:
        return f"{self.name} file {project}/{file_id}/{filename}"

    def _listed(self, project: str, file_id: str, filename: str) -> tuple[File, Upstream]:
        """The index entry for a file, or NotFound: only files an index listed are fetched."""
        model, _, i = self._project(project)
        f = model.file(filename)
        if f is None or f.id != file_id:
            raise NotFound(f"{filename} with id {file_id} is not listed for {project}")
        upstream, host = self._upstreams[i], urlsplit(f.url).netloc.lower()
        if self._file_hosts and host not in self._file_hosts and host != upstream.host:
            raise UpstreamError(f"the index lists {filename} on {host}, which file_hosts does "
                                "not name", upstream=upstream.host)
        return f, upstream

    def _file(self, project: str, file_id: str, filename: str, method: str) -> Reply:
        # The id is the index's sha256 (when it gave one): verification needs no page lookup,
        # and a cached file is served without one.
        digest = file_id if not file_id.startswith("url-") else None
        key = self._file_key(project, file_id, filename)
        policy = Policy(ttl=None, offline=self._offline, digest=digest)

        def fetch(headers: Mapping[str, str]) -> Fetched:
            f, upstream = self._listed(project, file_id, filename)
            return upstream.get(f.url, headers, also_allow=urlsplit(f.url).netloc)

        if method == "HEAD" and digest and not self._offline and not self._cache.cached(key):
            # uv reads a wheel's metadata with a HEAD and then ranges, one package after
            # another when the page announces no metadata. The index already says how big the
            # file is, so the HEAD is answered from it (not after the upstream's answer,
            # 0.1-0.3 s in a cold install), and the download the ranges read from starts now.
            size = self._listed(project, file_id, filename)[0].size
            if size is not None:
                self._cache.start(self.name, key, policy, fetch)
                return _file_reply(Served("MISS", size, {}, digest=digest), filename)
        served = self._cache.get(self.name, key, policy, fetch)
        if served.cache_status == "MISS" and filename.endswith(".whl"):
            self._memo.discard(("extractable", project))  # its metadata can be announced now
        return _file_reply(served, filename)

    def _metadata(self, project: str, file_id: str, filename: str) -> Reply:
        key = f"{self.name} metadata {project}/{file_id}/{filename}"
        wheel_key = self._file_key(project, file_id, filename)
        if self._cache.cached(key):  # no page lookup needed to serve it
            policy = Policy(ttl=None, offline=self._offline)

            def fetch(validators: Mapping[str, str]) -> Fetched:
                return self._metadata_source(project, file_id, filename, wheel_key)[1](validators)
        else:
            policy, fetch = self._metadata_source(project, file_id, filename, wheel_key)
        served = self._cache.get(self.name, key, policy, fetch)
        return _file_reply(served, filename + ".metadata")

    def _metadata_source(self, project: str, file_id: str, filename: str,
                         wheel_key: str) -> tuple[Policy, Fetch]:
        """Where a file's metadata comes from: the cached wheel (no upstream involved, so
        even offline), else the upstream's ``.metadata`` file, verified by its hash."""
        if self._cache.cached(wheel_key) and filename.endswith(".whl"):
            return Policy(ttl=None), lambda _: self._extract(wheel_key, filename)
        if self._offline:
            raise OfflineMiss(f"offline mode is on and the metadata of {filename} is not cached")
        f, upstream = self._listed(project, file_id, filename)
        if not f.core_metadata:
            raise NotFound(f"no metadata for {filename} until the file is cached; "
                           "download the file itself")
        sha = f.core_metadata.get("sha256") if isinstance(f.core_metadata, dict) else None
        return Policy(ttl=None, digest=sha), lambda _: upstream.get(
            f.url + ".metadata", also_allow=urlsplit(f.url).netloc)

    def _extract(self, wheel_key: str, filename: str) -> Answer:
        served = self._cache.get(self.name, wheel_key, Policy(ttl=None, offline=True),
                                 lambda _: None)  # type: ignore[arg-type,return-value]
        assert served.path is not None
        with zipfile.ZipFile(served.path) as wheel:
            names = [n for n in wheel.namelist()
                     if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
            if len(names) != 1:
                raise NotFound(f"{filename} has no single .dist-info/METADATA")
            with wheel.open(names[0]) as member:
                body = member.read(16 * 1024 * 1024)
        return Answer(body=body, content_type="text/plain; charset=utf-8")


def _format(request: Request) -> str:
    """The simple-API format to answer with; HTML when the client's choice is not one we have."""
    chosen = render.choose(request.headers.get("accept"),
                           parse_qs(request.query).get("format", [None])[0])
    return chosen or render.TEXT_HTML


def _file_reply(served: Served, filename: str) -> Reply:
    headers = {"Cache-Control": FILE_CACHE_CONTROL}
    if filename.endswith(".metadata"):
        headers["Content-Type"] = "text/plain; charset=utf-8"
    return Reply(served=served, cache_status=served.cache_status, headers=headers)


def _redirect(location: str, query: str) -> Reply:
    if query:
        location += f"?{query}"
    return Reply(status=301, headers={"Location": location, "Content-Length": "0"},
                 cache_status="BYPASS")


def _file_member(rest: str) -> dict[str, str]:
    """``/<id>/<filename>`` of a file key, with the version its name carries."""
    filename = rest.rsplit("/", 1)[-1]
    return {"file": filename, "version": file_version(filename)}
