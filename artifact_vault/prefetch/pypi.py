"""Python packages: lock files fetch exactly the files they name; other requirements go to pip.

A lock file (``requirements.txt`` with ``--hash`` lines, ``uv.lock``, ``pylock.toml``) names
each file by its sha256. Each project's page is read from Vault, the files are found on it by
hash, and each file is fetched at the URL Vault gives, with its ``.metadata`` when the page
advertises one (pip and uv read that first). The page itself is cached on the way, so an
offline Vault can answer it too.

Requirements without hashes are resolved by pip itself (``pip download`` pointed at the local
Vault), once per Python version and platform asked for: pip's resolver is the only one that
gives exactly what pip will later want.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ..backends.pypi.render import JSON
from .local import FAILED, FETCHED, FetchFailed, Outcome
from .runner import Runner

_HASH = re.compile(r"--hash[=\s]+sha256:([0-9a-fA-F]{64})")


class LockError(ValueError):
    """A lock file that cannot be read."""


def is_lock_file(path: Path) -> bool:
    if path.name == "uv.lock" or (path.name.startswith("pylock.") and path.suffix == ".toml"):
        return True
    try:
        return _HASH.search(path.read_text()) is not None
    except OSError:
        return False


def locked_files(path: Path) -> dict[str, set[str]]:
    """Project name (normalized) -> the sha256s of the files the lock file names."""
    try:
        if path.name == "uv.lock":
            return _uv_lock(tomllib.loads(path.read_text()))
        if path.suffix == ".toml":
            return _pylock(tomllib.loads(path.read_text()))
        return _hashed_requirements(path.read_text())
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise LockError(f"{path}: {type(exc).__name__}: {exc}") from None


def _add(found: dict[str, set[str]], name: str, sha256: str | None) -> None:
    if sha256:
        found.setdefault(canonicalize_name(name), set()).add(sha256.lower().removeprefix("sha256:"))


def _uv_lock(doc: dict) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for pkg in doc.get("package", []):
        if "registry" not in pkg.get("source", {}):
            continue  # the project itself, editables, git and path sources: not on an index
        for dist in [*pkg.get("wheels", []), *([pkg["sdist"]] if "sdist" in pkg else [])]:
            _add(found, pkg["name"], dist.get("hash"))
    return found


def _pylock(doc: dict) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for pkg in doc.get("packages", []):
        for dist in [*pkg.get("wheels", []), *([pkg["sdist"]] if "sdist" in pkg else [])]:
            _add(found, pkg["name"], dist.get("hashes", {}).get("sha256"))
    return found


def _hashed_requirements(text: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for line in re.sub(r"\\\r?\n", " ", text).splitlines():
        line = re.sub(r"(^|\s)#.*", "", line).strip()
        if not line or line.startswith("-"):
            continue  # options (--index-url, -r other.txt): not a requirement
        spec = _HASH.sub("", line).split(";")[0].strip()
        try:
            name = Requirement(spec).name
        except InvalidRequirement as exc:
            raise LockError(f"cannot parse requirement {spec!r}: {exc}") from None
        for sha in _HASH.findall(line):
            _add(found, name, sha)
    return found


def prefetch_lock_file(runner: Runner, prefix: str, path: Path) -> None:
    """Queue every file ``path`` names (and its metadata); a page or hash not found fails."""
    try:
        projects = locked_files(path)
    except LockError as exc:
        runner.outcomes.add(Outcome(str(path), FAILED, reason=str(exc)))
        return
    for project, hashes in sorted(projects.items()):
        page_path = f"{prefix}simple/{project}/"
        runner.progress.add()
        try:
            page = json.loads(runner.client.get(f"{project} (index page)", page_path,
                                                {"Accept": JSON}, keep=True))
        except FetchFailed:
            continue
        except ValueError:
            runner.outcomes.add(Outcome(f"{project} (index page)", FAILED,
                                        reason="not a PEP 691 JSON page"))
            continue
        by_hash = {f.get("hashes", {}).get("sha256", "").lower(): f for f in page.get("files", [])}
        for sha in sorted(hashes):
            file = by_hash.get(sha)
            if file is None:
                runner.outcomes.add(Outcome(f"{project} sha256:{sha[:12]}", FAILED,
                                            reason=f"no file with this sha256 on {page_path}"))
                continue
            url = urljoin(runner.client.base_url + page_path, file["url"].split("#")[0])
            local = url.removeprefix(runner.client.base_url)
            runner.submit(file["filename"], local)
            if file.get("core-metadata") or file.get("dist-info-metadata"):
                runner.submit(f"{file['filename']}.metadata", f"{local}.metadata")


def resolve_with_pip(runner: Runner, prefix: str, requirements: Path,
                     python_versions: tuple[str, ...], platforms: tuple[str, ...]) -> None:
    """``pip download`` through Vault once per (Python version, platform); files pip fetched
    are reported by the local Vault's watcher, each as an item of its own."""
    for version, platform in _targets(python_versions, platforms):
        target = ", ".join(filter(None, [f"py{version}" if version else "",
                                         platform or ""])) or "this Python"
        item = f"pip resolve {requirements.name} ({target})"
        runner.progress.add()
        transfer = runner.progress.start(item)
        with tempfile.TemporaryDirectory(prefix="vault-pip-") as dest:
            args = [sys.executable, "-m", "pip", "download", "--isolated", "--no-cache-dir",
                    "--disable-pip-version-check", "--progress-bar", "off", "-q", "-d", dest,
                    "--index-url", f"{runner.client.base_url}{prefix}simple/",
                    "-r", str(requirements)]
            if version:
                args += ["--python-version", version]
            if platform:
                args += ["--platform", platform]
            if version or platform:
                args.append("--only-binary=:all:")  # pip cannot build sdists for another target
            runner.vault.watch(f"{prefix}files/")
            try:
                result = subprocess.run(args, capture_output=True, text=True, env=_pip_env(),
                                        cwd=requirements.parent, stdin=subprocess.DEVNULL)
            finally:
                runner.vault.watch(None)
                transfer.finish()
            count = len(os.listdir(dest))
        if result.returncode == 0:
            runner.outcomes.add(Outcome(item, FETCHED, reason=f"{count} files"))
        else:
            runner.outcomes.add(Outcome(item, FAILED, reason=_last_error(result.stderr)))


def _targets(versions: tuple[str, ...], platforms: tuple[str, ...]
             ) -> Iterator[tuple[str | None, str | None]]:
    for version in versions or (None,):
        for platform in platforms or (None,):
            yield version, platform


def _pip_env() -> dict[str, str]:
    """No pip setting or proxy of this machine: pip talks to the local Vault and nothing else."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIP_") and "proxy" not in k.lower()}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "NO_PROXY": "127.0.0.1"}


def _last_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["pip failed"])[-1][:300]
