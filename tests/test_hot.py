"""Small hits answered from memory (``artifact_vault.hot``): the same bytes and headers as the
full path, hits still counted, and never an answer the cache no longer holds."""

from __future__ import annotations

import time

import requests

from artifact_vault.hot import Hot, HotHits

from .conftest import http_backend


def get(url: str, **kw: object) -> requests.Response:
    return requests.get(url, timeout=30, **kw)  # type: ignore[arg-type]


def remembered(vault) -> int:  # noqa: ANN001
    return len(vault.app._hot._hits)


def primed(upstream, make_vault, name: str, body: bytes, route: dict | None = None,  # noqa: ANN001
           **backend: object) -> tuple[object, str, requests.Response]:
    """Vault with /files/NAME remembered: a MISS, then a HIT through the backend (returned)."""
    upstream.add(f"/{name}", body, **(route or {}))
    vault = make_vault([http_backend(upstream.url, **backend)])
    url = f"{vault.url}/files/{name}"
    get(url)
    vault.settle()
    full = get(url)
    assert remembered(vault) == 1
    return vault, url, full


def test_a_repeated_small_hit_is_answered_from_memory_with_the_same_headers(upstream,
                                                                             make_vault):
    vault, url, full = primed(upstream, make_vault, "a.txt", b"A" * 1000, {
        "headers": {"Last-Modified": "Sun, 01 Nov 2026 10:00:00 GMT"}})
    hot = get(url, headers={"X-Request-Id": "hot-1"})
    assert hot.content == b"A" * 1000 and upstream.count("/a.txt") == 1
    assert hot.headers["X-Request-Id"] == "hot-1"
    for name in ("Content-Type", "Content-Length", "ETag", "Last-Modified", "Accept-Ranges",
                 "X-Cache"):
        assert hot.headers[name] == full.headers[name], name
    vault.app.cache.index.flush_access()
    (entry,) = list(vault.app.cache.index.scan())
    assert entry.hits == 2  # the hit from memory counts like any other (LRU, status page)


def test_ranges_conditionals_and_head_still_take_the_full_path(upstream, make_vault):
    _, url, full = primed(upstream, make_vault, "b.txt", b"0123456789")
    etag = full.headers["ETag"]
    assert get(url, headers={"Range": "bytes=2-4"}).content == b"234"
    assert get(url, headers={"If-None-Match": etag}).status_code == 304
    head = requests.head(url, timeout=10)
    assert head.status_code == 200 and head.content == b""


def test_a_purged_entry_is_fetched_again_at_once(upstream, make_vault):
    vault, url, _ = primed(upstream, make_vault, "c.txt", b"old")
    upstream.add("/c.txt", b"new")
    purge = requests.post(f"{vault.url}/-/admin/purge", json={"pattern": "files/c.txt"},
                          timeout=10)
    assert purge.status_code == 200
    again = get(url)
    assert again.content == b"new" and again.headers["X-Cache"] == "MISS"
    assert upstream.count("/c.txt") == 2


def test_an_expired_entry_is_revalidated_not_answered_from_memory(upstream, make_vault):
    _, url, _ = primed(upstream, make_vault, "d.txt", b"v1", {"etag": '"1"'}, ttl=1)
    upstream.add("/d.txt", b"v2", etag='"2"')
    time.sleep(1.2)
    again = get(url)
    assert again.content == b"v2" and upstream.count("/d.txt") == 2


def test_client_auth_turns_the_memo_off(upstream, make_vault, tmp_path):
    tokens = tmp_path / "tokens.yml"
    tokens.write_text("tokens: []\n")
    vault = make_vault([http_backend(upstream.url)], auth={"tokens_file": str(tokens)})
    assert vault.app._hot is None


class _Cache:
    def __init__(self) -> None:
        self.current = True

    def still_current(self, entry: object) -> bool:
        return self.current


def _hot(body: bytes = b"x") -> Hot:
    return Hot(entry=None, backend="files", path="/files/x", status="200 OK",  # type: ignore[arg-type]
               headers=[], body=body)


def _environ(uri: str = "/files/x", accept: str | None = None, **more: str) -> dict[str, str]:
    env = {"REQUEST_METHOD": "GET", "REQUEST_URI": uri, **more}
    if accept is not None:
        env["HTTP_ACCEPT"] = accept
    return env


def test_the_memo_is_keyed_by_path_query_and_accept():
    cache = _Cache()
    hits = HotHits(cache)  # type: ignore[arg-type]
    hits.keep(_environ(accept="application/vnd.oci.image.index.v1+json"), _hot())
    assert hits.lookup(_environ(accept="application/vnd.oci.image.index.v1+json")) is not None
    assert hits.lookup(_environ(accept="application/vnd.docker.distribution.manifest.v2+json")) is None
    assert hits.lookup(_environ()) is None
    assert hits.lookup(_environ("/files/x?y=1", accept="application/vnd.oci.image.index.v1+json")) is None
    cache.current = False  # the entry was replaced, purged or went stale
    assert hits.lookup(_environ(accept="application/vnd.oci.image.index.v1+json")) is None


def test_the_memo_holds_small_bodies_only_and_starts_over_when_full():
    hits = HotHits(_Cache(), max_bytes=100_000)  # type: ignore[arg-type]
    hits.keep(_environ("/big"), _hot(b"x" * (64 * 1024 + 1)))
    assert hits.lookup(_environ("/big")) is None
    hits.keep(_environ("/one"), _hot(b"x" * 60_000))
    hits.keep(_environ("/two"), _hot(b"x" * 60_000))
    assert hits.lookup(_environ("/one")) is None and hits.lookup(_environ("/two")) is not None
    hits.keep(_environ("/three", HTTP_RANGE="bytes=0-1"), _hot())
    assert hits.lookup(_environ("/three")) is None


def test_responses_older_than_a_second_are_dropped(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("artifact_vault.hot.time.monotonic", lambda: clock[0])
    hits = HotHits(_Cache())  # type: ignore[arg-type]
    hits.keep(_environ("/old"), _hot())
    clock[0] += 1.5
    hits.keep(_environ("/new"), _hot())
    assert hits.lookup(_environ("/old")) is None and hits.lookup(_environ("/new")) is not None
    assert len(hits._hits) == 1
