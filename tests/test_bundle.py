"""export / import: air-gap bundles move a cache to another machine, whole or not at all."""

from __future__ import annotations

import hashlib
import json
import tarfile
import time
from pathlib import Path

import pytest
import requests
import yaml

from .conftest import http_backend, vault_config
from .maintenance_helpers import blob_files, cli, cli_json, rows, write_config

FILES = {"/dists/bookworm/InRelease": b"release v1\n" * 50,
         "/pool/main/a/a_1.deb": bytes(range(256)) * 40,
         "/pool/main/b/b_1.deb": b"B" * 70_000}
OTHER = {"/tool-1.0.tar.gz": b"tool" * 3000}


@pytest.fixture
def machine_a(upstream, make_vault, tmp_path):
    """Vault A, online, with every file fetched once; returns (vault, its config file)."""
    for path, body in {**FILES, **OTHER}.items():
        upstream.add(path, body)
    backends = [http_backend(upstream.url, prefix="/debian/"),
                http_backend(upstream.url, prefix="/tools/")]
    vault = make_vault(backends)
    for path in FILES:
        assert requests.get(f"{vault.url}/debian{path}", timeout=10).status_code == 200
    for path in OTHER:
        assert requests.get(f"{vault.url}/tools{path}", timeout=10).status_code == 200
    vault.settle()
    return vault, write_config(vault_config(tmp_path / "cache", backends), tmp_path / "a.yml")


@pytest.fixture
def machine_b(upstream, tmp_path) -> Path:
    """The config of machine B: the same backends, an empty cache, offline."""
    backends = [http_backend(upstream.url, prefix="/debian/"),
                http_backend(upstream.url, prefix="/tools/")]
    return write_config(vault_config(tmp_path / "cache-b", backends, offline=True),
                        tmp_path / "b.yml")


def export(config: Path, out: Path, *args: str) -> Path:
    cli(config, "export", "--output", str(out), *args)
    return out


def nothing_imported(cache: Path) -> bool:
    return (not (cache / "index.sqlite").exists() or rows(cache) == {}) and \
        blob_files(cache) == {} and list((cache / "tmp").iterdir()) == []


def test_a_bundle_is_a_tar_of_a_manifest_and_blobs(machine_a, tmp_path):
    bundle = export(machine_a[1], tmp_path / "all.tar")
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))
    assert names[0] == "manifest.json"
    assert sorted(names[1:]) == sorted(f"blobs/sha256/{hashlib.sha256(b).hexdigest()}"
                                       for b in {**FILES, **OTHER}.values())
    assert manifest["format"] == "artifact-vault-bundle" and manifest["version"] == 1
    assert len(manifest["entries"]) == 4


def test_import_into_an_empty_offline_cache_serves_every_file(machine_a, machine_b, upstream,
                                                              vault_process, tmp_path):
    bundle = export(machine_a[1], tmp_path / "all.tar")
    upstream.stop()
    out = cli_json(machine_b, "import", str(bundle))
    assert out["entries"] == 4 and out["added"] == 4 and out["blobs"] == 4
    b = vault_process(yaml.safe_load(machine_b.read_text()))
    for prefix, files in (("/debian", FILES), ("/tools", OTHER)):
        for path, body in files.items():
            resp = requests.get(f"{b.url}{prefix}{path}", timeout=10)
            assert resp.status_code == 200 and resp.content == body
            assert resp.headers["X-Cache"] in ("HIT", "STALE")


def test_importing_twice_changes_nothing(machine_a, machine_b, tmp_path):
    bundle = export(machine_a[1], tmp_path / "all.tar")
    cli(machine_b, "import", str(bundle))
    before = (rows(tmp_path / "cache-b"), blob_files(tmp_path / "cache-b"))
    again = cli_json(machine_b, "import", str(bundle))
    assert again["added"] == 0 and again["kept"] == 4 and again["blobs"] == 0
    assert (rows(tmp_path / "cache-b"), blob_files(tmp_path / "cache-b")) == before


