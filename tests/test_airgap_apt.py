"""The air-gap round trip with apt against the real Debian mirror: apt-get update and
apt-get download through Vault A, export, import into an empty offline Vault B, and the same
apt commands through B get the same signed indexes and the same .deb files."""

from __future__ import annotations

import pytest

from .conftest import http_backend, vault_config
from .maintenance_helpers import cli, cli_json, write_config
from .test_apt_integration import (  # noqa: F401 (debian_mirror_reachable skips if offline)
    MIRROR, PACKAGES, PrivateApt, access_log, debian_mirror_reachable)

pytestmark = pytest.mark.integration


def test_apt_get_download_works_through_an_offline_vault_filled_from_a_bundle(
        tmp_path, vault_process):
    backend = http_backend(MIRROR, prefix="/debian/", ttl="10m", retries=2,
                           immutable=["*.deb", "by-hash/*"])
    config_a = vault_config(tmp_path / "cache", [backend])
    a = vault_process(config_a)
    debs = PrivateApt(tmp_path / "apt-a", a.url).update_and_download(PACKAGES, a.log_path)
    a.stop()
    bundle = tmp_path / "debian.tar"
    cli(write_config(config_a, tmp_path / "a.yml"), "export", "--output", str(bundle),
        "--backend", "debian")

    config_b = vault_config(tmp_path / "cache-b", [backend], offline=True)
    assert cli_json(write_config(config_b, tmp_path / "b.yml"), "import", str(bundle))["added"] > 0
    b = vault_process(config_b)
    debs_b = PrivateApt(tmp_path / "apt-b", b.url).update_and_download(PACKAGES, b.log_path)
    b.stop()
    assert debs_b == debs
    log = access_log(b.log_path)
    assert log and all(a.cache in ("HIT", "STALE") and a.status == 200 for a in log), log
