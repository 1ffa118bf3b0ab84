"""pip and uv through Vault in front of the real PyPI: cold, warm, then offline."""

from __future__ import annotations

import pytest
import requests

from .test_pypi_clients import UV, new_venv, pip, run

pytestmark = pytest.mark.integration
PACKAGES = ["requests", "six", "attrs"]


@pytest.fixture(scope="module", autouse=True)
def pypi_reachable() -> None:
    try:
        requests.head("https://pypi.org/simple/six/", timeout=5).raise_for_status()
    except requests.RequestException as exc:
        pytest.skip(f"pypi.org is not reachable: {exc}")


def misses(vault) -> float:
    registry = vault.app.metrics.registry
    return sum(registry.get_sample_value("vault_requests_total",
                                         {"backend": "pypi", "cache": status, "code": "200"}) or 0
               for status in ("MISS", "REVALIDATED", "BYPASS"))


def test_real_pypi_cold_then_warm_then_offline(make_vault, tmp_path):
    backend = {"type": "pypi", "config": {"prefix": "/pypi/", "base_url": "https://pypi.org/simple/"}}
    vault = make_vault([backend])
    url = f"{vault.url}/pypi/simple/"
    pip(tmp_path, new_venv(tmp_path, "p0"), "download", "-d", str(tmp_path / "d0"),
        "--index-url", url, *PACKAGES)
    run([str(UV), "pip", "install", "--no-cache", "-p", str(new_venv(tmp_path, "u0")),
         "--index-url", url, *PACKAGES], tmp_path)
    vault.settle()
    cold = misses(vault)
    assert cold > 0

    pip(tmp_path, new_venv(tmp_path, "p1"), "download", "-d", str(tmp_path / "d1"),
        "--index-url", url, *PACKAGES)
    run([str(UV), "pip", "install", "--no-cache", "-p", str(new_venv(tmp_path, "u1")),
         "--index-url", url, *PACKAGES], tmp_path)
    assert misses(vault) == cold  # warm: nothing new came from PyPI
    assert sorted(p.name for p in (tmp_path / "d0").iterdir()) == \
        sorted(p.name for p in (tmp_path / "d1").iterdir())
    vault.stop()

    offline = make_vault([backend], offline=True)
    url = f"{offline.url}/pypi/simple/"
    pip(tmp_path, new_venv(tmp_path, "p2"), "download", "-d", str(tmp_path / "d2"),
        "--index-url", url, *PACKAGES)
    run([str(UV), "pip", "install", "--no-cache", "-p", str(new_venv(tmp_path, "u2")),
         "--index-url", url, *PACKAGES], tmp_path)
    assert len(list((tmp_path / "d2").iterdir())) == len(list((tmp_path / "d0").iterdir()))
