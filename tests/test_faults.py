"""Fault injection: each misbehaving upstream in front of each kind of artifact Vault caches.

Targets (what the fault is put in front of):

    http          a file of the http backend                 streamed, no digest known, ttl
    pypi-file     a pypi file, listed with its sha256        streamed, verified, immutable
    pypi-page     a pypi project page (JSON)                 parsed whole, no digest, index_ttl
    oci-blob      a registry blob                            streamed, verified, immutable
    oci-manifest  a registry manifest by tag                 parsed whole, Docker-Content-Digest,
                                                             tag_ttl

Every case runs twice: ``cold`` (nothing cached) and ``warm`` (a good copy is cached; a
mutable one has just expired). For each it checks what the client sees (a clear status, a
whole correct body, or a broken transfer: the connection closes before Content-Length is met,
never a clean short body), that every cached blob still hashes to its digest and no temp file
is left, that a cached copy is served where one exists, that another backend is served while
the fault goes on, and that the artifact is served correctly once the upstream heals.

The README's fault table is this file's summary.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from .conftest import http_backend
from .fake_upstream import FakeUpstream, Route

OCI = "application/vnd.oci.image.manifest.v1+json"
PYPI_JSON = "application/vnd.pypi.simple.v1+json"
TIMEOUT = {"connect": "1s", "read": "1s"}
SIZE = 200_000  # streamed bodies: small, but several chunks of the fake upstream
TRICKLE_SIZE = 2048  # at 1 KiB/s


def payload(size: int, seed: str) -> bytes:
    block = hashlib.sha256(seed.encode()).digest() * 64
    return (block * (size // len(block) + 1))[:size]


# -- targets -----------------------------------------------------------------------------------

@dataclass
class Setup:
    """One artifact behind the fake upstream: where the fault goes, how Vault serves it."""

    route: Route  # the upstream route the fault is applied to
    vault_path: str
    key: str  # the cache key
    good: Callable[[bytes], bool]  # is this client body the right one?
    streamed: bool  # False: Vault reads it whole before answering (pages, manifests)
    mutable: bool  # has a TTL, so a warm copy can be expired and served STALE
    verified: bool  # a digest is known, so a body that does not match it is caught
    follows_any_redirect: bool = False  # registry blobs go to object storage by design


@dataclass
class Target:
    name: str
    backend: Callable[[str], dict[str, Any]]
    make: Callable[[FakeUpstream, int, str], Setup]
    sizes: dict[str, int] = field(default_factory=dict)


def _http(up: FakeUpstream, size: int, seed: str) -> Setup:
    body = payload(size, seed)
    route = up.add("/a.bin", body)
    return Setup(route, "/files/a.bin", f"files {up.url}/a.bin", lambda b: b == body,
                 streamed=True, mutable=True, verified=False)


def _pypi_file(up: FakeUpstream, size: int, seed: str) -> Setup:
    body = payload(size, seed)
    sha = hashlib.sha256(body).hexdigest()
    name = "proj-1.0.tar.gz"
    page = {"meta": {"api-version": "1.0"}, "name": "proj", "files": [
        {"filename": name, "url": f"../../packages/{name}", "hashes": {"sha256": sha}}]}
    up.add("/simple/proj/", json.dumps(page).encode(), headers={"Content-Type": PYPI_JSON})
    route = up.add(f"/packages/{name}", body)
    return Setup(route, f"/pypi/files/proj/{sha}/{name}", f"pypi file proj/{sha}/{name}",
                 lambda b: b == body, streamed=True, mutable=False, verified=True)


def _pypi_page(up: FakeUpstream, size: int, seed: str) -> Setup:
    count = max(1, size // 150)
    names = [f"proj-1.0.{i}.tar.gz" for i in range(count)]
    files = [{"filename": n, "url": f"../../packages/{n}",
              "hashes": {"sha256": hashlib.sha256(f"{seed}{n}".encode()).hexdigest()}}
             for n in names]
    page = json.dumps({"meta": {"api-version": "1.0"}, "name": "proj", "files": files}).encode()
    route = up.add("/simple/proj/", page, headers={"Content-Type": PYPI_JSON})

    def good(b: bytes) -> bool:
        return [f["filename"] for f in json.loads(b)["files"]] == names

    return Setup(route, "/pypi/simple/proj/?format=json", f"pypi page {up.url}/simple/proj/",
                 good, streamed=False, mutable=True, verified=False)


def _oci_blob(up: FakeUpstream, size: int, seed: str) -> Setup:
    body = payload(size, seed)
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    route = up.add(f"/v2/lib/app/blobs/{digest}", body)
    return Setup(route, f"/v2/r/lib/app/blobs/{digest}", f"oci blob {digest}",
                 lambda b: b == body, streamed=True, mutable=False, verified=True,
                 follows_any_redirect=True)


def _oci_manifest(up: FakeUpstream, size: int, seed: str) -> Setup:
    layers = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": i,
               "digest": "sha256:" + hashlib.sha256(f"{seed}{i}".encode()).hexdigest()}
              for i in range(max(1, size // 150))]
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI, "layers": layers, "config": {
        "digest": "sha256:" + "0" * 64, "size": 2}}).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    route = up.add("/v2/lib/app/manifests/1.0", body,
                   headers={"Content-Type": OCI, "Docker-Content-Digest": digest})
    return Setup(route, "/v2/r/lib/app/manifests/1.0", "r manifest lib/app:1.0",
                 lambda b: b == body, streamed=False, mutable=True, verified=True)


TARGETS = {t.name: t for t in [
    Target("http", lambda url: http_backend(url, ttl="1h", timeout=TIMEOUT), _http),
    Target("pypi-file", lambda url: {"type": "pypi", "config": {
        "prefix": "/pypi/", "base_url": f"{url}/simple", "retries": 0, "timeout": TIMEOUT}},
        _pypi_file),
    Target("pypi-page", lambda url: {"type": "pypi", "config": {
        "prefix": "/pypi/", "base_url": f"{url}/simple", "retries": 0, "timeout": TIMEOUT,
        "index_ttl": "1h"}}, _pypi_page, {"default": 20_000}),
    Target("oci-blob", lambda url: {"type": "registry-v2", "config": {
        "prefix": "/r/", "base_url": url, "retries": 0, "timeout": TIMEOUT}}, _oci_blob),
    Target("oci-manifest", lambda url: {"type": "registry-v2", "config": {
        "prefix": "/r/", "base_url": url, "retries": 0, "timeout": TIMEOUT, "tag_ttl": "1h"}},
        _oci_manifest, {"default": 20_000}),
]}


# -- what a client sees ----------------------------------------------------------------------

@dataclass
class Seen:
    kind: str  # "ok" (a whole body), "status" (an error status) or "broken"
    status: int = 0
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Seen({self.kind}, {self.status}, {len(self.body)} bytes, {self.body[:120]!r})"


def fetch(base: str, path: str) -> Seen:
    """GET with http.client, so a short body is seen for what it is (IncompleteRead)."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        try:
            body = resp.read()
        except (http.client.IncompleteRead, ConnectionError):
            return Seen("broken", resp.status, headers=headers)
        if resp.status != 200:
            return Seen("status", resp.status, body, headers)
        # A clean 200 must be framed: Content-Length met, or a chunked body's last chunk read.
        assert "content-length" in headers or headers.get("transfer-encoding") == "chunked"
        return Seen("ok", 200, body, headers)
    except (ConnectionError, http.client.RemoteDisconnected):
        return Seen("broken")
    finally:
        conn.close()


