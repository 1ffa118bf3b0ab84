"""The cache engine through the real server: each test is one behaviour of PROTOCOLS.md's list.

Caching is proved by counting: the fake upstream counts its requests per path.
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from .conftest import http_backend

MB = 1024 * 1024


def blob(size: int, seed: int = 1) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB of pseudo-random bytes
    return (block * (size // len(block) + 1))[:size]


def get(url: str, **kw: object) -> requests.Response:
    return requests.get(url, timeout=30, **kw)  # type: ignore[arg-type]


def test_second_get_is_a_hit_with_identical_bytes_and_one_upstream_request(upstream, make_vault):
    body = blob(300_000)
    upstream.add("/a.bin", body)
    vault = make_vault([http_backend(upstream.url)])
    first, second = get(f"{vault.url}/files/a.bin"), get(f"{vault.url}/files/a.bin")
    assert first.content == body and second.content == body
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    assert upstream.count("/a.bin") == 1


def test_twenty_concurrent_cold_gets_make_one_upstream_request(upstream, make_vault):
    body = blob(50 * MB)
    digest = hashlib.sha256(body).hexdigest()
    upstream.add("/big.bin", body, trickle=0.001)
    vault = make_vault([http_backend(upstream.url)])

    def fetch(_: int) -> str:
        return hashlib.sha256(get(f"{vault.url}/files/big.bin").content).hexdigest()

    with ThreadPoolExecutor(20) as pool:
        digests = list(pool.map(fetch, range(20)))
    assert digests == [digest] * 20
    assert upstream.count("/big.bin") == 1


def test_followers_get_bytes_before_the_fill_ends(upstream, make_vault):
    gate = threading.Event()
    body = blob(4 * MB)
    upstream.add("/slow.bin", body, gate=gate, gate_at=MB)
    vault = make_vault([http_backend(upstream.url)])
    responses = [get(f"{vault.url}/files/slow.bin", stream=True) for _ in range(3)]
    try:
        for r in responses:  # the upstream is paused at 1 MB, yet every client has data
            assert len(r.raw.read(512 * 1024)) == 512 * 1024
    finally:
        gate.set()
    assert all(r.raw.read() == body[512 * 1024:] for r in responses)
    assert upstream.count("/slow.bin") == 1


def test_a_client_that_disconnects_does_not_stop_the_fill(upstream, make_vault):
    body = blob(8 * MB)
    upstream.add("/c.bin", body, trickle=0.002)
    vault = make_vault([http_backend(upstream.url)])
    r = get(f"{vault.url}/files/c.bin", stream=True)
    r.raw.read(100_000)
    r.close()
    vault.settle()
    again = get(f"{vault.url}/files/c.bin")
    assert again.headers["X-Cache"] == "HIT" and again.content == body
    assert upstream.count("/c.bin") == 1


def _broken(url: str) -> bool:
    try:
        r = get(url)
    except requests.exceptions.RequestException:
        return True
    return False if r.status_code == 200 and len(r.content) == int(
        r.headers.get("Content-Length", len(r.content))) else True


def test_upstream_reset_mid_body_breaks_every_transfer_and_caches_nothing(upstream, make_vault):
    body = blob(10 * MB)
    route = upstream.add("/reset.bin", body, reset_at=4 * MB, trickle=0.002)
    vault = make_vault([http_backend(upstream.url)])
    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(lambda _: _broken(f"{vault.url}/files/reset.bin"), range(5)))
    assert results == [True] * 5
    assert upstream.count("/reset.bin") == 1
    assert list(vault.app.cache.blobs.tmp_dir.iterdir()) == []
    route.reset_at = None
    again = get(f"{vault.url}/files/reset.bin")
    assert again.content == body and again.headers["X-Cache"] == "MISS"
    assert upstream.count("/reset.bin") == 2


def test_chunked_upstream_failure_ends_the_client_stream_without_a_final_chunk(upstream, make_vault):
    upstream.add("/chunked.bin", blob(2 * MB), chunked=True, reset_at=MB, trickle=0.01)
    vault = make_vault([http_backend(upstream.url)])
    assert _broken(f"{vault.url}/files/chunked.bin")  # a cut stream, or a 502 if it failed first
    assert vault.app.cache.index.get(f"files {upstream.url}/chunked.bin") is None


def test_a_short_body_against_content_length_is_not_cached(upstream, make_vault):
    upstream.add("/short.bin", blob(100_000), announce=200_000)
    vault = make_vault([http_backend(upstream.url)])
    assert _broken(f"{vault.url}/files/short.bin")
    assert _broken(f"{vault.url}/files/short.bin")
    assert upstream.count("/short.bin") == 2


def test_leftover_temp_files_are_removed_at_start(upstream, make_vault, tmp_path):
    tmp_dir = tmp_path / "cache" / "tmp"
    tmp_dir.mkdir(parents=True)
    (tmp_dir / "999999999.deadbeef").write_bytes(b"partial")
    make_vault([http_backend(upstream.url)])
    assert list(tmp_dir.iterdir()) == []


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_a_missing_or_truncated_blob_is_fetched_again(upstream, make_vault, damage):
    body = blob(50_000)
    upstream.add("/d.bin", body)
    vault = make_vault([http_backend(upstream.url)])
    get(f"{vault.url}/files/d.bin")
    vault.settle()
    path = vault.app.cache.blobs.path(hashlib.sha256(body).hexdigest())
    if damage == "delete":
        path.unlink()
    else:
        path.write_bytes(body[:10])
    again = get(f"{vault.url}/files/d.bin")
    assert again.status_code == 200 and again.content == body
    assert upstream.count("/d.bin") == 2


def test_identical_content_under_two_urls_is_stored_once(upstream, make_vault):
    body = blob(70_000)
    upstream.add("/one.bin", body)
    upstream.add("/two.bin", body)
    vault = make_vault([http_backend(upstream.url)])
    get(f"{vault.url}/files/one.bin")
    get(f"{vault.url}/files/two.bin")
    vault.settle()
    assert vault.app.cache.index.totals() == (2, len(body))


def test_immutable_files_are_never_revalidated(upstream, make_vault):
    upstream.add("/pool/x.deb", b"deb")
    vault = make_vault([http_backend(upstream.url, ttl=0, immutable=["*.deb"])])
    for _ in range(3):
        assert get(f"{vault.url}/files/pool/x.deb").headers["X-Cache"] in ("MISS", "HIT")
    assert upstream.count("/pool/x.deb") == 1


def test_expired_file_is_revalidated_with_its_etag_and_a_304_refreshes_it(upstream, make_vault):
    upstream.add("/InRelease", b"release v1", etag='"v1"')
    vault = make_vault([http_backend(upstream.url, ttl="1s")])
    assert get(f"{vault.url}/files/InRelease").headers["X-Cache"] == "MISS"
    assert get(f"{vault.url}/files/InRelease").headers["X-Cache"] == "HIT"
    time.sleep(1.1)
    r = get(f"{vault.url}/files/InRelease")
    assert (r.headers["X-Cache"], r.content) == ("REVALIDATED", b"release v1")
    assert upstream.log[-1][2].get("If-None-Match") == '"v1"'
    assert get(f"{vault.url}/files/InRelease").headers["X-Cache"] == "HIT"
    assert upstream.count("/InRelease") == 2


def test_expired_file_that_changed_upstream_is_replaced(upstream, make_vault):
    route = upstream.add("/InRelease", b"release v1", etag='"v1"')
    vault = make_vault([http_backend(upstream.url, ttl="1s")])
    get(f"{vault.url}/files/InRelease")
    route.body, route.etag = b"release v2", '"v2"'
    time.sleep(1.1)
    assert get(f"{vault.url}/files/InRelease").content == b"release v2"
    assert get(f"{vault.url}/files/InRelease").content == b"release v2"
    assert upstream.count("/InRelease") == 2


@pytest.mark.parametrize("failure", ["500", "429", "refused", "timeout"])
def test_stale_copy_is_served_when_the_upstream_fails(upstream, make_vault, failure):
    route = upstream.add("/InRelease", b"release v1")
    vault = make_vault([http_backend(upstream.url, ttl="1s", timeout="1s")])
    get(f"{vault.url}/files/InRelease")
    time.sleep(1.1)
    if failure == "refused":
        upstream.stop()
    elif failure == "timeout":
        route.delay = 3
    else:
        route.status = int(failure)
    r = get(f"{vault.url}/files/InRelease")
    assert (r.status_code, r.headers["X-Cache"], r.content) == (200, "STALE", b"release v1")


def test_stale_copy_is_not_served_past_max_stale(upstream, make_vault):
    route = upstream.add("/InRelease", b"release v1")
    vault = make_vault([http_backend(upstream.url, ttl="1s")], cache={"max_stale": "1s"})
    get(f"{vault.url}/files/InRelease")
    time.sleep(2.2)
    route.status = 503
    r = get(f"{vault.url}/files/InRelease")
    assert r.status_code == 502
    assert upstream.url.split("//")[1] in r.text


def test_offline_mode_serves_hits_and_refuses_misses_without_contacting_upstream(
        upstream, make_vault, tmp_path):
    upstream.add("/have.bin", b"cached")
    upstream.add("/missing.bin", b"never fetched")
    online = make_vault([http_backend(upstream.url, ttl="1s")])
    get(f"{online.url}/files/have.bin")
    online.stop()
    time.sleep(1.1)
    offline = make_vault([http_backend(upstream.url, ttl="1s")], offline=True)
    hit = get(f"{offline.url}/files/have.bin")
    assert (hit.status_code, hit.content, hit.headers["X-Cache"]) == (200, b"cached", "STALE")
    miss = get(f"{offline.url}/files/missing.bin")
    assert miss.status_code == 504 and "offline" in miss.text
    assert upstream.count("/have.bin") == 1 and upstream.count("/missing.bin") == 0


def test_upstream_404_is_remembered_briefly(upstream, make_vault):
    vault = make_vault([http_backend(upstream.url)], cache={"negative_ttl": "1s"})
    assert get(f"{vault.url}/files/nope").status_code == 404
    assert get(f"{vault.url}/files/nope").status_code == 404
    assert upstream.count("/nope") == 1
    time.sleep(1.1)
    assert get(f"{vault.url}/files/nope").status_code == 404
    assert upstream.count("/nope") == 2


def test_upstream_5xx_is_never_cached(upstream, make_vault):
    route = upstream.add("/flaky", b"ok now", status=503)
    vault = make_vault([http_backend(upstream.url)])
    r = get(f"{vault.url}/files/flaky")
    assert r.status_code == 502 and "answered 503" in r.text
    route.status = 200
    assert get(f"{vault.url}/files/flaky").content == b"ok now"


def test_cache_key_ignores_host_and_forwarded_headers(upstream, make_vault):
    upstream.add("/k.bin", b"key")
    vault = make_vault([http_backend(upstream.url)])
    get(f"{vault.url}/files/k.bin", headers={"Host": "evil.example", "X-Forwarded-Host": "x"})
    r = get(f"{vault.url}/files/k.bin", headers={"X-Forwarded-Proto": "https"})
    assert r.headers["X-Cache"] == "HIT" and upstream.count("/k.bin") == 1


def test_eviction_drops_the_least_recently_used_entry(upstream, make_vault):
    for name in "abc":
        upstream.add(f"/{name}", blob(400_000, seed=ord(name)))
    vault = make_vault([http_backend(upstream.url)], cache={"max_size": 1_000_000})
    for name in "ab":
        get(f"{vault.url}/files/{name}")
        vault.settle()  # committed (a client has its last byte a moment before)
    vault.app.cache.index.flush_access()
    time.sleep(0.01)
    get(f"{vault.url}/files/a")  # a is now more recent than b
    get(f"{vault.url}/files/c")  # needs room: b goes
    vault.settle()
    assert get(f"{vault.url}/files/a").headers["X-Cache"] == "HIT"
    assert get(f"{vault.url}/files/b").headers["X-Cache"] == "MISS"
    assert upstream.count("/b") == 2 and upstream.count("/a") == 1


def test_full_disk_passes_the_body_through_and_commits_nothing(upstream, make_vault):
    body = blob(3 * MB)
    upstream.add("/p.bin", body)
    vault = make_vault([http_backend(upstream.url)], cache={"min_free": "100000TB"})
    for _ in range(2):
        r = get(f"{vault.url}/files/p.bin")
        assert (r.content == body, r.headers["X-Cache"]) == (True, "BYPASS")
    assert vault.app.cache.index.totals() == (0, 0)


def test_a_disk_that_fills_mid_download_still_gives_every_client_the_whole_body(
        upstream, make_vault, monkeypatch):
    """ENOSPC at 2 MB of a 12 MB fill: the rest reaches the readers from a bounded memory
    window (smaller than the body, so the writer has to wait for a slow reader); nothing is
    committed; when space returns, the next request caches it."""
    import artifact_vault.cache.download as download

    body = blob(12 * MB)
    upstream.add("/f.bin", body, trickle=0.001)
    vault = make_vault([http_backend(upstream.url)])
    real_write = download._write_all

    def full_disk(f, chunk):
        if f.tell() + len(chunk) > 2 * MB:
            real_write(f, bytes(chunk)[:1000])  # a partial write, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(f, chunk)

    monkeypatch.setattr(download, "_write_all", full_disk)

    def fetch(slow: bool) -> str:
        with get(f"{vault.url}/files/f.bin", stream=True) as r:
            sha = hashlib.sha256()
            for chunk in r.iter_content(256 * 1024):
                sha.update(chunk)
                if slow:
                    time.sleep(0.01)
            return sha.hexdigest()

    with ThreadPoolExecutor(6) as pool:
        digests = list(pool.map(fetch, [True] + [False] * 5))
    assert digests == [hashlib.sha256(body).hexdigest()] * 6
    assert upstream.count("/f.bin") == 1
    vault.settle()
    assert vault.app.cache.index.totals() == (0, 0)
    assert list(vault.app.cache.blobs.tmp_dir.iterdir()) == []

    monkeypatch.setattr(download, "_write_all", real_write)  # space is back
    assert get(f"{vault.url}/files/f.bin").content == body
    again = get(f"{vault.url}/files/f.bin")
    assert (again.headers["X-Cache"], again.content == body) == ("HIT", True)
    assert upstream.count("/f.bin") == 2


def test_missing_upstream_with_nothing_cached_is_a_502_naming_the_upstream(make_vault):
    vault = make_vault([http_backend("http://127.0.0.1:9")])
    r = get(f"{vault.url}/files/x", headers={"Accept": "application/json"})
    assert r.status_code == 502
    assert r.json()["error"]["upstream"] == "127.0.0.1:9"
    assert "unreachable" in r.json()["error"]["message"]


def test_upstream_timeout_with_nothing_cached_is_a_504(upstream, make_vault):
    upstream.add("/slow", b"x", delay=3)
    vault = make_vault([http_backend(upstream.url, timeout="1s")])
    r = get(f"{vault.url}/files/slow")
    assert r.status_code == 504 and "timed out" in r.text


def test_a_range_request_on_a_miss_is_served_from_the_growing_fill(upstream, make_vault):
    body = blob(2 * MB)
    upstream.add("/r.bin", body, trickle=0.001)
    vault = make_vault([http_backend(upstream.url)])
    r = get(f"{vault.url}/files/r.bin", headers={"Range": "bytes=1000000-1000099"})
    assert r.status_code == 206 and r.content == body[1000000:1000100]
    assert r.headers["Content-Range"] == f"bytes 1000000-1000099/{len(body)}"


def test_a_short_range_the_fill_has_not_reached_is_asked_of_the_upstream(upstream, make_vault):
    """uv reads a wheel's metadata from its end with Range requests: it must not wait for the
    whole download. The fill is held at 1 MB, yet the tail arrives; the fill still caches the
    file, checked, and the range is the only extra upstream request."""
    gate = threading.Event()
    body = blob(8 * MB)
    upstream.add("/w.bin", body, gate=gate, gate_at=MB, ranges=True)
    vault = make_vault([http_backend(upstream.url)])
    try:
        r = get(f"{vault.url}/files/w.bin", headers={"Range": "bytes=-70000"})
        assert r.status_code == 206 and r.content == body[-70000:]
        first, last = len(body) - 70000, len(body) - 1
        assert r.headers["Content-Range"] == f"bytes {first}-{last}/{len(body)}"
        ranged = [h.get("Range") for m, p, h in upstream.log if p == "/w.bin"]
        assert sorted(ranged, key=str) == [None, f"bytes={first}-{last}"]
    finally:
        gate.set()
    vault.settle()
    assert get(f"{vault.url}/files/w.bin").content == body
    assert upstream.count("/w.bin") == 2


def test_a_range_waits_for_the_fill_when_the_upstream_ignores_range_or_it_is_long(upstream,
                                                                                   make_vault):
    body = blob(20 * MB)
    upstream.add("/plain.bin", body[:4 * MB], trickle=0.001)  # answers Range with the whole
    upstream.add("/long.bin", body, ranges=True, trickle=0.0005)
    vault = make_vault([http_backend(upstream.url)])
    r = get(f"{vault.url}/files/plain.bin", headers={"Range": "bytes=-1000"})
    assert r.status_code == 206 and r.content == body[4 * MB - 1000:4 * MB]
    r = get(f"{vault.url}/files/long.bin", headers={"Range": "bytes=2000000-"})  # a resume
    assert r.status_code == 206 and r.content == body[2000000:]
    assert all("Range" not in h for m, p, h in upstream.log if p == "/long.bin")


def test_temp_files_never_outlive_a_fill(upstream, make_vault):
    upstream.add("/t.bin", blob(MB))
    vault = make_vault([http_backend(upstream.url)])
    get(f"{vault.url}/files/t.bin")
    vault.settle()
    assert os.listdir(vault.app.cache.blobs.tmp_dir) == []


def test_eviction_does_not_cut_short_a_response_being_read(upstream, make_vault):
    body = blob(8 * MB)
    upstream.add("/e.bin", body)
    vault = make_vault([http_backend(upstream.url)])
    get(f"{vault.url}/files/e.bin")
    vault.settle()
    r = get(f"{vault.url}/files/e.bin", stream=True)
    first = r.raw.read(MB)
    assert vault.app.cache.evictor.make_room(10**18) is False  # evicts everything it can
    assert vault.app.cache.index.totals() == (0, 0)
    assert first + r.raw.read() == body


def test_a_blob_evicted_between_lookup_and_open_is_fetched_again(upstream, make_vault, monkeypatch):
    body = blob(200_000)
    upstream.add("/ev.bin", body)
    vault = make_vault([http_backend(upstream.url)])
    get(f"{vault.url}/files/ev.bin")
    vault.settle()
    cache = vault.app.cache
    original = cache.get

    def get_then_evict(*args, **kw):
        served = original(*args, **kw)
        if served.path is not None:
            cache.evictor.make_room(10**18)  # everything goes, as if another request needed room
        return served

    monkeypatch.setattr(cache, "get", get_then_evict)
    r = get(f"{vault.url}/files/ev.bin")
    assert r.status_code == 200 and r.content == body


def test_a_slow_upstreams_first_bytes_reach_the_client_without_waiting_for_a_full_chunk(
        upstream, make_vault):
    gate = threading.Event()
    body = blob(256 * 1024)
    upstream.add("/slow-start.bin", body, chunk=4096, gate=gate, gate_at=8192)
    vault = make_vault([http_backend(upstream.url)])
    r = get(f"{vault.url}/files/slow-start.bin", stream=True)
    try:
        with ThreadPoolExecutor(1) as pool:  # the upstream is paused at 8 KiB
            first = pool.submit(r.raw.read, 4096)
            assert first.result(timeout=10) == body[:4096]
    finally:
        gate.set()
    assert r.raw.read() == body[4096:]
