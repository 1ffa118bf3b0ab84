"""apt through Vault in front of the real Debian mirror (deb.debian.org).

One flow, because the offline half needs the cache the online half fills:

1. Vault online: a private apt runs ``apt-get update`` and ``apt-get download`` through it,
   with signature checking on. Everything is a MISS, fetched from deb.debian.org.
2. Vault restarted on the same cache dir with ``offline: true``: a second private apt, with
   empty lists, does the same again. It must succeed from the cache alone (no MISS) and get
   the very same .deb files.

apt runs with its own config, sources, state and cache under tmp_path (``APT_CONFIG`` points
at a file that also stops it reading /etc/apt), so the machine's apt is never touched and no
local apt setting (a proxy, an extra index target) can send traffic anywhere but to Vault.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest
import requests

from .conftest import http_backend, vault_config

pytestmark = pytest.mark.integration

MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
PACKAGES = ("hello", "tree", "cowsay")  # small: tens of KB each; cowsay is Architecture: all
APT_TIMEOUT = 300

# One access-log line, as app.py writes it:
#   ... artifact_vault.access [rid] GET /debian/dists/bookworm/InRelease 200 150000B 0.2s cache=MISS ...
_ACCESS = re.compile(r"artifact_vault\.access \[[^\]]*\] (?P<method>\S+) (?P<path>\S+) "
                     r"(?P<status>\d{3}) (?P<bytes>\d+)B \S+ cache=(?P<cache>\S+)")


@pytest.fixture(scope="module", autouse=True)
def debian_mirror_reachable() -> None:
    if shutil.which("apt-get") is None:
        pytest.skip("apt-get is not installed")
    if not KEYRING.is_file():
        pytest.skip(f"{KEYRING} is missing (install debian-archive-keyring)")
    with requests.Session() as session:
        session.trust_env = False  # straight to the mirror, never through an environment proxy
        try:
            session.head(f"{MIRROR}/dists/{SUITE}/Release", timeout=5).raise_for_status()
        except requests.RequestException as exc:
            pytest.skip(f"deb.debian.org is not reachable: {exc}")


@dataclass(frozen=True)
class Access:
    method: str
    path: str
    status: int
    cache: str


def access_log(log_path: Path) -> list[Access]:
    """The access-log lines of a Vault log; paths decoded (apt sends '+' as %2b)."""
    return [Access(m["method"], unquote(m["path"]), int(m["status"]), m["cache"])
            for m in _ACCESS.finditer(log_path.read_text())]


class PrivateApt:
    """An apt with its own config, sources, lists and cache: nothing outside ``root``."""

    def __init__(self, root: Path, vault_url: str) -> None:
        self.root = root
        self.downloads = root / "downloads"
        for d in ("etc/apt.conf.d", "etc/preferences.d", "state/lists/partial",
                  "cache/archives/partial", "downloads"):
            (root / d).mkdir(parents=True, exist_ok=True)
        (root / "state/status").write_text("")
        # Signatures stay checked: InRelease must verify against the Debian keyring, and
        # apt-get download refuses unauthenticated packages (no --allow-unauthenticated here).
        (root / "etc/sources.list").write_text(
            f"deb [signed-by={KEYRING}] {vault_url}/debian {SUITE} main\n")
        arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                              check=True).stdout.strip()
        # Read before /etc/apt is: Parts and Main point away from it, so no host setting applies.
        self.config = root / "etc/apt.conf"
        self.config.write_text(f"""
Dir::Etc::Main "/dev/null";
Dir::Etc::Parts "{root}/etc/apt.conf.d";
Dir::Etc::PreferencesParts "{root}/etc/preferences.d";
Dir::Etc::SourceList "{root}/etc/sources.list";
Dir::Etc::SourceParts "/dev/null";
Dir::State "{root}/state";
Dir::State::status "{root}/state/status";
Dir::Cache "{root}/cache";
Debug::NoLocking "true";
APT::Sandbox::User "root";
APT::Architecture "{arch}";
APT::Architectures {{ "{arch}"; }};
Acquire::Languages "none";
Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled "false";
Acquire::http::Proxy "DIRECT";
Acquire::Retries "0";
""")

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "APT_CONFIG": str(self.config), "LC_ALL": "C"}  # no *_proxy variables either
        return subprocess.run(["apt-get", "-q", *args], cwd=self.downloads, env=env,
                              capture_output=True, text=True, timeout=APT_TIMEOUT)

    def update_and_download(self, packages: tuple[str, ...], log_path: Path) -> dict[str, str]:
        """``apt-get update`` then ``apt-get download``; the sha256 of each .deb, by file name."""
        for args in (("update", "--error-on=any"), ("download", *packages)):
            result = self.run(*args)
            assert result.returncode == 0, (
                f"apt-get {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n"
                f"{result.stderr}\n--- vault log (tail) ---\n{log_tail(log_path)}")
        debs = {p.name: p for p in self.downloads.glob("*.deb")}
        for package in packages:
            found = [p for name, p in debs.items() if name.startswith(f"{package}_")]
            assert len(found) == 1 and found[0].stat().st_size > 0, (package, sorted(debs))
        return {name: hashlib.sha256(p.read_bytes()).hexdigest() for name, p in debs.items()}


def log_tail(log_path: Path, lines: int = 60) -> str:
    return "\n".join(log_path.read_text().splitlines()[-lines:])


def test_apt_through_vault_online_then_from_the_cache_alone_offline(tmp_path, vault_process):
    cache_dir = tmp_path / "cache"
    backend = http_backend(MIRROR, prefix="/debian/", ttl="10m", retries=2,
                           immutable=["*.deb", "by-hash/*"])

    # Online: apt's update and download go through Vault, which fetches everything upstream.
    online = vault_process(vault_config(cache_dir, [backend]))
    debs = PrivateApt(tmp_path / "apt-online", online.url).update_and_download(
        PACKAGES, online.log_path)
    online.stop()
    log = access_log(online.log_path)
    misses = {a.path for a in log if a.cache == "MISS" and a.status == 200}
    assert f"/debian/dists/{SUITE}/InRelease" in misses, log
    assert any("/by-hash/SHA256/" in path for path in misses), log  # the Packages index
    for name in debs:
        assert any(path.endswith(f"/{name}") for path in misses), (name, log)
    assert not [a for a in log if a.status >= 500], log

    # Offline, same cache, fresh apt state: apt must re-fetch everything, and get it all
    # from the cache, byte for byte what it got online.
    offline = vault_process(vault_config(cache_dir, [backend], offline=True))
    debs_again = PrivateApt(tmp_path / "apt-offline", offline.url).update_and_download(
        PACKAGES, offline.log_path)
    offline.stop()
    log = access_log(offline.log_path)
    assert debs_again == debs
    assert log, offline.log_path.read_text()
    assert not [a for a in log if a.cache == "MISS"], log
    assert all(a.cache in ("HIT", "STALE") and a.status == 200 for a in log), log
    served = {a.path for a in log}
    assert f"/debian/dists/{SUITE}/InRelease" in served, log
    for name in debs:
        assert any(path.endswith(f"/{name}") for path in served), (name, log)