# -- faults --------------------------------------------------------------------------------------

def _reset(route: Route, rng: random.Random, _: FakeUpstream) -> None:
    route.reset_at = rng.randrange(1, len(route.body))


def _stall(route: Route, rng: random.Random, _: FakeUpstream) -> None:
    route.stall_at, route.stall = rng.randrange(1, len(route.body)), 3.0  # read timeout: 1s


def _trickle(route: Route, rng: random.Random, _: FakeUpstream) -> None:
    route.chunk, route.trickle = 256, 0.25  # 1 KiB/s, each gap under the read timeout


def _long(route: Route, rng: random.Random, _: FakeUpstream) -> None:
    route.announce = len(route.body) + 1000  # announces more than it sends, then closes


def _short(route: Route, rng: random.Random, _: FakeUpstream) -> None:
    route.announce = len(route.body) - 1000  # announces less than it sends


def _status(code: int, **headers: str) -> Callable[[Route, random.Random, FakeUpstream], None]:
    def apply(route: Route, rng: random.Random, _: FakeUpstream) -> None:
        route.status = code
        route.headers.update(headers)
    return apply


def _digest(route: Route, rng: random.Random, _: FakeUpstream) -> None:
    body = bytearray(route.body)
    body[len(body) // 2] ^= 0xFF  # same length, one byte off
    route.body = bytes(body)


def _loop(route: Route, rng: random.Random, up: FakeUpstream) -> None:
    path = next(p for p, r in up.routes.items() if r is route)
    route.status, route.location = 302, path


def _elsewhere(route: Route, rng: random.Random, up: FakeUpstream) -> None:
    # Refused before any connection is made: no traffic leaves 127.0.0.1.
    route.status, route.location = 302, "http://mirror.invalid/elsewhere"


def _refused(route: Route, rng: random.Random, up: FakeUpstream) -> None:
    up.stop()


FAULTS: dict[str, Callable[[Route, random.Random, FakeUpstream], None]] = {
    "refused": _refused, "reset": _reset, "stall": _stall, "trickle": _trickle,
    "length-long": _long, "length-short": _short, "storm-500": _status(500),
    "storm-502": _status(502), "storm-503": _status(503),
    "429": _status(429, **{"Retry-After": "17"}), "digest": _digest, "redirect-loop": _loop,
    "redirect-elsewhere": _elsewhere,
}
STORM_CLIENTS = 8


def expected(fault: str, s: Setup) -> set[str] | str:
    """What a client of a cold cache may see: statuses, "ok", "broken", or "announced"."""
    broken = {"broken", "502", "504"} if s.streamed else {"502", "504"}
    return {
        "refused": {"502"}, "reset": broken, "stall": broken, "trickle": {"ok"},
        "length-long": broken,
        # Without a digest, a body cut at the announced length cannot be told from a whole
        # one: Vault serves and keeps exactly what the upstream announced. A page that no
        # longer parses is refused.
        "length-short": broken if s.verified else ("announced" if s.streamed else {"502"}),
        "storm-500": {"502"}, "storm-502": {"502"}, "storm-503": {"502"}, "429": {"429"},
        "digest": broken if s.verified else {"ok"},  # unverified: the bytes are all we know
        "redirect-loop": {"502"},
        "redirect-elsewhere": {"ok"} if s.follows_any_redirect else {"502"},
    }[fault]


def label(seen: Seen) -> str:
    return seen.kind if seen.kind in ("ok", "broken") else str(seen.status)


# -- the suite -------------------------------------------------------------------------------------

def assert_cache_sound(vault: Any) -> None:
    """Every indexed blob hashes to its digest and has its size; no temp file is left."""
    vault.settle()
    cache = vault.app.cache
    rows = cache.index._db.execute(
        "SELECT key, digest, size FROM entries WHERE status = 200").fetchall()
    for key, digest, size in rows:
        data = open(cache.blobs.file(digest), "rb").read()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (size, digest), key
    assert list(cache.blobs.tmp_dir.iterdir()) == []


@pytest.mark.parametrize("state", ["cold", "warm"])
@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("target", list(TARGETS))
def test_fault(target: str, fault: str, state: str, make_vault) -> None:
    seed = zlib.crc32(f"{target}/{fault}/{state}".encode())
    print(f"seed {seed}")
    rng = random.Random(seed)
    t = TARGETS[target]
    up, other = FakeUpstream(), FakeUpstream()
    try:
        size = TRICKLE_SIZE if fault == "trickle" else t.sizes.get("default", SIZE)
        s = t.make(up, size, str(seed))
        if fault == "digest" and not s.verified:
            pytest.skip("no digest is known for this artifact: a changed body is just new bytes")
        if fault == "redirect-elsewhere" and s.follows_any_redirect:
            pytest.skip("registry blobs follow redirects anywhere (object storage), verified by "
                        "digest: test_registry_edges.py")
        good_body = s.route.body
        ok_body = payload(50_000, "other")
        other.add("/ok.bin", ok_body)
        vault = make_vault([t.backend(up.url), http_backend(other.url, prefix="/other/")],
                           cache={"max_stale": "7d"})
        if state == "warm":
            first = fetch(vault.url, s.vault_path)
            assert first.kind == "ok" and s.good(first.body), first
            vault.settle()
            if s.mutable:
                entry = vault.app.cache.index.get(s.key)
                vault.app.cache.index.refresh(s.key, time.time() - 1, entry.headers)
        upstream_before = up.count(_path_of(up, s.route))

        FAULTS[fault](s.route, rng, up)
        clients = STORM_CLIENTS if fault.startswith("storm") else 1
        with ThreadPoolExecutor(clients + 1) as pool:
            faulty = [pool.submit(fetch, vault.url, s.vault_path) for _ in range(clients)]
            # Meanwhile, another backend is served (the faulty request may be stalled now).
            if state == "cold" or s.mutable:
                _wait_for_hit(up, s.route, upstream_before, fault)
            meanwhile = fetch(vault.url, "/other/ok.bin")
            seen = [f.result() for f in faulty]
        assert meanwhile.kind == "ok" and meanwhile.body == ok_body

        for one in seen:
            if state == "warm" and fault != "trickle":
                _check_warm(one, s, fault)
            else:
                _check_cold(one, s, fault, good_body)
        assert_cache_sound(vault)
        _check_nothing_wrong_kept(vault, s, fault, state, good_body)

        if fault == "length-short" and expected(fault, s) == "announced":
            return  # the cut copy is kept until its TTL: nothing tells it from a whole one
        if fault == "429" and state == "cold":  # its Retry-After is honoured: not asked again
            path = _path_of(up, s.route)
            asked = up.count(path)
            t.make(up, size, str(seed))
            held = fetch(vault.url, s.vault_path)
            assert label(held) == "429" and 0 < int(held.headers["retry-after"]) <= 17, held
            assert up.count(path) == asked
        elif fault != "refused":  # heal the upstream: the right bytes are served
            t.make(up, size, str(seed))
            healed = fetch(vault.url, s.vault_path)
            assert healed.kind == "ok" and s.good(healed.body), healed
    finally:
        up.stop()
        other.stop()


def _path_of(up: FakeUpstream, route: Route) -> str:
    return next(p for p, r in up.routes.items() if r is route)


def _wait_for_hit(up: FakeUpstream, route: Route, before: int, fault: str) -> None:
    """Until the faulty request reached the upstream (so "meanwhile" is meanwhile)."""
    if fault == "refused":
        return
    path = _path_of(up, route)
    deadline = time.monotonic() + 5
    while up.count(path) == before and time.monotonic() < deadline:
        time.sleep(0.01)


def _check_cold(seen: Seen, s: Setup, fault: str, good_body: bytes) -> None:
    want = expected(fault, s)
    if want == "announced":
        assert seen.kind == "ok" and seen.body == good_body[:len(seen.body)], seen
        assert len(seen.body) == len(good_body) - 1000
        return
    assert label(seen) in want, (seen, want)
    if seen.kind == "ok":
        if fault == "digest" and not s.verified:
            return  # unverified bytes are served as they came
        assert s.good(seen.body), seen
    if fault == "429":
        assert seen.headers.get("retry-after") == "17"
    if seen.kind == "status":
        assert b"upstream" in seen.body.lower(), seen  # says who failed, or how


def _check_warm(seen: Seen, s: Setup, fault: str) -> None:
    """A cached copy exists: the client gets the right bytes or, for a streamed refresh of an
    expired copy that breaks mid-body, a broken transfer (its headers were sent already)."""
    if not s.mutable:  # immutable: served from the cache, the upstream is not asked
        assert seen.kind == "ok" and s.good(seen.body) and seen.headers["x-cache"] == "HIT"
        return
    if seen.kind == "ok":
        if not s.verified and fault in ("digest", "length-short"):
            return  # the upstream's new bytes, as announced: nothing to check them against
        assert s.good(seen.body), seen
        assert seen.headers["x-cache"] in ("STALE", "REVALIDATED", "MISS"), seen
        return
    assert False, f"a cached copy existed, yet the client saw {seen}"


def _check_nothing_wrong_kept(vault: Any, s: Setup, fault: str, state: str,
                              good_body: bytes) -> None:
    entry = vault.app.cache.index.get(s.key)
    if entry is None or entry.status != 200:
        assert state == "cold", "a cached copy was lost"
        return
    kept = open(vault.app.cache.blobs.file(entry.digest), "rb").read()
    if not s.verified and fault == "length-short":
        return  # unverifiable: what the upstream announced is what is kept
    assert kept == good_body, f"{s.key}: kept {len(kept)} bytes that are not the good body"
