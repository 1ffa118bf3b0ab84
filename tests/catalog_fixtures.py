"""A Vault with something in every catalog: files, PyPI projects and images, all cached
through real requests against local upstreams (the fake http upstream, a local PEP 691 index,
the real CNCF distribution registry)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
import requests

from artifact_vault.app import build_app
from artifact_vault.config import parse_config
from artifact_vault.server import create_server

from .conftest import Vault, http_backend, vault_config
from .fake_upstream import FakeUpstream
from .pypi_index import Index, sdist, wheel
from .registry_fixtures import (MANIFEST_ACCEPT, ImageIndex, Registry, build_image, build_index,
                                push, start_registry)

# Sizes out of name order, so that sorting by size visibly reorders the list.
FILE_SIZES = {f"file{i:02d}.bin": 1000 + (i * 5) % 12 * 1000 for i in range(12)}


@dataclass
class Populated:
    vault: Vault
    image_sizes: dict[str, int]  # "name:tag" -> sum of layer sizes
    multi: ImageIndex


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Populated]:
    """One populated Vault for a whole test module: pushing and pulling the images is the
    slow part, and the tests only read. Tests that change the cache make their own Vault."""
    tmp = tmp_path_factory.mktemp("catalog")
    upstream = FakeUpstream()
    registry = start_registry(tmp / "registry")
    started: list[Vault] = []

    def make(backends: list[dict[str, Any]]) -> Vault:
        config = parse_config(vault_config(tmp / "cache", backends), env={})
        app = build_app(config)
        server = create_server(app, "127.0.0.1", 0, threads=32)
        threading.Thread(target=server.run, daemon=True).start()
        started.append(Vault(f"http://127.0.0.1:{server.effective_port}", app, config, server))
        return started[-1]

    try:
        yield populate(make, upstream, registry, tmp)
    finally:
        for vault in started:
            vault.stop()
        registry.close()
        upstream.stop()


def backends(upstream: FakeUpstream, registry: Registry) -> list[dict[str, Any]]:
    return [http_backend(upstream.url, "/files/"),
            {"type": "pypi", "config": {"prefix": "/pypi/", "base_url": f"{upstream.url}/simple",
                                        "retries": 0}},
            # Blobs are fetched here as ``pull`` says (configs, not layers): fetched ahead,
            # they would be cached in the background, and their hits would vary the "most
            # requested" ties.
            {"type": "registry-v2", "config": {"prefix": "/hub/", "base_url": registry.url,
                                               "retries": 0, "default": True,
                                               "prefetch_blobs": False}}]


def populate(make_vault: Callable[..., Vault], upstream: FakeUpstream, registry: Registry,
             tmp_path: Path) -> Populated:
    for name, size in FILE_SIZES.items():
        upstream.add(f"/{name}", name.encode() * (size // len(name)))
    Index(upstream, fmt="json").add(
        wheel("alpha", "1.0"), wheel("alpha", "2.0"), sdist("alpha", "2.0"), wheel("beta", "0.1"))
    images = {"team/app:v1": build_image(tmp_path / "a1", "v1", [b"app one\n" * 3000]),
              "team/app:v2": build_image(tmp_path / "a2", "v2", [b"app two\n" * 5000, b"x\n"]),
              "tools/lint:1.0": build_image(tmp_path / "l", "1.0", [b"lint\n" * 100])}
    for ref, image in images.items():
        push(image, ref, registry)
    multi = build_index(tmp_path / "m", "multi", [("amd64", [b"amd\n" * 800]),
                                                  ("arm64", [b"arm\n" * 900])])
    push(multi, "team/multi:1", registry)

    vault = make_vault(backends(upstream, registry))
    for name in FILE_SIZES:
        assert requests.get(f"{vault.url}/files/{name}", timeout=30).status_code == 200
    assert requests.get(f"{vault.url}/files/file03.bin", timeout=30).status_code == 200  # a hit
    for project in ("alpha", "beta"):
        page_url = f"{vault.url}/pypi/simple/{project}/"
        page = requests.get(page_url, timeout=30,
                            headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json()
        for f in page["files"]:
            assert requests.get(urljoin(page_url, f["url"]), timeout=30).status_code == 200
    sizes = {}
    for ref in [*images, "team/multi:1"]:
        name, tag = ref.split(":")
        sizes[ref] = pull(vault.url, name, tag)
    vault.settle()
    return Populated(vault, sizes, multi)


def pull(vault_url: str, name: str, ref: str) -> int:
    """Fetch a manifest (and, for an index, its children) and each config, as a client does;
    the layer sizes the manifests list, summed."""
    resp = requests.get(f"{vault_url}/v2/hub/{name}/manifests/{ref}", timeout=30,
                        headers={"Accept": MANIFEST_ACCEPT})
    assert resp.status_code == 200, resp.text
    doc = json.loads(resp.content)
    if "manifests" in doc:
        return sum(pull(vault_url, name, child["digest"]) for child in doc["manifests"])
    config = requests.get(f"{vault_url}/v2/hub/{name}/blobs/{doc['config']['digest']}", timeout=30)
    assert config.status_code == 200
    return sum(layer["size"] for layer in doc["layers"])
