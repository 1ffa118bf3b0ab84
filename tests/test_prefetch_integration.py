"""``artifact-vault prefetch`` of a couple of small packages from the real PyPI."""

from __future__ import annotations

import pytest

from artifact_vault.prefetch import Job

from .conftest import vault_config
from .test_prefetch import prefetch, rows
from .test_pypi_integration import pypi_reachable  # noqa: F401 (skips when PyPI is unreachable)

pytestmark = pytest.mark.integration


def test_real_pypi_packages_are_prefetched_for_two_pythons_then_found_cached(tmp_path):
    backend = {"type": "pypi", "config": {"prefix": "/pypi/",
                                          "base_url": "https://pypi.org/simple/"}}
    config = vault_config(tmp_path / "cache", [backend], log_level="WARNING")
    req = tmp_path / "requirements.txt"
    req.write_text("six==1.16.0\nattrs==23.2.0\n")
    job = Job(requirements=(req,), python_versions=("3.11", "3.12"))
    code, out, _ = prefetch(config, job)
    assert code == 0, out
    table = rows(out)
    assert table["six-1.16.0-py2.py3-none-any.whl"] == "fetched"
    assert table["attrs-23.2.0-py3-none-any.whl"] == "fetched"
    code, out, _ = prefetch(config, job)
    assert code == 0, out
    files = {item: result for item, result in rows(out).items() if item.endswith(".whl")}
    assert files and set(files.values()) == {"already cached"}
