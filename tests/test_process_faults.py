"""Process faults: kill -9 during many concurrent fills, and a damaged or missing index.

After a kill at a seeded random moment and a restart: no temp file is left, every indexed blob
hashes to its digest and has its size, and every key is served with the right bytes. An index
that is not a database refuses the start with one line that says what to do; a missing one
starts empty (the blobs present are unused, and refilled as asked); wrong content is never
served either way.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from artifact_vault.cache.blobs import BlobStore

from .conftest import http_backend, start_vault_process, vault_config
from .test_cache_engine_e2e import blob

KEYS = 100  # distinct files
SHARED = 10  # of which this many are also asked by SHARED_CLIENTS more clients
SHARED_CLIENTS = 40


def index_rows(cache_dir: Path) -> list[tuple[str, str, int]]:
    db = sqlite3.connect(f"file:{cache_dir / 'index.sqlite'}?mode=ro", uri=True)
    try:
        return db.execute("SELECT key, digest, size FROM entries WHERE status = 200").fetchall()
    finally:
        db.close()


def corrupt_entries(cache_dir: Path) -> list[str]:
    """Keys whose blob is missing, of the wrong size, or does not hash to the digest."""
    blobs = BlobStore(cache_dir)
    bad = []
    for key, digest, size in index_rows(cache_dir):
        try:
            data = Path(blobs.file(digest)).read_bytes()
        except FileNotFoundError:
            bad.append(key)
            continue
        if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            bad.append(key)
    return bad


@pytest.mark.parametrize("seed", [11, 22, 33])
def test_kill_9_during_a_hundred_concurrent_fills_leaves_a_sound_cache(
        seed, upstream, vault_process, tmp_path):
    rng = random.Random(seed)
    kill_after = rng.uniform(0.3, 1.2)
    print(f"seed {seed}: kill -9 after {kill_after:.2f}s")
    bodies = {f"/f{i}.bin": blob(rng.randrange(100_000, 600_000), seed=seed * 1000 + i)
              for i in range(KEYS)}
    for path, body in bodies.items():  # slow-ish: ~320 KB/s per fill, so many are in flight
        upstream.add(path, body, chunk=16 * 1024, trickle=0.05)
    cache_dir = tmp_path / "cache"
    config = vault_config(cache_dir, [http_backend(
        upstream.url, max_upstream_connections=64, timeout={"connect": "30s", "read": "30s"})],
        threads=64, log_level="INFO")
    vault = vault_process(config)
    paths = list(bodies) + [rng.choice(list(bodies)[:SHARED]) for _ in range(SHARED_CLIENTS)]
    rng.shuffle(paths)

    def client(path: str) -> None:
        try:
            requests.get(f"{vault.url}/files{path}", timeout=60).content
        except requests.RequestException:
            pass  # the server was killed under it

    with ThreadPoolExecutor(len(paths)) as pool:
        for path in paths:
            pool.submit(client, path)
        time.sleep(kill_after)
        committed_before = len(index_rows(cache_dir))
        in_flight = len(list((cache_dir / "tmp").iterdir()))
        vault.kill()
    print(f"at the kill: {committed_before} entries committed, {in_flight} fills in flight")

    restarted = vault_process(config)
    leftovers = list((cache_dir / "tmp").iterdir())
    corrupt = corrupt_entries(cache_dir)
    print(f"after restart: {len(index_rows(cache_dir))} entries, {len(corrupt)} corrupt, "
          f"{len(leftovers)} temp files")
    assert leftovers == [] and corrupt == []

    def check(path: str) -> bool:
        r = requests.get(f"{restarted.url}/files{path}", timeout=60)
        return r.status_code == 200 and r.content == bodies[path]

    with ThreadPoolExecutor(16) as pool:
        assert all(pool.map(check, bodies))
    restarted.stop()
    assert corrupt_entries(cache_dir) == []


def _cached_vault(upstream, tmp_path: Path) -> tuple[dict, Path, bytes]:
    body = blob(300_000, seed=5)
    upstream.add("/a.bin", body)
    cache_dir = tmp_path / "cache"
    config = vault_config(cache_dir, [http_backend(upstream.url)])
    first = start_vault_process(config, tmp_path)
    try:
        assert requests.get(f"{first.url}/files/a.bin", timeout=30).content == body
    finally:
        first.stop()
    return config, cache_dir, body


def test_an_index_overwritten_with_garbage_refuses_the_start_with_one_clear_line(
        upstream, tmp_path):
    config, cache_dir, _ = _cached_vault(upstream, tmp_path)
    index = cache_dir / "index.sqlite"
    index.write_bytes(b"\x00garbage" * 4096)
    with pytest.raises(RuntimeError) as failed:
        start_vault_process(config, tmp_path)
    log = str(failed.value)
    assert "is not a usable SQLite index" in log
    assert "move it away and restart; the cache will be refilled" in log
    assert "Traceback" not in log
    index.rename(cache_dir / "index.sqlite.broken")  # what the line says to do
    again = start_vault_process(config, tmp_path)
    try:
        r = requests.get(f"{again.url}/files/a.bin", timeout=30)
        assert r.headers["X-Cache"] == "MISS" and len(r.content) == 300_000
    finally:
        again.stop()


def test_a_deleted_index_starts_empty_and_refills_from_upstream(upstream, tmp_path):
    config, cache_dir, body = _cached_vault(upstream, tmp_path)
    for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm"):
        (cache_dir / name).unlink(missing_ok=True)
    vault = start_vault_process(config, tmp_path)
    try:
        r = requests.get(f"{vault.url}/files/a.bin", timeout=30)
        assert (r.headers["X-Cache"], r.content) == ("MISS", body)
        assert upstream.count("/a.bin") == 2
    finally:
        vault.stop()


def test_a_truncated_wal_loses_at_most_recent_entries_and_never_serves_wrong_bytes(
        upstream, tmp_path):
    bodies = {f"/w{i}.bin": blob(20_000 + i, seed=100 + i) for i in range(20)}
    for path, body in bodies.items():
        upstream.add(path, body)
    cache_dir = tmp_path / "cache"
    config = vault_config(cache_dir, [http_backend(upstream.url)])
    vault = start_vault_process(config, tmp_path)
    for path in bodies:
        requests.get(f"{vault.url}/files{path}", timeout=30)
    time.sleep(0.2)  # the last commit's index write follows the client's last byte
    wal = cache_dir / "index.sqlite-wal"
    vault.kill()  # no checkpoint: the entries are in the WAL
    assert wal.exists() and wal.stat().st_size > 0
    with open(wal, "r+b") as f:
        f.truncate(wal.stat().st_size // 2)
    again = start_vault_process(config, tmp_path)
    try:
        for path, body in bodies.items():
            r = requests.get(f"{again.url}/files{path}", timeout=30)
            assert r.status_code == 200 and r.content == body
        assert corrupt_entries(cache_dir) == []
    finally:
        again.stop()
