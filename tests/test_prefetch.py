"""``artifact-vault prefetch`` for Python packages and plain URLs, against local upstreams."""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from artifact_vault.config import parse_config
from artifact_vault.prefetch import Job, run
from artifact_vault.prefetch.job import load_manifest

from .conftest import ROOT, http_backend, vault_config
from .fake_upstream import FakeUpstream
from .pypi_index import Index, sdist, wheel
from .test_pypi_clients import UV, new_venv, pip, versions
from .test_pypi_clients import run as run_tool


def pypi(upstream_url: str) -> dict:
    return {"type": "pypi", "config": {"prefix": "/pypi/", "base_url": f"{upstream_url}/simple/",
                                       "retries": 0}}


def config_for(tmp_path: Path, upstream: FakeUpstream) -> dict:
    """Same cache_dir as the ``make_vault`` fixture: tests serve what prefetch stored."""
    return vault_config(tmp_path / "cache", [pypi(upstream.url), http_backend(upstream.url)],
                        log_level="WARNING")


def prefetch(config: dict, job: Job) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(parse_config(config, env={}), job, out=out, err=err, tty=False)
    return code, out.getvalue(), err.getvalue()


def rows(summary: str) -> dict[str, str]:
    """item -> result, from the summary table."""
    found = {}
    for line in summary.splitlines()[1:-1]:
        match = re.match(r"^(.+?)\s{2,}(fetched|already cached|failed)\s", line)
        assert match, line
        found[match[1]] = match[2]
    return found


def file_gets(upstream: FakeUpstream) -> dict[str, int]:
    return {p: n for p, n in upstream.hits.items() if p.startswith("/packages/")}


@pytest.fixture
def index(upstream: FakeUpstream) -> Index:
    idx = Index(upstream, fmt="json")
    idx.add(wheel("alpha", "1.0", requires_python="<3.12"), sdist("alpha", "1.0"),
            wheel("alpha", "2.0", requires_python=">=3.12"),
            wheel("beta", "1.0", requires=["alpha"]), wheel("beta", "0.5"),
            wheel("gamma", "1.0"))
    return idx


def test_requirements_are_resolved_by_pip_for_each_python_version(index, tmp_path):
    req = tmp_path / "requirements.in"
    req.write_text("beta\n")
    job = Job(requirements=(req,), python_versions=("3.11", "3.12"))
    code, out, _ = prefetch(config_for(tmp_path, index.upstream), job)
    assert code == 0, out
    # 3.11 gets alpha 1.0, 3.12 alpha 2.0; beta is shared and comes from upstream once
    assert file_gets(index.upstream) == {
        "/packages/beta-1.0-py3-none-any.whl": 1, "/packages/beta-1.0-py3-none-any.whl.metadata": 1,
        "/packages/alpha-1.0-py3-none-any.whl": 1,
        "/packages/alpha-1.0-py3-none-any.whl.metadata": 1,
        "/packages/alpha-2.0-py3-none-any.whl": 1,
        "/packages/alpha-2.0-py3-none-any.whl.metadata": 1}
    table = rows(out)
    assert table["pip resolve requirements.in (py3.11)"] == "fetched"
    assert table["pip resolve requirements.in (py3.12)"] == "fetched"
    assert table["alpha-2.0-py3-none-any.whl"] == "fetched"
    assert len(re.findall(r"^beta-1.0-py3-none-any.whl ", out, re.MULTILINE)) == 1


def test_hashed_requirements_fetch_exactly_their_files_and_then_install_offline(
        index, make_vault, tmp_path):
    alpha = next(d for d in index.dists if d.filename == "alpha-1.0-py3-none-any.whl")
    gamma = next(d for d in index.dists if d.project == "gamma")
    req = tmp_path / "requirements.txt"
    req.write_text(f"alpha==1.0 \\\n    --hash=sha256:{alpha.sha256}\n"
                   f"gamma==1.0 --hash=sha256:{gamma.sha256}  # a comment\n")
    code, out, _ = prefetch(config_for(tmp_path, index.upstream), Job(requirements=(req,)))
    assert code == 0, out
    assert file_gets(index.upstream) == {f"/packages/{d.filename}{ext}": 1
                                         for d in (alpha, gamma) for ext in ("", ".metadata")}
    assert rows(out)[alpha.filename] == "fetched"

    index.upstream.stop()  # from here on, only the cache
    offline = make_vault([pypi(index.upstream.url)], offline=True)
    python = new_venv(tmp_path, "offline")
    pip(tmp_path, python, "install", "--require-hashes", "-r", str(req),
        "--index-url", f"{offline.url}/pypi/simple/")
    assert versions(python, "alpha", "gamma") == ["1.0", "1.0"]


def _uv_lock(index: Index, tmp_path: Path) -> Path:
    project = tmp_path / "proj"
    project.mkdir(exist_ok=True)
    (project / "pyproject.toml").write_text(
        '[project]\nname = "proj"\nversion = "0"\nrequires-python = ">=3.11,<3.12"\n'
        'dependencies = ["beta"]\n')
    run_tool([str(UV), "lock", "--index-url", f"{index.upstream.url}/simple/"], tmp_path,
             cwd=project)
    return project / "uv.lock"


def _pylock(index: Index, tmp_path: Path) -> Path:
    lock = _uv_lock(index, tmp_path)
    run_tool([str(UV), "export", "--quiet", "--format", "pylock.toml", "-o", "pylock.toml",
              "--index-url", f"{index.upstream.url}/simple/"], tmp_path, cwd=lock.parent)
    return lock.parent / "pylock.toml"


