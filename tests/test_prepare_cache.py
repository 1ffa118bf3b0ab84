"""``prepare-cache.sh offline.yml [bundle.tar]``: prefetch from a manifest, then export."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from .conftest import ROOT, http_backend, vault_config


def script_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """PATH finds a stub ``artifact-vault`` that runs the real one for prefetch and records
    the export call (the export command is built on another branch)."""
    stub_dir = tmp_path / "bin"
    stub_dir.mkdir()
    real = Path(sys.executable).parent / "artifact-vault"
    stub = stub_dir / "artifact-vault"
    stub.write_text(f'#!/bin/sh\nif [ "$1" = export ]; then echo "$@" > {tmp_path}/export.args; '
                    f'exit 0; fi\nexec {real} "$@"\n')
    stub.chmod(0o755)
    return {**os.environ, "PATH": f"{stub_dir}:{os.environ['PATH']}", **extra}


def test_prepare_cache_prefetches_the_manifest_and_exports_the_bundle(upstream, tmp_path):
    upstream.add("/a.txt", b"a")
    config = tmp_path / "vault.yml"
    config.write_text(yaml.safe_dump(vault_config(tmp_path / "cache", [http_backend(upstream.url)],
                                                  log_level="WARNING")))
    manifest = tmp_path / "offline.yml"
    manifest.write_text("urls: [/files/a.txt]\n")
    result = subprocess.run([str(ROOT / "prepare-cache.sh"), str(manifest), "out.tar"],
                            cwd=tmp_path,
                            env=script_env(tmp_path, ARTIFACT_VAULT_CONFIG=str(config)),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "1 fetched, 0 already cached, 0 failed" in result.stdout
    assert upstream.count("/a.txt") == 1
    # the config reaches export through the environment, as it reached prefetch
    assert (tmp_path / "export.args").read_text().split() == ["export", "--output", "out.tar"]


def test_prepare_cache_fails_without_exporting_when_an_item_fails(upstream, tmp_path):
    config = tmp_path / "vault.yml"
    config.write_text(yaml.safe_dump(vault_config(tmp_path / "cache", [http_backend(upstream.url)],
                                                  log_level="WARNING")))
    manifest = tmp_path / "offline.yml"
    manifest.write_text("urls: [/files/missing.txt]\n")
    result = subprocess.run([str(ROOT / "prepare-cache.sh"), "--config", str(config),
                             str(manifest), "out.tar"], cwd=tmp_path, env=script_env(tmp_path),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "/files/missing.txt" in result.stdout and "failed" in result.stdout
    assert not (tmp_path / "export.args").exists()
