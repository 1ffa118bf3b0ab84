"""Cache keys as client paths: each backend maps its own keys, purge and repair use them."""

from __future__ import annotations

import hashlib

import pytest
import requests

from artifact_vault.backends import BACKENDS
from artifact_vault.catalog import matches
from artifact_vault.config import parse_config

from .conftest import vault_config
from .maintenance_helpers import cli, cli_json, write_config
from .pypi_index import Index, wheel
from .registry_fixtures import build_image, push
from .test_registry import LAYERS, pull


def spec(kind: str, prefix: str, **config: object):
    return parse_config({"backends": [{"type": kind, "config": {"prefix": prefix, **config}}]},
                        env={}).backends[0]


@pytest.mark.parametrize("kind, config, key, path", [
    ("http", {"base_url": "http://up.test/debian"},
     "debian http://up.test/debian/pool/main/a/a%3a1.deb", "/debian/pool/main/a/a:1.deb"),
    ("http", {"base_url": "http://up.test"}, "debian http://up.test/x?arch=amd64",
     "/debian/x?arch=amd64"),
    ("http", {"base_url": "http://up.test"}, "other http://up.test/x", None),  # not its key
    ("pypi", {"base_url": "http://up.test/simple/"}, "pypi root http://up.test/simple/",
     "/pypi/simple/"),
    ("pypi", {"base_url": "http://up.test/simple/"}, "pypi page http://up.test/simple/six/",
     "/pypi/simple/six/"),
    ("pypi", {"base_url": "http://up.test/simple/"}, "pypi file six/ab12/six-1.0.whl",
     "/pypi/files/six/ab12/six-1.0.whl"),
    ("pypi", {"base_url": "http://up.test/simple/"}, "pypi metadata six/ab12/six-1.0.whl",
     "/pypi/files/six/ab12/six-1.0.whl.metadata"),
    ("registry-v2", {"base_url": "http://up.test"}, "hub manifest team/app:v1",
     "/hub/team/app/manifests/v1"),
    ("registry-v2", {"base_url": "http://up.test"}, "hub manifest team/app@sha256:" + "a" * 64,
     "/hub/team/app/manifests/sha256:" + "a" * 64),
    ("registry-v2", {"base_url": "http://up.test"}, "hub tags team/app", "/hub/team/app/tags/list"),
    ("registry-v2", {"base_url": "http://up.test"}, "oci blob sha256:" + "a" * 64, None),
])
def test_each_backend_maps_its_keys_to_client_paths(kind, config, key, path):
    prefix = {"http": "/debian/", "pypi": "/pypi/", "registry-v2": "/hub/"}[kind]
    s = spec(kind, prefix, **config)
    assert BACKENDS[kind].client_path(s, key) == path


@pytest.mark.parametrize("pattern, name, hit", [
    ("pypi/files/six/*", "/pypi/files/six/ab/six-1.0.whl", True),
    ("/pypi/files/six/*", "/pypi/files/six/ab/six-1.0.whl", True),
    ("pypi/files/six", "/pypi/files/six/ab/six-1.0.whl", False),
    ("pypi/*.metadata", "/pypi/files/six/ab/six-1.0.whl.metadata", True),
    ("hub/team/app/*", "/hub/team/app/blobs/sha256:ab", True),
    ("hub/team/ap?/manifests/v[12]", "/hub/team/app/manifests/v1", True),
])
def test_purge_patterns_are_globs_over_the_whole_client_path(pattern, name, hit):
    assert matches(pattern, name) is hit


@pytest.fixture
def hub(registry, make_vault, tmp_path):
    image = push(build_image(tmp_path / "img", "v1", LAYERS), "team/app:v1", registry)
    backends = [{"type": "registry-v2", "config": {"prefix": "/hub/", "base_url": registry.url,
                                                   "retries": 0}}]
    vault = make_vault(backends)
    pull(vault.url, "hub/team/app:v1", tmp_path / "pull-1")
    vault.settle()
    return vault, image, write_config(vault_config(tmp_path / "cache", backends),
                                      tmp_path / "vault.yml")


def test_registry_blobs_are_named_through_the_manifests_that_list_them(hub):
    _, image, config = hub
    names = {r["name"] for r in cli_json(config, "purge", "--dry-run", "hub/team/app/*")["removed"]}
    assert {f"/hub/team/app/blobs/{d}" for d in image.blob_digests} <= names
    assert "/hub/team/app/manifests/v1" in names
    assert f"/hub/team/app/manifests/{image.digest}" in names


def test_verify_repair_refetches_a_registry_blob_by_way_of_its_manifest(hub, registry, tmp_path):
    vault, image, config = hub
    layer = image.blob_digests[-1]
    blob = tmp_path / "cache" / "blobs" / "sha256" / layer[7:9] / layer[7:]
    blob.write_bytes(b"\0" * blob.stat().st_size)
    out = cli_json(config, "verify", "--repair")
    assert [(r["path"], r["status"]) for r in out["repaired"]] == [
        (f"/hub/team/app/blobs/{layer}", 200)]
    assert registry.blob_gets("team/app")[layer] == 2
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == layer[7:]
    assert requests.get(f"{vault.url}/v2/hub/team/app/blobs/{layer}",
                        timeout=10).headers["X-Cache"] == "HIT"


def test_a_blob_no_cached_manifest_lists_is_reported_not_repairable(hub, tmp_path):
    _, image, config = hub
    cli(config, "purge", "hub/team/app/manifests/*")
    layer = image.blob_digests[-1]
    blob = tmp_path / "cache" / "blobs" / "sha256" / layer[7:9] / layer[7:]
    blob.write_bytes(b"\0" * blob.stat().st_size)
    result = cli(config, "verify", "--repair", check=False)
    assert result.returncode == 1
    assert f"NOT repaired  oci blob {layer}  (no client path)" in result.stdout


def test_pypi_entries_purge_by_project(upstream, make_vault, tmp_path):
    Index(upstream, fmt="json").add(wheel("alpha", "1.0"), wheel("beta", "1.0"))
    backends = [{"type": "pypi", "config": {"prefix": "/pypi/", "retries": 0,
                                            "base_url": f"{upstream.url}/simple/"}}]
    vault = make_vault(backends)
    for name in ("alpha", "beta"):
        page = requests.get(f"{vault.url}/pypi/simple/{name}/?format=json", timeout=10).json()
        url = requests.compat.urljoin(f"{vault.url}/pypi/simple/{name}/", page["files"][0]["url"])
        assert requests.get(url, timeout=10).status_code == 200
    vault.settle()
    config = write_config(vault_config(tmp_path / "cache", backends), tmp_path / "vault.yml")
    out = cli_json(config, "purge", "pypi/*/alpha/*")
    assert sorted(r["name"].split("/")[2] for r in out["removed"]) == ["files", "simple"]
    left = cli_json(config, "purge", "--dry-run", "pypi/*")["removed"]
    assert all("beta" in r["name"] for r in left) and len(left) == 2
