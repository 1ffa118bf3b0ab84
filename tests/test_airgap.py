"""The air-gap round trip: prime Vault A online, export, import into an empty Vault B that has
no upstream at all (``offline: true``, every upstream stopped), and the real clients (pip,
skopeo, a plain HTTP GET) get the very same bytes from B."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import requests
import yaml

from .conftest import http_backend, vault_config
from .maintenance_helpers import cli, cli_json, write_config
from .pypi_index import Index, wheel
from .registry_fixtures import build_image, push
from .test_pypi_clients import new_venv, pip, versions
from .test_registry import blobs_in, pull

FILES = {"/releases/tool-1.0.tar.gz": bytes(range(256)) * 400,
         "/releases/checksums.txt": b"tool-1.0.tar.gz ...\n"}
LAYERS = [b"airgap layer\n" * 2000, {"bin/app": b"\x7fELF" + b"y" * 30_000}]


def digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


def test_prime_export_import_then_pip_skopeo_and_get_work_through_an_offline_vault(
        upstream, registry, make_vault, vault_process, tmp_path):
    for path, body in FILES.items():
        upstream.add(path, body)
    pypi_upstream = type(upstream)()  # a second fake upstream: the package index
    try:
        index = Index(pypi_upstream, fmt="json")
        index.add(wheel("alpha", "1.0"), wheel("beta", "1.0", requires=["alpha"],
                                                upstream_metadata=False))
        image = push(build_image(tmp_path / "img", "v1", LAYERS), "team/app:v1", registry)
        backends = [
            http_backend(upstream.url, prefix="/files/"),
            {"type": "pypi", "config": {"prefix": "/pypi/", "retries": 0,
                                        "base_url": f"{pypi_upstream.url}/simple/"}},
            {"type": "registry-v2", "config": {"prefix": "/hub/", "retries": 0,
                                               "base_url": registry.url}}]

        # Machine A, online: prime it with the real clients.
        a = make_vault(backends)
        (tmp_path / "req.txt").write_text("beta==1.0\n")
        primed = tmp_path / "primed-wheels"
        pip(tmp_path, Path(sys.executable), "download", "--index-url", f"{a.url}/pypi/simple/",
            "-r", str(tmp_path / "req.txt"), "-d", str(primed))
        pulled_a = pull(a.url, "hub/team/app:v1", tmp_path / "pull-a")
        for path in FILES:
            assert requests.get(f"{a.url}/files{path}", timeout=10).status_code == 200
        a.settle()
        config_a = write_config(vault_config(tmp_path / "cache", backends), tmp_path / "a.yml")
        bundle = tmp_path / "bundle.tar"
        cli(config_a, "export", "--output", str(bundle))
    finally:
        pypi_upstream.stop()
    registry.stop()
    upstream.stop()

    # Machine B: empty cache, offline, nothing upstream is reachable any more.
    config_b = vault_config(tmp_path / "cache-b", backends, offline=True)
    path_b = write_config(config_b, tmp_path / "b.yml")
    result = cli_json(path_b, "import", str(bundle))
    assert result["added"] == result["entries"] > 0
    b = vault_process(yaml.safe_load(path_b.read_text()))

    python = new_venv(tmp_path, "offline")
    pip(tmp_path, python, "install", "--index-url", f"{b.url}/pypi/simple/",
        "-r", str(tmp_path / "req.txt"))
    assert versions(python, "alpha", "beta") == ["1.0", "1.0"]
    again = tmp_path / "offline-wheels"
    pip(tmp_path, Path(sys.executable), "download", "--index-url", f"{b.url}/pypi/simple/",
        "-r", str(tmp_path / "req.txt"), "-d", str(again))
    assert digests(again) == digests(primed)

    pulled_b = pull(b.url, "hub/team/app:v1", tmp_path / "pull-b")
    assert (pulled_b / "manifest.json").read_bytes() == image.manifest
    assert blobs_in(pulled_b) == set(image.blob_digests) == blobs_in(pulled_a)
    assert digests(pulled_b) == digests(pulled_a)

    for path, body in FILES.items():
        resp = requests.get(f"{b.url}/files{path}", timeout=10)
        assert resp.status_code == 200 and resp.content == body
    # The only misses on B are wheel metadata that B reads out of the imported wheels.
    misses = [line for line in b.log_path.read_text().splitlines()
              if "artifact_vault.access" in line and "cache=HIT" not in line
              and "cache=STALE" not in line and "cache=-" not in line]
    assert all(".whl.metadata 200 " in line and "cache=MISS" in line for line in misses), misses
