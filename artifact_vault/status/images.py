"""Image facts for the catalog: platforms and sizes, read from cached manifests.

The index knows a manifest's own size, not the image's: that is the sum of the layer sizes the
manifest lists. So the catalog reads manifests, but only those of the repositories on the page
being shown, at most ``MAX_READS`` per repository, each at most ``oci.MAX_MANIFEST`` bytes. A
manifest named by digest never changes, so what was read is remembered by digest.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from ..backends.registry import oci
from ..cache.blobs import BlobStore
from .catalog import Catalog, Member

MAX_CONFIG = 1024 * 1024
MAX_READS = 32  # manifests read per repository for one listing row
_REMEMBERED = 4096


@dataclass
class Tag:
    """One tag (or untagged digest) of a repository, as the catalog shows it."""

    ref: str  # the tag, or the digest for a manifest cached by digest alone
    digest: str  # sha256:<hex> of the manifest
    platforms: list[str] = field(default_factory=list)
    size: int | None = None  # bytes of the layers of every cached platform; None: unknown
    hits: int = 0
    last_access: float = 0.0


@dataclass
class Repository:
    tags: list[Tag]
    digests: int  # manifests cached by digest (children of multi-arch indexes included)
    platforms: list[str]
    size: int | None  # distinct layers over every manifest read
    partial: bool  # not every manifest was read (see MAX_READS)


class Images:
    """Reads and remembers what cached manifests say. Thread-safe."""

    def __init__(self, catalog: Catalog, blobs: BlobStore) -> None:
        self._catalog = catalog
        self._blobs = blobs
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, dict] = OrderedDict()

    def repository(self, members: list[Member], max_reads: int = MAX_READS) -> Repository:
        by_digest = {m.facts["digest"]: m for m in members if "digest" in m.facts}
        tagged = [m for m in members if "tag" in m.facts]
        # A digest that is no tag's and no index's child is shown as an untagged manifest.
        children: set[str] = set()
        layers: dict[str, int] = {}
        reads = 0
        tags: list[Tag] = []
        for member in tagged + list(by_digest.values()):
            digest = f"sha256:{member.digest}"
            if "digest" in member.facts and (digest in children or any(
                    t.digest == digest for t in tags)):
                continue
            tag = Tag(member.facts.get("tag") or digest, digest, hits=member.hits,
                      last_access=member.last_access)
            tags.append(tag)
            if reads >= max_reads:
                continue
            reads += 1
            doc = self._manifest(member.digest)
            parts = ([(c["digest"], c["platform"]) for c in doc.get("index", [])]
                     if "index" in doc else [(digest, "")])
            size = 0 if doc else None
            for child_digest, platform in parts:
                children.add(child_digest)
                child = doc if child_digest == digest else self._child(by_digest, child_digest)
                if child_digest != digest:
                    reads += 1
                if "layers" not in child:
                    continue
                platform = platform or self._platform(child.get("config", ""))
                if platform:
                    tag.platforms.append(platform)
                size = (size or 0) + sum(child["layers"].values())
                layers.update(child["layers"])
            tag.size = size
        platforms = sorted({p for t in tags for p in t.platforms})
        return Repository(tags, len(by_digest), platforms,
                          sum(layers.values()) if layers else None, reads >= max_reads)

    def _child(self, by_digest: dict[str, Member], digest: str) -> dict:
        member = by_digest.get(digest)
        return self._manifest(member.digest) if member and member.digest else {}

    def _manifest(self, hex_digest: str | None) -> dict:
        """What the manifest with this blob digest says; ``{}`` if it cannot be read."""
        if not hex_digest:
            return {}
        with self._lock:
            if hex_digest in self._seen:
                self._seen.move_to_end(hex_digest)
                return self._seen[hex_digest]
        doc = oci.describe_manifest(self._read(hex_digest, oci.MAX_MANIFEST) or b"")
        with self._lock:
            self._seen[hex_digest] = doc
            while len(self._seen) > _REMEMBERED:
                self._seen.popitem(last=False)
        return doc

    def _platform(self, config_digest: str) -> str:
        """os/arch from the image config blob, if a client fetched it through Vault."""
        key = f"platform {config_digest}"
        with self._lock:
            if key in self._seen:
                return str(self._seen[key].get("platform", ""))
        entry = self._catalog.entry(oci.BLOB_KEY + config_digest) if config_digest else None
        raw = self._read(entry[0], MAX_CONFIG) if entry and entry[0] else None
        try:
            platform = oci.platform_of(json.loads(raw)) if raw else ""
        except (ValueError, AttributeError):
            platform = ""
        if platform:  # an unknown one may be cached later: ask again next time
            with self._lock:
                self._seen[key] = {"platform": platform}
        return platform

    def _read(self, hex_digest: str, limit: int) -> bytes | None:
        try:
            with open(self._blobs.file(hex_digest), "rb") as f:
                data = f.read(limit + 1)
        except (OSError, ValueError):
            return None
        return data if len(data) <= limit else None
