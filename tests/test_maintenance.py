"""stats, prune, verify and purge from the command line, against a cache a real server filled."""

from __future__ import annotations

import hashlib
import threading

import pytest
import requests

from .conftest import http_backend, vault_config
from .maintenance_helpers import blob_files, cli, cli_json, rows, write_config

FILES = {"/dists/bookworm/InRelease": b"release " * 100,
         "/pool/main/a/a_1.deb": b"A" * 5000,
         "/pool/main/b/b_1.deb": b"B" * 7000,
         "/pool/main/c/copy-of-a.deb": b"A" * 5000}  # same bytes as a_1.deb: one blob


@pytest.fixture
def primed(upstream, make_vault, tmp_path):
    """A running in-process Vault with every file fetched once, and its config file."""
    for path, body in FILES.items():
        upstream.add(path, body)
    config = vault_config(tmp_path / "cache", [http_backend(upstream.url, prefix="/debian/")])
    vault = make_vault(config["backends"])
    for path in FILES:
        assert requests.get(f"{vault.url}/debian{path}", timeout=10).status_code == 200
    vault.settle()
    return vault, write_config(config, tmp_path / "vault.yml")


def get(vault, path: str) -> requests.Response:
    resp = requests.get(f"{vault.url}/debian{path}", timeout=10)
    assert resp.status_code == 200 and resp.content == FILES[path]
    return resp


def test_stats_counts_entries_bytes_and_hits_per_backend(primed):
    vault, config = primed
    get(vault, "/pool/main/a/a_1.deb")
    get(vault, "/pool/main/a/a_1.deb")
    vault.app.cache.index.flush_access()
    (row,) = cli_json(config, "stats")["backends"]
    assert row["backend"] == "debian" and row["entries"] == 4 and row["negative"] == 0
    assert row["bytes"] == sum(len(b) for b in FILES.values())
    assert row["hits"] == 2
    assert row["hit_ratio"] == pytest.approx(2 / (2 + 4))  # hits / (hits + one miss per entry)
    assert row["oldest"] <= row["newest"]
    table = cli(config, "stats").stdout
    assert "debian" in table and "33.3%" in table


def test_purge_removes_what_the_pattern_matches_and_the_next_request_refetches(primed, upstream):
    vault, config = primed
    out = cli_json(config, "purge", "debian/pool/main/b/*")
    assert [r["name"] for r in out["removed"]] == ["/debian/pool/main/b/b_1.deb"]
    assert out["freed_bytes"] == 7000
    assert get(vault, "/pool/main/b/b_1.deb").headers["X-Cache"] == "MISS"
    assert upstream.count("/pool/main/b/b_1.deb") == 2
    assert get(vault, "/dists/bookworm/InRelease").headers["X-Cache"] == "HIT"


def test_purge_pattern_star_crosses_slashes_and_is_anchored(primed):
    _, config = primed
    names = {r["name"] for r in cli_json(config, "purge", "--dry-run", "/debian/pool/*.deb")["removed"]}
    assert names == {"/debian/pool/main/a/a_1.deb", "/debian/pool/main/b/b_1.deb",
                     "/debian/pool/main/c/copy-of-a.deb"}
    assert cli_json(config, "purge", "--dry-run", "debian/pool")["removed"] == []  # anchored
    assert len(cli_json(config, "purge", "--dry-run", "debian/*")["removed"]) == 4


def test_purging_one_of_two_entries_that_share_a_blob_keeps_the_blob(primed, tmp_path):
    vault, config = primed
    digest = hashlib.sha256(FILES["/pool/main/a/a_1.deb"]).hexdigest()
    out = cli_json(config, "purge", "debian/pool/main/a/a_1.deb")
    assert len(out["removed"]) == 1 and out["freed_bytes"] == 0
    assert digest in blob_files(tmp_path / "cache")
    assert get(vault, "/pool/main/c/copy-of-a.deb").headers["X-Cache"] == "HIT"


def test_prune_dry_run_changes_nothing(primed, tmp_path):
    _, config = primed
    before = (rows(tmp_path / "cache"), blob_files(tmp_path / "cache"))
    out = cli_json(config, "prune", "--older-than", "0s", "--dry-run")
    assert len(out["removed"]) == 4 and out["freed_bytes"] == 0
    assert (rows(tmp_path / "cache"), blob_files(tmp_path / "cache")) == before


def test_prune_max_size_removes_least_recently_used_first(primed, tmp_path):
    vault, config = primed
    get(vault, "/pool/main/b/b_1.deb")  # now the most recently used
    vault.app.cache.index.flush_access()
    out = cli_json(config, "prune", "--max-size", "7000")
    assert "/debian/pool/main/b/b_1.deb" not in {r["name"] for r in out["removed"]}
    assert set(rows(tmp_path / "cache")) == {f"debian {vault.config.backends[0].settings.base_url}"
                                            "/pool/main/b/b_1.deb"}
    assert sum(len(b) for b in blob_files(tmp_path / "cache").values()) == 7000


def test_prune_older_than_keeps_recent_entries(primed, tmp_path):
    _, config = primed
    assert cli_json(config, "prune", "--older-than", "1d")["removed"] == []
    assert len(rows(tmp_path / "cache")) == 4