@pytest.mark.parametrize("make_lock", [_uv_lock, _pylock], ids=["uv.lock", "pylock.toml"])
def test_lock_files_fetch_exactly_the_files_they_name(index, tmp_path, make_lock):
    lock = make_lock(index, tmp_path)  # written by uv itself, straight from the upstream
    index.upstream.hits.clear()
    code, out, _ = prefetch(config_for(tmp_path, index.upstream), Job(requirements=(lock,)))
    assert code == 0, out
    named = {d.filename for d in index.dists if f"sha256:{d.sha256}" in lock.read_text()
             or d.sha256 in lock.read_text()}
    assert named == {"alpha-1.0-py3-none-any.whl", "alpha-1.0.tar.gz",
                     "beta-1.0-py3-none-any.whl"}
    expected = {f"/packages/{n}": 1 for n in named}
    expected.update({f"/packages/{n}.metadata": 1 for n in named if n.endswith(".whl")})
    assert file_gets(index.upstream) == expected


def test_url_items_and_a_second_run_finds_them_cached(upstream, tmp_path):
    upstream.add("/dists/InRelease", b"release\n")
    upstream.add("/pool/hello.deb", b"\x00deb" * 100_000)
    config = config_for(tmp_path, upstream)
    job = Job(urls=("/files/dists/InRelease", "files/pool/hello.deb"))
    code, out, _ = prefetch(config, job)
    assert code == 0
    assert rows(out) == {"/files/dists/InRelease": "fetched", "files/pool/hello.deb": "fetched"}
    code, out, _ = prefetch(config, job)
    assert code == 0
    assert set(rows(out).values()) == {"already cached"}
    assert upstream.count("/pool/hello.deb") == 1


def test_a_manifest_file_lists_requirements_and_urls(index, tmp_path):
    index.upstream.add("/extra/tool.tar", b"tool")
    gamma = next(d for d in index.dists if d.project == "gamma")
    (tmp_path / "locks").mkdir()
    lock = tmp_path / "locks" / "requirements.txt"
    lock.write_text(f"gamma==1.0 --hash=sha256:{gamma.sha256}\n")
    manifest = tmp_path / "offline.yml"
    manifest.write_text(yaml.safe_dump({"pypi": {"requirements": ["locks/requirements.txt"]},
                                        "urls": ["/files/extra/tool.tar"]}))
    code, out, _ = prefetch(config_for(tmp_path, index.upstream), load_manifest(manifest))
    assert code == 0, out
    assert rows(out)["gamma-1.0-py3-none-any.whl"] == "fetched"
    assert index.upstream.count("/extra/tool.tar") == 1


def test_a_failing_item_exits_1_and_the_summary_names_it_with_the_reason(upstream, tmp_path):
    upstream.add("/ok.txt", b"ok")
    upstream.add("/broken.txt", b"", status=503)
    code, out, _ = prefetch(config_for(tmp_path, upstream),
                            Job(urls=("/files/ok.txt", "/files/broken.txt", "/files/absent")))
    assert code == 1
    assert rows(out) == {"/files/ok.txt": "fetched", "/files/broken.txt": "failed",
                         "/files/absent": "failed"}
    assert re.search(r"/files/absent\s+failed\s+0 B\s+HTTP 404", out)
    assert re.search(r"/files/broken.txt\s+failed\s+0 B\s+HTTP 50\d", out)
    assert out.splitlines()[-1].startswith("1 fetched, 0 already cached, 2 failed")


def test_a_hash_missing_from_the_index_fails_that_file(index, tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text(f"gamma==1.0 --hash=sha256:{'0' * 64}\n")
    code, out, _ = prefetch(config_for(tmp_path, index.upstream), Job(requirements=(req,)))
    assert code == 1
    assert "no file with this sha256 on /pypi/simple/gamma/" in out


def test_the_cli_without_a_terminal_prints_plain_progress_lines_and_the_summary(upstream, tmp_path):
    body = b"y" * 3_000_000
    upstream.add("/big.bin", body)
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump(config_for(tmp_path, upstream)))
    result = subprocess.run([sys.executable, str(ROOT / "main.py"), "prefetch", "--config",
                             str(config), "--url", "/files/big.bin"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stderr + result.stdout and "\r" not in result.stderr
    progress = [line for line in result.stderr.splitlines() if line.startswith("prefetch:")]
    assert progress and all(re.match(r"^prefetch: \d+/\d+ items, [\d.]+ \w+, ", line)
                            for line in progress)
    assert progress[-1].startswith("prefetch: 1/1 items, 2.9 MiB")
    assert re.search(r"^/files/big.bin\s+fetched\s+2.9 MiB$", result.stdout, re.MULTILINE)
    blob = tmp_path / "cache" / "blobs" / "sha256"
    digest = hashlib.sha256(body).hexdigest()
    assert (blob / digest[:2] / digest).read_bytes() == body


def test_a_bad_manifest_key_exits_2_naming_it(tmp_path, upstream):
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump(config_for(tmp_path, upstream)))
    manifest = tmp_path / "offline.yml"
    manifest.write_text("imagez:\n  refs: [a/b:c]\n")
    result = subprocess.run([sys.executable, str(ROOT / "main.py"), "prefetch", "--config",
                             str(config), "--manifest", str(manifest)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "imagez: unknown key; did you mean 'images'?" in result.stderr
