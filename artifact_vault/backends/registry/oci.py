"""OCI distribution vocabulary: media types, name and reference grammar, error bodies."""

from __future__ import annotations

import json
import re

from ...errors import BadRequest, NotFound, VaultError

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
INDEXES = (DOCKER_LIST, OCI_INDEX)
# What Vault asks every upstream for, whatever the client asked: manifests are stored byte for
# byte and never converted, so the cache must hold what the registry really has.
MANIFEST_ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST,
                             "application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.5"))
API_HEADERS = {"Docker-Distribution-API-Version": "registry/2.0"}
# The largest manifest Vault accepts by default (as distribution does); also the most the catalog
# and status pages read of one to describe it.
MAX_MANIFEST = 4 * 1024 * 1024
# A blob's cache key is this and its digest, for every repository and every registry backend:
# a layer two images share is stored once.
BLOB_KEY = "oci blob "

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST = re.compile(r"^sha256:([a-f0-9]{64})$")
_ANY_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")

_CODES = {400: "UNSUPPORTED", 401: "UNAUTHORIZED", 403: "DENIED", 404: "NAME_UNKNOWN",
          405: "UNSUPPORTED", 416: "RANGE_INVALID", 429: "TOOMANYREQUESTS"}


def check_name(name: str) -> None:
    if len(name) > 255 or not NAME.match(name):
        raise oci_error(400, "NAME_INVALID", f"invalid repository name {name!r}")


def check_digest(digest: str) -> str:
    """The sha256 hex of ``digest``; other algorithms are valid OCI but not supported here."""
    match = DIGEST.match(digest)
    if match:
        return match[1]
    if _ANY_DIGEST.match(digest) and not digest.startswith("sha256:"):
        raise oci_error(400, "UNSUPPORTED", f"only sha256 digests are supported, not {digest!r}")
    raise oci_error(400, "DIGEST_INVALID", f"invalid digest {digest!r}")


def oci_error(status: int, code: str, message: str) -> VaultError:
    """An error with its OCI code, of the class the status table maps to ``status``."""
    return {400: BadRequest, 404: NotFound}[status](message, code=code)


def error_body(exc: VaultError, status: int) -> bytes:
    code = exc.code or _CODES.get(status, "UNAVAILABLE" if status >= 500 else "UNKNOWN")
    detail = {"upstream": exc.upstream} if exc.upstream else {}
    return json.dumps({"errors": [{"code": code, "message": exc.message, "detail": detail}]}).encode()


def _descriptors(manifest: bytes, *lists: str, config: bool = False) -> list[dict]:
    """The descriptors a manifest lists under ``lists`` (after its ``config``, if asked for)
    that carry a well-formed digest; none if the manifest cannot be read."""
    try:
        doc = json.loads(manifest)
        found = [doc.get("config") or {}] if config else []
        found += [d for name in lists for d in doc.get(name) or []]
        return [d for d in found if DIGEST.match(d.get("digest", ""))]
    except (ValueError, AttributeError, TypeError):
        return []


def children(manifest: bytes) -> list[str]:
    """Digests of the manifests an index or manifest list points to."""
    return [d["digest"] for d in _descriptors(manifest, "manifests")]


def references(manifest: bytes) -> list[str]:
    """Every digest a manifest points to: its config and layers, or an index's manifests."""
    return [d["digest"] for d in _descriptors(manifest, "layers", "manifests", config=True)]


def blobs(manifest: bytes) -> list[tuple[str, int | None]]:
    """(digest, size) of the blobs an image manifest's client fetches next: its config, then
    its layers in order. Foreign layers (``urls``: fetched from elsewhere, never from the
    registry) and anything unreadable are left out; an index has none."""
    return [(d["digest"], _size(d.get("size")))
            for d in _descriptors(manifest, "layers", config=True) if not d.get("urls")]


def _size(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def accepts(accept: str | None, media_type: str) -> bool:
    """Whether a client's Accept admits ``media_type``. No Accept header admits anything, and
    a single-platform manifest is never refused: clients that omit it still handle it."""
    if not accept or media_type not in INDEXES:
        return True
    types = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return media_type in types or "*/*" in types


def platform_of(doc: dict) -> str:
    """``os/arch[/variant]`` of a platform object (an index entry's, or an image config)."""
    parts = [doc.get("os"), doc.get("architecture"), doc.get("variant")]
    return "/".join(str(p) for p in parts if p)


def describe_manifest(manifest: bytes) -> dict:
    """What the catalog shows of a manifest: for an image its layer sizes and config digest;
    for an index its children with their platforms. Unreadable manifests describe as ``{}``."""
    try:
        doc = json.loads(manifest)
        if "manifests" in doc:
            return {"index": [{"digest": str(m.get("digest", "")),
                               "platform": platform_of(m.get("platform") or {})}
                              for m in doc["manifests"] if isinstance(m, dict)]}
        layers = {str(layer["digest"]): int(layer.get("size", 0)) for layer in doc["layers"]}
        config = doc.get("config") or {}
        return {"layers": layers, "config": str(config.get("digest", ""))}
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}
