"""The ``registry-v2`` and ``dockerhub`` backends: a pull-through cache for OCI registries.

Routes below the mount (``/v2/<prefix>/``, ``/v2/`` for the default backend, or ``/<prefix>/``):

    <name>/manifests/<tag|digest>    GET, HEAD: stored byte for byte, never converted
    <name>/blobs/<digest>            GET, HEAD: one blob store for every repository and backend
    <name>/tags/list                 GET, with n and last

Digests are immutable and never need the upstream again. Tags are fresh for ``tag_ttl``, then
revalidated with a HEAD (which Docker Hub does not count against its pull limit): the same
digest refreshes the tag without a body transfer.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

from ...cache import Answer, Fetch, Policy
from ...config import BackendSpec
from ...config_values import Duration, HttpUrl, Size
from ...errors import BadRequest, MethodNotAllowed, NotFound, UpstreamError, VaultError
from ...exchange import PREFETCH_HEADER, Reply, Request
from ...upstream import Upstream, UpstreamResponse, UpstreamSettings
from ..base import BackendBase, CatalogShape, Context
from . import oci
from .auth import TokenAuth

log = logging.getLogger(__name__)
_MANIFEST = re.compile(r"^(?P<name>.+)/manifests/(?P<ref>[^/]+)$")
_BLOB = re.compile(r"^(?P<name>.+)/blobs/(?P<ref>[^/]+)$")
_TAGS = re.compile(r"^(?P<name>.+)/tags/list$")
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
_MAX_TAG_PAGES = 100


@dataclass(frozen=True)
class RegistrySettings(UpstreamSettings):
    tag_ttl: Duration = 300.0  # a tag is revalidated (HEAD upstream) after this
    default: bool = False  # serve /v2/<name>/... requests that name no backend
    registry_hosts: tuple[str, ...] = ()  # more names that ?ns= may use for this upstream
    token_realm_hosts: tuple[str, ...] = ()  # token realms allowed off the upstream's domain
    max_manifest_size: Size = oci.MAX_MANIFEST
    # On a client's GET of an image manifest, fetch its uncached config and layers in the
    # background, before the client asks for them (see ``_fetch_blobs``).
    prefetch_blobs: bool = True


@dataclass(frozen=True)
class DockerHubSettings(RegistrySettings):
    base_url: HttpUrl = "https://registry-1.docker.io"
    registry_hosts: tuple[str, ...] = ("docker.io", "index.docker.io")


class RegistryBackend(BackendBase):
    Settings = RegistrySettings

    def __init__(self, spec: BackendSpec, ctx: Context) -> None:
        super().__init__(spec, ctx)
        settings: RegistrySettings = spec.settings
        self.default = settings.default
        host = urlsplit(settings.base_url).netloc.lower()
        self.registry_hosts = (host, *(h.lower() for h in settings.registry_hosts))
        self._upstream = Upstream(self.name, settings, ctx.metrics, pool_size=ctx.pool_size)
        credentials = ((settings.username, settings.password or "")
                       if settings.username is not None else None)
        self._upstream.authorizer = TokenAuth(host, credentials, lambda: self._upstream.session,
                                              self._upstream.verify, settings.token_realm_hosts,
                                              settings.timeout.read)
        # Children of a new multi-arch index, and the blobs of an image manifest a client
        # asked for, are cached in the background, a few at a time.
        self._prefetch = ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"{self.name}-ahead")
        self._stopping = threading.Event()

    def stop_background(self) -> None:
        """A stop has begun: fetch nothing more ahead. A large image's blobs would otherwise
        keep the stop waiting its whole timeout; the fills already running finish, or are
        cut short, like any download."""
        self._stopping.set()
        self._prefetch.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self.stop_background()
        self._upstream.close()

    def _behind(self, work: Callable[..., None], *args: object) -> None:
        """Run ``work`` on the background pool, unless a stop has begun (and shut it)."""
        try:
            self._prefetch.submit(work, *args)
        except RuntimeError:  # shut down: a stop has begun
            pass

    @staticmethod
    def client_path(spec: BackendSpec, key: str) -> str | None:
        """The path (below ``/v2/`` or not: both route here) a client asks for to reach cache
        entry ``key``, or None. A blob's key names no repository (blobs are shared by all of
        them): ``blob_paths`` finds paths for blobs through the manifests that list them."""
        name = spec.prefix.strip("/")
        if key.startswith(f"{name} tags "):
            return f"{spec.prefix}{key[len(name) + 6:]}/tags/list"
        if not key.startswith(f"{name} manifest "):
            return None
        ref = key[len(name) + 10:]
        repo, _, ref = ref.partition("@") if "@" in ref else ref.rpartition(":")
        return f"{spec.prefix}{repo}/manifests/{ref}"

    @staticmethod
    def blob_paths(spec: BackendSpec, key: str, manifest: Callable[[], bytes]) -> dict[str, str]:
        """Digest -> client path of each blob the cached manifest ``key`` lists; ``manifest``
        reads its body, called only for keys that are manifests."""
        path = RegistryBackend.client_path(spec, key)
        if path is None or "/manifests/" not in path:
            return {}
        repo = path[len(spec.prefix):].rsplit("/manifests/", 1)[0]
        return {d: f"{spec.prefix}{repo}/blobs/{d}" for d in oci.references(manifest())}

    def catalog(self) -> CatalogShape:
        """Items are repositories; their members are the cached manifests, by tag or digest
        (``<prefix> manifest <name>:<tag>``, ``<prefix> manifest <name>@sha256:<hex>``)."""
        return CatalogShape("image", f"{self.name} manifest ", ":@", _manifest_member)

    @property
    def upstreams(self) -> list[Upstream]:
        return [self._upstream]

    def repository(self, name: str) -> str:
        oci.check_name(name)
        return name

    def handle(self, request: Request) -> Reply:
        if request.method not in ("GET", "HEAD"):
            raise MethodNotAllowed(f"{request.method}: this registry is a read-only cache",
                                   code="UNSUPPORTED")
        if request.path in ("", "/"):
            return Reply(status=200, body=[b"{}"], headers={
                **oci.API_HEADERS, "Content-Type": "application/json", "Content-Length": "2"})
        for pattern, handler in ((_MANIFEST, self._manifest), (_BLOB, self._blob)):
            match = pattern.match(request.path)
            if match:
                return handler(request, self.repository(match["name"]), match["ref"])
        match = _TAGS.match(request.path)
        if match:
            return self._tags(request, self.repository(match["name"]))
        raise NotFound(f"no registry endpoint at {request.path}", code="NAME_UNKNOWN")

    def render_error(self, exc: VaultError, status: int) -> Reply:
        body = oci.error_body(exc, status)
        return Reply(status=status, body=[body], headers={
            **oci.API_HEADERS, "Content-Type": "application/json", "Content-Length": str(len(body))})

    # -- manifests ---------------------------------------------------------------------------

    def _manifest_key(self, name: str, ref: str) -> str:
        return f"{self.name} manifest {name}{'@' if ':' in ref else ':'}{ref}"

    def _manifest(self, request: Request, name: str, ref: str) -> Reply:
        scope = f"repository:{name}:pull"
        url = f"{self._settings.base_url}/v2/{name}/manifests/{ref}"
        key = self._manifest_key(name, ref)
        by_tag = ":" not in ref
        if by_tag:
            if not oci.TAG.match(ref):
                raise BadRequest(f"invalid tag {ref!r}", code="TAG_INVALID")
            policy = Policy(ttl=self._settings.tag_ttl, offline=self._offline,
                            digest_header="docker-content-digest")
            fetch = lambda _: self._revalidate(url, scope, key)  # noqa: E731
        else:
            policy = Policy(ttl=None, offline=self._offline, digest=oci.check_digest(ref))
            fetch = lambda _: self._fetch_manifest(url, scope)  # noqa: E731
        try:
            served = self._cache.get_complete(self.name, key, policy, fetch)
        except NotFound as exc:
            raise NotFound(f"manifest {name}:{ref} is unknown upstream", code="MANIFEST_UNKNOWN",
                           upstream=exc.upstream) from None
        digest = f"sha256:{served.digest}"
        media_type = served.headers.get("content-type", oci.OCI_MANIFEST)
        if by_tag and served.cache_status in ("MISS", "REVALIDATED"):
            self._cache.alias(key, self._manifest_key(name, digest))
        if not oci.accepts(request.headers.get("accept"), media_type):
            raise NotFound(f"{name}:{ref} is a {media_type}, which the client's Accept header "
                           "does not include; Vault never converts manifests",
                           code="MANIFEST_UNKNOWN")
        # In the background, for a client's GET (not Vault's own prefetch, which fetches what
        # it was asked for itself: in the background too, these raced its own requests and
        # made its report say "already cached" for what it had just caused to be fetched):
        # a new index's children, for a pull by digest that may come offline; an image's
        # missing blobs, which the client asks for next. The image's manifest is often a HIT
        # already (its index's children were fetched ahead), hence any image manifest.
        if (request.method == "GET" and served.path and not self._offline
                and served.cache_status != "STALE"
                and PREFETCH_HEADER.lower() not in request.headers):
            if media_type not in oci.INDEXES:
                if self._settings.prefetch_blobs:
                    self._behind(self._fetch_blobs, name, served.path)
            elif served.cache_status == "MISS":
                for child in oci.children(Path(served.path).read_bytes()):
                    self._behind(self._cache_child, name, child)
        return Reply(served=served, cache_status=served.cache_status, headers={
            **oci.API_HEADERS, "Content-Type": media_type, "Docker-Content-Digest": digest,
            "ETag": f'"{digest}"'})

    def _fetch_manifest(self, url: str, scope: str) -> UpstreamResponse:
        resp = self._upstream.get(url, {"Accept": oci.MANIFEST_ACCEPT}, scope=scope)
        most = self._settings.max_manifest_size
        size = resp.headers.get("content-length", "")
        if size.isdigit() and int(size) > most:
            resp.close()
            raise UpstreamError(f"manifest at {urlsplit(url).path} is {size} bytes, over the "
                                f"{most} allowed (max_manifest_size)",
                                upstream=self._upstream.host)
        return resp.limited(most, f"a manifest at {urlsplit(url).path} of more than the {most} "
                                  "bytes allowed (max_manifest_size)")

    def _revalidate(self, url: str, scope: str, key: str) -> UpstreamResponse | Answer:
        """Fetch a tag; if a copy is cached, ask with a HEAD first whether it still holds."""
        stale = self._cache.index.get(key)
        if stale is not None and stale.status == 200 and stale.digest:
            head = self._upstream.get(url, {"Accept": oci.MANIFEST_ACCEPT}, scope=scope,
                                      method="HEAD")
            head.close()
            if head.headers.get("docker-content-digest") == f"sha256:{stale.digest}":
                return Answer(status=304)
        return self._fetch_manifest(url, scope)

    def _cache_child(self, name: str, digest: str) -> None:
        url = f"{self._settings.base_url}/v2/{name}/manifests/{digest}"
        try:
            self._cache.get_complete(
                self.name, self._manifest_key(name, digest),
                Policy(ttl=None, digest=oci.check_digest(digest)),
                lambda _: self._fetch_manifest(url, f"repository:{name}:pull"))
        except VaultError as exc:
            log.warning("could not cache child manifest %s@%s: %s", name, digest, exc.message)

    def _fetch_blobs(self, name: str, manifest: str) -> None:
        """Fetch the uncached blobs of the image manifest at path ``manifest`` one after another
        in the order it lists them. A client that asks for blobs one at a time (skopeo,
        crane) then finds the next one already arriving or cached instead of waiting for the
        upstream once per blob; docker's three parallel downloads simply join these fills.
        One at a time, so the blob the client asks for first is not slowed by the others. A
        client that already has a layer still gets it cached: the next one will not. The
        first failure ends it (one warning, not one per blob): the client's own requests
        then try again and get the error."""
        try:
            blobs = oci.blobs(Path(manifest).read_bytes())
        except OSError:  # evicted meanwhile
            return
        for digest, size in blobs:
            if self._stopping.is_set():
                return
            key = oci.BLOB_KEY + digest
            if not self._cache.cached(key):
                try:
                    self._cache.get_complete(self.name, key,
                                             Policy(ttl=None, digest=digest[7:], size=size),
                                             self._blob_fetch(name, digest))
                except VaultError as exc:
                    log.warning("could not cache blob %s of %s ahead of the client: %s",
                                digest, name, exc.message)
                    return

    # -- blobs and tags ------------------------------------------------------------------------

    def _blob_fetch(self, name: str, digest: str) -> Fetch:
        url = f"{self._settings.base_url}/v2/{name}/blobs/{digest}"
        return lambda headers: self._upstream.get(url, headers, scope=f"repository:{name}:pull",
                                                  any_redirect=True)

    def _blob(self, request: Request, name: str, ref: str) -> Reply:
        hex_digest = oci.check_digest(ref)
        try:
            # Keyed by digest alone: a layer shared by two images, repositories or backends is
            # fetched and stored once.
            served = self._cache.get(self.name, oci.BLOB_KEY + ref,
                                     Policy(ttl=None, offline=self._offline, digest=hex_digest),
                                     self._blob_fetch(name, ref))
        except NotFound as exc:
            raise NotFound(f"blob {ref} is unknown in {name}", code="BLOB_UNKNOWN",
                           upstream=exc.upstream) from None
        return Reply(served=served, cache_status=served.cache_status, headers={
            **oci.API_HEADERS, "Docker-Content-Digest": ref})

    def _tags(self, request: Request, name: str) -> Reply:
        url = f"{self._settings.base_url}/v2/{name}/tags/list"
        served = self._cache.get_complete(
            self.name, f"{self.name} tags {name}",
            Policy(ttl=self._settings.tag_ttl, offline=self._offline),
            lambda _: self._all_tags(url, name))
        try:
            tags = sorted(str(t) for t in json.loads(b"".join(served.open())).get("tags") or [])
        except (ValueError, AttributeError) as exc:
            raise UpstreamError(f"upstream tag list of {name} is not JSON ({exc})") from None
        query = parse_qs(request.query)
        if "last" in query:
            tags = [t for t in tags if t > query["last"][0]]
        headers = {**oci.API_HEADERS, "Content-Type": "application/json"}
        if "n" in query:
            if not query["n"][0].isdigit():
                raise BadRequest("n must be a number", code="PAGINATION_NUMBER_INVALID")
            n = int(query["n"][0])
            if len(tags) > n and n > 0:
                headers["Link"] = (f'<{request.mount}{name}/tags/list?n={n}&last={tags[n - 1]}>; '
                                   'rel="next"')
            tags = tags[:n]
        body = json.dumps({"name": name, "tags": tags}).encode()
        headers["Content-Length"] = str(len(body))
        return Reply(status=200, body=[body], headers=headers, cache_status=served.cache_status)


    def _all_tags(self, url: str, name: str) -> Answer:
        """Every page of the upstream's tag list, merged: registries paginate with a Link
        header, and Vault answers n/last itself from the whole list."""
        tags: list[str] = []
        for _ in range(_MAX_TAG_PAGES):
            resp = self._upstream.get(url, {"Accept": "application/json"},
                                      scope=f"repository:{name}:pull")
            try:
                tags += json.loads(b"".join(resp.chunks())).get("tags") or []
            except (ValueError, AttributeError) as exc:
                raise UpstreamError(f"upstream tag list of {name} is not JSON ({exc})") from None
            finally:
                resp.close()
            match = _NEXT.search(resp.headers.get("link", ""))
            if not match:
                break
            url = urljoin(url, match[1])
        return Answer(body=json.dumps({"name": name, "tags": tags}).encode(),
                      content_type="application/json")


def _manifest_member(rest: str) -> dict[str, str]:
    """``:<tag>`` or ``@<digest>``, as ``_manifest_key`` writes them."""
    return {"digest": rest[1:]} if rest.startswith("@") else {"tag": rest[1:]}


class DockerHubBackend(RegistryBackend):
    """``registry-v2`` with Docker Hub's defaults; one-segment names live under ``library/``."""

    Settings = DockerHubSettings

    def repository(self, name: str) -> str:
        return super().repository(name if "/" in name else f"library/{name}")