def test_import_merges_and_never_replaces_a_newer_entry(machine_a, upstream, tmp_path):
    vault, config = machine_a
    bundle = export(config, tmp_path / "all.tar")
    cli(config, "purge", "debian/dists/*")
    upstream.add("/dists/bookworm/InRelease", b"release v2\n")
    time.sleep(0.01)  # fetched_at must differ from the exported row's
    assert requests.get(f"{vault.url}/debian/dists/bookworm/InRelease", timeout=10).content == \
        b"release v2\n"
    vault.settle()
    out = cli_json(config, "import", str(bundle))
    assert out["added"] == 0 and out["kept"] == 4
    assert requests.get(f"{vault.url}/debian/dists/bookworm/InRelease", timeout=10).content == \
        b"release v2\n"


def test_export_filters_by_backend_and_since(machine_a, tmp_path):
    config = machine_a[1]
    bundle = export(config, tmp_path / "tools.tar", "--backend", "tools")
    with tarfile.open(bundle) as tar:
        entries = json.load(tar.extractfile("manifest.json"))["entries"]
    assert [e["backend"] for e in entries] == ["tools"]
    bundle = export(config, tmp_path / "none.tar", "--since", "2999-01-01")
    with tarfile.open(bundle) as tar:
        assert tar.getnames() == ["manifest.json"]
    bundle = export(config, tmp_path / "recent.tar", "--since", "1h")
    with tarfile.open(bundle) as tar:
        assert len(tar.getnames()) == 5


def test_export_of_an_unknown_backend_is_a_usage_error(machine_a, tmp_path):
    result = cli(machine_a[1], "export", "-o", str(tmp_path / "x.tar"), "--backend", "nope",
                 check=False)
    assert result.returncode == 2 and "nope" in result.stderr
    assert not (tmp_path / "x.tar").exists()


def test_a_corrupt_bundle_imports_nothing(machine_a, machine_b, tmp_path):
    bundle = export(machine_a[1], tmp_path / "all.tar")
    data = bytearray(bundle.read_bytes())
    at = data.index(b"B" * 1000) + 500  # inside the b_1.deb member
    data[at] = ord("C")
    bundle.write_bytes(bytes(data))
    result = cli(machine_b, "import", str(bundle), check=False)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "corrupt" in result.stderr
    assert nothing_imported(tmp_path / "cache-b")


@pytest.mark.parametrize("keep", [0.5, 0.9, 600])
def test_a_truncated_bundle_imports_nothing(machine_a, machine_b, tmp_path, keep):
    bundle = export(machine_a[1], tmp_path / "all.tar")
    data = bundle.read_bytes()
    bundle.write_bytes(data[:int(len(data) * keep) if keep < 1 else int(keep)])
    result = cli(machine_b, "import", str(bundle), check=False)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "truncated" in result.stderr
    assert nothing_imported(tmp_path / "cache-b")


def test_a_file_that_is_not_a_bundle_is_refused_in_one_line(machine_b, tmp_path):
    (tmp_path / "junk.tar").write_bytes(b"hello world\n" * 100)
    result = cli(machine_b, "import", str(tmp_path / "junk.tar"), check=False)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert nothing_imported(tmp_path / "cache-b")


def test_export_refuses_a_blob_that_is_corrupt_in_the_cache(machine_a, tmp_path):
    body = FILES["/pool/main/a/a_1.deb"]
    hexd = hashlib.sha256(body).hexdigest()
    (tmp_path / "cache" / "blobs" / "sha256" / hexd[:2] / hexd).write_bytes(b"x" * len(body))
    result = cli(machine_a[1], "export", "-o", str(tmp_path / "all.tar"), check=False)
    assert result.returncode == 1 and "verify" in result.stderr
    assert list(tmp_path.glob("*.tar*")) == [] and list(tmp_path.glob(".*.part")) == []