def test_prune_without_a_criterion_is_a_usage_error(primed):
    _, config = primed
    result = cli(config, "prune", check=False)
    assert result.returncode == 2 and "--older-than" in result.stderr


def test_verify_finds_a_corrupt_blob_removes_it_and_the_server_refetches(primed, upstream, tmp_path):
    vault, config = primed
    body = FILES["/pool/main/b/b_1.deb"]
    blob = tmp_path / "cache" / "blobs" / "sha256" / hashlib.sha256(body).hexdigest()[:2] / \
        hashlib.sha256(body).hexdigest()
    blob.write_bytes(b"garbage!" * (len(body) // 8) + b"x" * (len(body) % 8))  # same size
    result = cli(config, "verify", check=False)
    assert result.returncode == 1
    assert "corrupt" in result.stdout and "4 blobs" not in result.stdout  # 3 distinct blobs
    assert "3 blobs" in result.stdout and "1 bad" in result.stdout
    assert not blob.exists()
    resp = get(vault, "/pool/main/b/b_1.deb")
    assert resp.headers["X-Cache"] == "MISS" and upstream.count("/pool/main/b/b_1.deb") == 2
    vault.settle()
    assert cli(config, "verify").returncode == 0


def test_verify_repair_refetches_through_the_app(primed, upstream, tmp_path):
    vault, config = primed
    body = FILES["/dists/bookworm/InRelease"]
    hexd = hashlib.sha256(body).hexdigest()
    (tmp_path / "cache" / "blobs" / "sha256" / hexd[:2] / hexd).write_bytes(b"short")
    out = cli_json(config, "verify", "--repair")
    assert out["bad"] == {hexd: "wrong size"}
    assert [(r["path"], r["status"]) for r in out["repaired"]] == [
        ("/debian/dists/bookworm/InRelease", 200)]
    assert upstream.count("/dists/bookworm/InRelease") == 2
    assert blob_files(tmp_path / "cache")[hexd] == body
    assert get(vault, "/dists/bookworm/InRelease").headers["X-Cache"] == "HIT"


def test_commands_run_while_a_server_process_serves(upstream, vault_process, tmp_path):
    """purge, prune and verify from the CLI while another process serves the same cache: every
    response stays a 200 with the right bytes."""
    for path, body in FILES.items():
        upstream.add(path, body)
    config = vault_config(tmp_path / "cache", [http_backend(upstream.url, prefix="/debian/")],
                          log_level="INFO")
    config_path = write_config(config, tmp_path / "vault.yml")
    vault = vault_process(config)
    failures: list[str] = []
    served = [0]
    stop = threading.Event()

    def client() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                for path, body in FILES.items():
                    resp = session.get(f"{vault.url}/debian{path}", timeout=30)
                    if resp.status_code != 200 or resp.content != body:
                        failures.append(f"{path}: {resp.status_code} {len(resp.content)}")
                    served[0] += 1

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(3):
            cli(config_path, "purge", "debian/pool/*")
            cli(config_path, "verify")
            cli(config_path, "prune", "--older-than", "0s")
            cli(config_path, "stats")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert failures == []
    assert served[0] > 0
    assert upstream.count("/pool/main/b/b_1.deb") >= 2  # purged entries were refetched


def test_admin_stats_and_purge_endpoints(primed, upstream):
    vault, _ = primed
    stats = requests.get(f"{vault.url}/-/admin/stats", timeout=10).json()
    assert stats["backends"][0]["entries"] == 4 and stats["total"]["entries"] == 4
    resp = requests.post(f"{vault.url}/-/admin/purge", json={"pattern": "debian/pool/main/b/*"},
                         timeout=10)
    assert resp.status_code == 200
    assert [r["path"] for r in resp.json()["removed"]] == ["/debian/pool/main/b/b_1.deb"]
    assert get(vault, "/pool/main/b/b_1.deb").headers["X-Cache"] == "MISS"
    dry = requests.post(f"{vault.url}/-/admin/purge?pattern=debian/dists/*&dry_run=1", timeout=10)
    assert dry.json()["dry_run"] is True and len(dry.json()["removed"]) == 1
    assert get(vault, "/dists/bookworm/InRelease").headers["X-Cache"] == "HIT"


@pytest.mark.parametrize("method, path, body, status", [
    ("GET", "/-/admin/purge", None, 405),
    ("POST", "/-/admin/stats", None, 405),
    ("POST", "/-/admin/purge", b"not json", 400),
    ("POST", "/-/admin/purge", b'{"pattern": ""}', 400),
    ("GET", "/-/admin/nothing", None, 404),
])
def test_admin_endpoints_refuse_bad_requests(primed, method, path, body, status):
    vault, _ = primed
    assert requests.request(method, f"{vault.url}{path}", data=body, timeout=10).status_code == status


def test_backend_prefixes_under_the_admin_namespace_are_refused():
    from artifact_vault.config import parse_config
    from artifact_vault.errors import ConfigError
    with pytest.raises(ConfigError, match="reserved"):
        parse_config({"backends": [http_backend("http://up.test", prefix="/-/files/")]}, env={})
