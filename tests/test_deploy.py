"""Deployment: the install script the Dockerfile runs, the systemd unit, the config env var."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import yaml

from .conftest import ROOT, http_backend, vault_config


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    prefix = tmp_path_factory.mktemp("install") / "artifact-vault"
    done = subprocess.run(["sh", str(ROOT / "deploy" / "install.sh"), str(prefix)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("artifact-vault ")
    return prefix


def test_the_dockerfile_installs_with_the_tested_script():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "RUN /src/deploy/install.sh /opt/artifact-vault" in dockerfile
    for needed in ("USER artifact-vault", "VOLUME /var/cache/artifact-vault", "EXPOSE 8080",
                   "HEALTHCHECK", "ARTIFACT_VAULT_CONFIG=/etc/artifact-vault/config.yml"):
        assert needed in dockerfile
    for copied in re.findall(r"^COPY (.+) /", dockerfile, re.M):
        for name in copied.split():
            assert (ROOT / name).exists(), name


def test_the_installed_command_serves_with_the_config_from_the_environment(installed, tmp_path):
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump(vault_config(tmp_path / "cache",
                                                  [http_backend("http://127.0.0.1:9")])))
    done = subprocess.Popen([str(installed / "bin" / "artifact-vault"), "serve"],
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin", "ARTIFACT_VAULT_CONFIG": str(config)})
    try:
        assert done.stderr is not None
        for line in done.stderr:
            match = re.search(r"listening on http://[\d.]+:(\d+)/", line)
            if match:
                break
        assert match, "the installed server did not start"
        health = requests.get(f"http://127.0.0.1:{match[1]}/health", timeout=10)
        assert health.status_code == 200 and health.json()["status"] == "ok"
    finally:
        done.terminate()
        assert done.wait(30) == 0


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_systemd_unit_passes_systemd_analyze_verify(installed, tmp_path):
    unit = (ROOT / "deploy" / "artifact-vault.service").read_text()
    assert "/opt/artifact-vault/bin/artifact-vault" in unit
    for needed in ("DynamicUser=yes", "CacheDirectory=artifact-vault", "ProtectSystem=strict",
                   "NoNewPrivileges=yes", "Restart=on-failure"):
        assert needed in unit
    copy = tmp_path / "artifact-vault.service"
    copy.write_text(unit.replace("/opt/artifact-vault", str(installed)))
    done = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_a_sigterm_stop_waits_no_longer_than_the_unit_allows():
    unit = (ROOT / "deploy" / "artifact-vault.service").read_text()
    allowed = int(re.search(r"^TimeoutStopSec=(\d+)", unit, re.M)[1])  # type: ignore[index]
    from artifact_vault.config import Config
    assert Config.__dataclass_fields__["stop_timeout"].default < allowed
