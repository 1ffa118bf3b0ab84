"""pip and uv, the real clients, installing through Vault in front of a local index."""

from __future__ import annotations

import base64

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .fake_upstream import FakeUpstream
from .pypi_index import Index, sdist, wheel
from .registry_fixtures import free_port

BIN = Path(sys.executable).parent
UV = BIN / "uv"


def clean_env(tmp: Path) -> dict[str, str]:
    """The environment without any pip/uv/proxy setting of this machine."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "UV_")) and "proxy" not in k.lower()}
    return {**env, "UV_NO_CONFIG": "1", "UV_CACHE_DIR": str(tmp / "uv-cache"),
            "PIP_CONFIG_FILE": os.devnull, "UV_PYTHON_DOWNLOADS": "never"}


def run(args: list[str], tmp: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, env=clean_env(tmp), cwd=cwd or tmp, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def new_venv(tmp: Path, name: str) -> Path:
    run([str(UV), "venv", "-q", "-p", sys.executable, str(tmp / name)], tmp)
    return tmp / name / "bin" / "python"


def pip(tmp: Path, python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check",
                "--python", str(python), *args, "--no-cache-dir"], tmp)


def versions(python: Path, *modules: str) -> list[str]:
    code = "; ".join(f"import {m}" for m in modules) + "; print(" + \
        ", ".join(f"{m}.VERSION" for m in modules) + ")"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                          check=True).stdout.split()


@pytest.fixture
def index(upstream: FakeUpstream) -> Index:
    idx = Index(upstream, fmt="json")
    idx.add(wheel("alpha", "1.0"), sdist("alpha", "1.0"),
            wheel("alpha", "2.0", yanked="broken build"),
            wheel("beta", "1.0", requires=["alpha"], upstream_metadata=False),
            wheel("gamma", "0.9"), wheel("gamma", "1.0", requires_python=">=3.99"))
    return idx


@pytest.fixture
def second_upstream():
    server = FakeUpstream()
    # alpha here too, newer than the first upstream's: the first upstream that has a project wins
    Index(server, fmt="html").add(wheel("delta", "3.0"), wheel("alpha", "9.0"))
    yield server
    server.stop()


def pypi(upstream_url: str, **config: object) -> dict:
    return {"type": "pypi", "config": {"prefix": "/pypi/", "base_url": f"{upstream_url}/simple/",
                                       "retries": 0, **config}}


def test_pip_installs_through_vault_once_from_upstream_then_from_cache(index, make_vault, tmp_path):
    vault = make_vault([pypi(index.upstream.url)])
    url = f"{vault.url}/pypi/simple/"
    for name in ("one", "two"):
        python = new_venv(tmp_path, name)
        pip(tmp_path, python, "install", "--index-url", url, "beta", "gamma")
        # alpha 2.0 is yanked, gamma 1.0 needs Python >= 3.99: pip takes what PyPI would give
        assert versions(python, "alpha", "beta", "gamma") == ["1.0", "1.0", "0.9"]
    up = index.upstream
    assert up.count("/packages/alpha-1.0-py3-none-any.whl") == 1
    assert up.count("/packages/beta-1.0-py3-none-any.whl") == 1
    assert up.count("/simple/alpha/") == 1 and up.count("/simple/beta/") == 1


def test_pip_installs_with_absolute_links_under_public_url(index, make_vault, tmp_path):
    port = free_port()
    vault = make_vault([pypi(index.upstream.url)], http_port=port,
                       public_url=f"http://127.0.0.1:{port}")
    python = new_venv(tmp_path, "public")
    pip(tmp_path, python, "install", "--index-url", f"{vault.url}/pypi/simple/", "beta")
    assert versions(python, "alpha", "beta") == ["1.0", "1.0"]


def test_uv_installs_through_vault_and_warm_installs_touch_no_upstream(index, make_vault, tmp_path):
    vault = make_vault([pypi(index.upstream.url)])
    url = f"{vault.url}/pypi/simple/"
    python = new_venv(tmp_path, "uv1")
    run([str(UV), "pip", "install", "-p", str(python), "--index-url", url, "beta"], tmp_path)
    assert versions(python, "alpha", "beta") == ["1.0", "1.0"]
    before = sum(index.upstream.hits.values())
    python2 = new_venv(tmp_path, "uv2")
    run([str(UV), "pip", "install", "--no-cache", "-p", str(python2), "--index-url", url, "beta"],
        tmp_path)
    assert sum(index.upstream.hits.values()) == before


def test_pip_require_hashes_passes_with_the_index_hashes(index, make_vault, tmp_path):
    vault = make_vault([pypi(index.upstream.url)])
    alpha = next(d for d in index.dists if d.filename == "alpha-1.0-py3-none-any.whl")
    req = tmp_path / "req.txt"
    req.write_text(f"alpha==1.0 --hash=sha256:{alpha.sha256}\n")
    python = new_venv(tmp_path, "hashes")
    pip(tmp_path, python, "install", "--require-hashes", "--only-binary", ":all:", "-r", str(req),
        "--index-url", f"{vault.url}/pypi/simple/")
    assert versions(python, "alpha") == ["1.0"]


def test_uv_lock_records_the_upstream_hashes(index, make_vault, tmp_path):
    vault = make_vault([pypi(index.upstream.url)])
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "proj"\nversion = "0"\nrequires-python = ">=3.11"\n'
        'dependencies = ["beta"]\n')
    run([str(UV), "lock", "--index-url", f"{vault.url}/pypi/simple/"], tmp_path, cwd=project)
    lock = (project / "uv.lock").read_text()
    for d in index.dists:
        if d.filename in ("alpha-1.0-py3-none-any.whl", "beta-1.0-py3-none-any.whl"):
            assert f"sha256:{d.sha256}" in lock


def test_resolving_with_uv_needs_metadata_only_not_wheels(index, make_vault, tmp_path):
    vault = make_vault([pypi(index.upstream.url)])
    (tmp_path / "req.in").write_text("alpha\n")
    run([str(UV), "pip", "compile", "--no-cache", "req.in", "--index-url",
         f"{vault.url}/pypi/simple/", "-o", "req.txt"], tmp_path)
    assert "alpha==1.0" in (tmp_path / "req.txt").read_text()
    assert index.upstream.count("/packages/alpha-1.0-py3-none-any.whl.metadata") == 1
    assert index.upstream.count("/packages/alpha-1.0-py3-none-any.whl") == 0
    asked = len(index.upstream.log)
    run([str(UV), "pip", "compile", "--no-cache", "req.in", "--index-url",
         f"{vault.url}/pypi/simple/", "-o", "again.txt"], tmp_path)
    assert "alpha==1.0" in (tmp_path / "again.txt").read_text()
    assert len(index.upstream.log) == asked  # resolved again from the cache alone


def test_a_project_only_on_the_second_upstream_is_found_there(index, second_upstream,
                                                              make_vault, tmp_path):
    vault = make_vault([{"type": "pypi", "config": {"prefix": "/pypi/", "retries": 0, "upstreams": [
        {"url": f"{index.upstream.url}/simple/"},
        {"url": f"{second_upstream.url}/simple/", "username": "u2", "password": "p2"}]}}])
    python = new_venv(tmp_path, "two-upstreams")
    pip(tmp_path, python, "install", "--index-url", f"{vault.url}/pypi/simple/", "delta", "alpha")
    assert versions(python, "delta", "alpha") == ["3.0", "1.0"]  # not the second's alpha 9.0
    assert second_upstream.count("/simple/alpha/") == 0  # the first upstream had it
    # Each upstream's credentials go to it alone.
    basic = "Basic " + base64.b64encode(b"u2:p2").decode()
    assert {h.get("Authorization") for _, p, h in second_upstream.log if p == "/simple/delta/"
            } == {basic}
    assert all("Authorization" not in h for _, _, h in index.upstream.log)


def test_after_priming_pip_and_uv_work_offline(index, make_vault, tmp_path):
    online = make_vault([pypi(index.upstream.url)])
    url = f"{online.url}/pypi/simple/"
    pip(tmp_path, new_venv(tmp_path, "prime"), "install", "--index-url", url, "beta")
    online.settle()
    online.stop()
    index.upstream.stop()
    offline = make_vault([pypi(index.upstream.url)], offline=True)
    url = f"{offline.url}/pypi/simple/"
    python = new_venv(tmp_path, "offline-pip")
    pip(tmp_path, python, "install", "--index-url", url, "beta")
    assert versions(python, "alpha", "beta") == ["1.0", "1.0"]
    python = new_venv(tmp_path, "offline-uv")
    run([str(UV), "pip", "install", "--no-cache", "-p", str(python), "--index-url", url, "beta"],
        tmp_path)
    assert versions(python, "alpha", "beta") == ["1.0", "1.0"]
