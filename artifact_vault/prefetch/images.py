"""Container images: the manifest (an index: its children for the platforms asked), then
every config and layer blob.

A reference is ``<backend prefix>/<name>:<tag>`` or ``...@sha256:<hex>``, the name a client
pulls through Vault, e.g. ``dockerhub/library/alpine:3.20``. Blobs are keyed by digest alone,
in Vault's cache and here: a layer shared by two images is fetched once.
"""

from __future__ import annotations

import json

from ..backends.registry import oci
from .local import FAILED, FetchFailed, Outcome
from .runner import Runner


def split_ref(ref: str) -> tuple[str, str]:
    """(repository path, tag or digest): ``hub/team/app:v1`` -> (``hub/team/app``, ``v1``)."""
    ref = ref.strip().strip("/")
    if "@" in ref:
        name, _, reference = ref.partition("@")
        return name, reference
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:]
    return ref, "latest"


def platform_of(descriptor: dict) -> str:
    return oci.platform_of(descriptor.get("platform") or {})


def wanted(descriptor: dict, platforms: tuple[str, ...]) -> bool:
    """An index child is wanted if ``platforms`` is empty or ``all``, or names its os/arch
    (``linux/arm64`` matches every variant; ``linux/arm/v7`` only that one)."""
    if not platforms or "all" in platforms:
        return True
    have = platform_of(descriptor)
    return any(have == p or have.startswith(p + "/") for p in platforms)


def prefetch_image(runner: Runner, ref: str, platforms: tuple[str, ...]) -> None:
    name, reference = split_ref(ref)
    top = _manifest(runner, ref, name, reference)
    if top is None:
        return
    if top.get("mediaType") in oci.INDEXES or "manifests" in top:
        children = [d for d in top.get("manifests", []) if wanted(d, platforms)]
        if not children:
            runner.outcomes.add(Outcome(ref, FAILED, reason=(
                f"no child for {', '.join(platforms)}; it has "
                f"{', '.join(sorted({platform_of(d) for d in top.get('manifests', [])}))}")))
            return
        for child in children:
            doc = _manifest(runner, f"{ref} [{platform_of(child)}]", name, child["digest"])
            if doc is not None:
                _blobs(runner, name, doc)
    else:
        _blobs(runner, name, top)


def _manifest(runner: Runner, item: str, name: str, reference: str) -> dict | None:
    runner.progress.add()
    try:
        body = runner.client.get(item, f"/v2/{name}/manifests/{reference}",
                                 {"Accept": oci.MANIFEST_ACCEPT}, keep=True)
        doc = json.loads(body)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        return doc
    except FetchFailed:
        return None
    except ValueError as exc:
        runner.outcomes.add(Outcome(item, FAILED, reason=f"manifest is not JSON: {exc}"))
        return None


def _blobs(runner: Runner, name: str, manifest: dict) -> None:
    descriptors = [manifest.get("config") or {}, *manifest.get("layers", [])]
    for d in descriptors:
        digest = d.get("digest")
        if digest:
            runner.submit(f"blob {digest[:19]} ({name})", f"/v2/{name}/blobs/{digest}",
                          key=digest)
