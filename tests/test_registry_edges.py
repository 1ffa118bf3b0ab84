"""Registry edge cases against a scripted upstream: rate limits, redirects, realms, Docker Hub."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from email.utils import formatdate

import pytest
import requests

from artifact_vault.backends.registry import oci
from artifact_vault.backends.registry.auth import parse_challenge

from .conftest import wait_for
from .fake_upstream import FakeUpstream
from .registry_fixtures import build_image, push

MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"digest": "sha256:" + "0" * 64, "size": 2}, "layers": []}).encode()
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
OCI = "application/vnd.oci.image.manifest.v1+json"


def backend(url: str, **config: object) -> dict:
    """A backend whose fetches are the tests' own: blobs fetched ahead of the client (tested
    in ``test_registry`` and below) would add requests the scripted upstream counts."""
    return {"type": "registry-v2", "config": {"prefix": "/r/", "base_url": url, "retries": 0,
                                              "prefetch_blobs": False, **config}}


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_upstream_429_is_passed_on_with_retry_after_when_nothing_is_cached(upstream, make_vault,
                                                                           form):
    retry_after = "30" if form == "seconds" else formatdate(time.time() + 30, usegmt=True)
    upstream.add("/v2/a/manifests/1", status=429, headers={"Retry-After": retry_after})
    vault = make_vault([backend(upstream.url)])
    r = requests.get(f"{vault.url}/v2/r/a/manifests/1", timeout=10)
    assert r.status_code == 429 and 25 <= int(r.headers["Retry-After"]) <= 30
    assert r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    # Retry-After is honoured: until it is over, Vault does not ask that upstream again.
    again = requests.get(f"{vault.url}/v2/r/a/manifests/2", timeout=10)
    assert again.status_code == 429 and 0 < int(again.headers["Retry-After"]) <= 30
    assert upstream.log and [path for _, path, _ in upstream.log] == ["/v2/a/manifests/1"]


def test_a_cached_tag_is_served_stale_while_the_upstream_asks_for_a_pause(upstream, make_vault):
    upstream.add("/v2/a/manifests/1", MANIFEST,
                 headers={"Content-Type": OCI, "Docker-Content-Digest": DIGEST})
    vault = make_vault([backend(upstream.url, tag_ttl=0)])
    url = f"{vault.url}/v2/r/a/manifests/1"
    assert requests.get(url, headers={"Accept": OCI}, timeout=10).status_code == 200
    upstream.add("/v2/a/manifests/1", status=429, headers={"Retry-After": "60"})
    asked = len(upstream.log)
    for _ in range(3):
        r = requests.get(url, headers={"Accept": OCI}, timeout=10)
        assert r.status_code == 200 and r.content == MANIFEST
        assert r.headers["X-Cache"] == "STALE"
    assert len(upstream.log) == asked + 1  # the revalidation that got the 429, then none


def test_ratelimit_remaining_is_exported(upstream, make_vault):
    upstream.add("/v2/a/manifests/1", MANIFEST, headers={
        "Content-Type": OCI, "Docker-Content-Digest": DIGEST, "ratelimit-remaining": "97;w=21600"})
    vault = make_vault([backend(upstream.url)])
    requests.get(f"{vault.url}/v2/r/a/manifests/1", timeout=10)
    metrics = requests.get(f"{vault.url}/metrics", timeout=10).text
    assert 'vault_upstream_ratelimit_remaining{backend="r"} 97.0' in metrics


def test_a_manifest_whose_body_does_not_match_its_announced_digest_is_refused(upstream, make_vault):
    upstream.add("/v2/a/manifests/1", MANIFEST, headers={
        "Content-Type": OCI, "Docker-Content-Digest": "sha256:" + "1" * 64})
    vault = make_vault([backend(upstream.url)])
    r = requests.get(f"{vault.url}/v2/r/a/manifests/1", timeout=10)
    assert r.status_code == 502 and "does not match" in r.json()["errors"][0]["message"]
    assert not vault.app.cache.cached("r manifest a:1")


def test_blob_redirects_to_storage_are_followed_without_credentials(make_vault):
    registry_up, storage = FakeUpstream(), FakeUpstream()
    try:
        blob = b"layer bytes"
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        registry_up.add(f"/v2/a/blobs/{digest}", status=307, location=f"{storage.url}/b/x")
        storage.add("/b/x", blob)
        vault = make_vault([backend(registry_up.url, username="u", password="p")])
        r = requests.get(f"{vault.url}/v2/r/a/blobs/{digest}", timeout=10)
        assert r.content == blob
        assert "Authorization" in registry_up.log[0][2]
        assert "Authorization" not in storage.log[0][2]
    finally:
        registry_up.stop()
        storage.stop()


def test_a_token_realm_off_the_upstreams_domain_is_refused(upstream, make_vault):
    upstream.add("/v2/a/manifests/1", status=401, headers={
        "WWW-Authenticate": 'Bearer realm="https://tokens.example.net/token",service="x"'})
    vault = make_vault([backend(upstream.url)])
    r = requests.get(f"{vault.url}/v2/r/a/manifests/1", timeout=10)
    assert r.status_code == 502 and "not its own domain" in r.json()["errors"][0]["message"]


def test_dockerhub_puts_one_segment_names_under_library(registry, make_vault, tmp_path):
    pushed = push(build_image(tmp_path / "img", "3", [b"alpine\n"]), "library/alpine:3", registry)
    vault = make_vault([{"type": "dockerhub", "config": {
        "prefix": "/dockerhub/", "base_url": registry.url, "default": True, "retries": 0,
        "prefetch_blobs": False}}])
    for path in ("/v2/dockerhub/alpine/manifests/3", "/v2/alpine/manifests/3?ns=docker.io",
                 "/v2/library/alpine/manifests/3"):
        r = requests.get(vault.url + path, timeout=10,
                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 200 and r.content == pushed.manifest, path
    assert {p for _, p in registry.requests} == {"/v2/library/alpine/manifests/3"}


def test_the_blobs_fetched_ahead_are_the_ones_a_client_fetches_from_the_registry():
    layer = {"digest": "sha256:" + "1" * 64, "size": 7}
    foreign = {"digest": "sha256:" + "2" * 64, "size": 9, "urls": ["https://elsewhere.test/l"]}
    odd = [{"digest": "sha256:" + "3" * 64, "size": -1}, {"digest": "sha256:" + "4" * 64,
                                                         "size": True}, {"digest": "md5:x"}]
    manifest = json.dumps({"config": {"digest": "sha256:" + "0" * 64, "size": 2},
                           "layers": [layer, foreign, *odd]}).encode()
    assert oci.blobs(manifest) == [("sha256:" + "0" * 64, 2), ("sha256:" + "1" * 64, 7),
                                   ("sha256:" + "3" * 64, None), ("sha256:" + "4" * 64, None)]
    index = json.dumps({"manifests": [{"digest": DIGEST, "size": len(MANIFEST)}]}).encode()
    assert oci.blobs(index) == [] and oci.blobs(b"not json") == []


def test_a_blob_fetched_ahead_that_fails_its_digest_is_logged_and_not_kept(upstream, make_vault,
                                                                           caplog):
    digest = "sha256:" + "ab" * 32
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI, "layers": [],
                           "config": {"digest": digest, "size": 5}}).encode()
    upstream.add("/v2/a/manifests/1", manifest, headers={"Content-Type": OCI})
    upstream.add(f"/v2/a/blobs/{digest}", b"wrong")
    vault = make_vault([backend(upstream.url, prefetch_blobs=True)])
    r = requests.get(f"{vault.url}/v2/r/a/manifests/1", headers={"Accept": OCI}, timeout=10)
    assert r.status_code == 200
    wait_for(lambda: any("ahead of the client" in rec.getMessage() for rec in caplog.records),
             "no warning about the blob fetched ahead")
    (line,) = [rec.getMessage() for rec in caplog.records
               if "ahead of the client" in rec.getMessage()]
    assert digest in line and "does not match" in line
    assert not vault.app.cache.cached(f"oci blob {digest}")
    with pytest.raises(requests.exceptions.RequestException):  # the client's own try fails too
        requests.get(f"{vault.url}/v2/r/a/blobs/{digest}", timeout=10).raise_for_status()
    assert upstream.count(f"/v2/a/blobs/{digest}") == 2


def test_a_stop_fetches_nothing_more_ahead(upstream, make_vault):
    """SIGTERM waits for the downloads running: a large image's blobs, fetched ahead one after
    another, would keep it waiting its whole stop_timeout."""
    config, layer = b"{}", b"a layer"
    digests = ["sha256:" + hashlib.sha256(b).hexdigest() for b in (config, layer)]
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI,
                           "config": {"digest": digests[0], "size": len(config)},
                           "layers": [{"digest": digests[1], "size": len(layer)}]}).encode()
    upstream.add("/v2/a/manifests/1", manifest, headers={"Content-Type": OCI})
    held = upstream.add(f"/v2/a/blobs/{digests[0]}", config, hold=threading.Event()).hold
    upstream.add(f"/v2/a/blobs/{digests[1]}", layer)
    vault = make_vault([backend(upstream.url, prefetch_blobs=True)])
    url = f"{vault.url}/v2/r/a/manifests/1"
    assert requests.get(url, headers={"Accept": OCI}, timeout=10).status_code == 200
    wait_for(lambda: upstream.count(f"/v2/a/blobs/{digests[0]}"),
             "the config was not fetched ahead")
    vault.app.stop_background()  # what the SIGTERM handler does first
    held.set()
    vault.settle()
    assert vault.app.cache.cached(f"oci blob {digests[0]}")  # the fill running finished
    # A request still being answered during the stop is served, and starts nothing.
    upstream.add("/v2/a/manifests/2", manifest, headers={"Content-Type": OCI})
    assert requests.get(url[:-1] + "2", headers={"Accept": OCI}, timeout=10).status_code == 200
    time.sleep(0.5)  # what a fetch ahead would have had to start in
    assert upstream.count(f"/v2/a/blobs/{digests[1]}") == 0


def test_an_upstream_tag_list_in_pages_is_merged(upstream, make_vault):
    upstream.add("/v2/a/tags/list", b'{"name": "a", "tags": ["1", "2"]}',
                 headers={"Link": '</v2/a/tags/list?n=2&last=2>; rel="next"'})
    upstream.add("/v2/a/tags/list?n=2&last=2", b'{"name": "a", "tags": ["3"]}')
    vault = make_vault([backend(upstream.url)])
    r = requests.get(f"{vault.url}/v2/r/a/tags/list", timeout=10)
    assert r.json() == {"name": "a", "tags": ["1", "2", "3"]}


def test_ip_addresses_are_the_same_token_realm_site_only_when_equal():
    # Comparing the last two labels made 10.9.0.1 and 127.0.0.1 "the same site", so an
    # upstream could send Vault's token request to any address ending in the same two octets.
    from artifact_vault.backends.registry.auth import same_site
    assert not same_site("10.9.0.1", "127.0.0.1")
    assert not same_site("192.168.0.1", "registry.0.1")
    assert same_site("127.0.0.1", "127.0.0.1")
    assert same_site("auth.docker.io", "registry-1.docker.io")
    assert not same_site("[::1]", "[fe80::1]")


def test_a_manifest_over_4_mb_is_refused_with_an_oci_error_and_not_kept(upstream, make_vault):
    """The default limit, whether or not the upstream says the length up front."""
    big = json.dumps({"schemaVersion": 2, "mediaType": OCI, "annotations": {
        "padding": "x" * (4 * 1024 * 1024)}}).encode()
    digest = "sha256:" + hashlib.sha256(big).hexdigest()
    headers = {"Content-Type": OCI, "Docker-Content-Digest": digest}
    upstream.add("/v2/a/manifests/sized", big, headers=headers)
    upstream.add("/v2/a/manifests/chunked", big, headers=headers, chunked=True)
    vault = make_vault([backend(upstream.url)])
    for tag in ("sized", "chunked"):
        r = requests.get(f"{vault.url}/v2/r/a/manifests/{tag}", timeout=30,
                         headers={"Accept": OCI})
        assert r.status_code == 502, tag
        (error,) = r.json()["errors"]
        assert "max_manifest_size" in error["message"], tag
        vault.settle()
        assert not vault.app.cache.cached(f"r manifest a:{tag}"), tag
    assert vault.app.cache.index.totals()[0] == 0


def test_a_layer_shared_by_two_registry_backends_is_stored_once(upstream, make_vault):
    """Blobs are content addressed and verified by their digest: a layer cached through one
    backend is one file, and is served from it through another."""
    layer = b"a shared layer" * 1000
    digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    upstream.add(f"/v2/one/blobs/{digest}", layer)
    upstream.add(f"/v2/two/blobs/{digest}", layer)
    vault = make_vault([backend(upstream.url), backend(upstream.url, prefix="/s/")])
    for path in (f"/v2/r/one/blobs/{digest}", f"/v2/s/two/blobs/{digest}"):
        r = requests.get(vault.url + path, timeout=10)
        assert r.status_code == 200 and r.content == layer, path
    vault.settle()
    blobs = [p for p in vault.app.cache.blobs.blob_dir.rglob("*") if p.is_file()]
    assert [p.read_bytes() for p in blobs] == [layer]
    assert [e.digest for e in vault.app.cache.index.scan()] == [digest.removeprefix("sha256:")]
    assert (upstream.count(f"/v2/one/blobs/{digest}"), upstream.count(f"/v2/two/blobs/{digest}")
            ) == (1, 0)


def test_a_blob_one_registry_lacks_is_still_fetched_through_another(upstream, make_vault):
    """A 404 is remembered for a while (negative_ttl), but only by the backend whose upstream
    said it: blobs are keyed by digest alone, and another registry may have this one."""
    layer = b"only in two" * 100
    digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    upstream.add(f"/v2/two/blobs/{digest}", layer)
    vault = make_vault([backend(upstream.url), backend(upstream.url, prefix="/s/")])
    for _ in range(2):
        r = requests.get(f"{vault.url}/v2/r/one/blobs/{digest}", timeout=10)
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
    assert upstream.count(f"/v2/one/blobs/{digest}") == 1  # the second 404 was remembered
    r = requests.get(f"{vault.url}/v2/s/two/blobs/{digest}", timeout=10)
    assert r.status_code == 200 and r.content == layer


def test_routing_takes_ns_then_the_prefix_segment_then_the_default(upstream, make_vault):
    """When they disagree: ?ns= names the upstream (and the whole path is the image name
    unless it starts with that backend's own prefix), else the first segment, else the
    default backend."""
    other = FakeUpstream()
    try:
        vault = make_vault([backend(upstream.url, prefix="/a/", default=True),
                            backend(other.url, prefix="/b/")])
        ns = upstream.url.removeprefix("http://")
        cases = [(f"/v2/b/x/manifests/1?ns={ns}", upstream, "/v2/b/x/manifests/1"),
                 (f"/v2/a/x/manifests/2?ns={ns}", upstream, "/v2/x/manifests/2"),
                 ("/v2/b/x/manifests/3?ns=elsewhere.test", other, "/v2/x/manifests/3"),
                 ("/v2/b/x/manifests/4", other, "/v2/x/manifests/4"),
                 ("/v2/x/manifests/5", upstream, "/v2/x/manifests/5")]
        for path, server, asked in cases:
            server.add(asked, MANIFEST, headers={"Content-Type": OCI,
                                                 "Docker-Content-Digest": DIGEST})
            r = requests.get(vault.url + path, headers={"Accept": OCI}, timeout=10)
            assert r.status_code == 200 and r.content == MANIFEST, path
            assert server.count(asked) == 1, path
        assert len(upstream.log) + len(other.log) == len(cases)
    finally:
        other.stop()


def test_challenges_are_parsed_with_quoted_commas_escapes_and_basic():
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.example.test/token",service="registry.example.test",'
        'scope="repository:team/app:pull,push",error="insufficient_scope"')
    assert scheme == "bearer" and params == {
        "realm": "https://auth.example.test/token", "service": "registry.example.test",
        "scope": "repository:team/app:pull,push", "error": "insufficient_scope"}
    assert parse_challenge('Basic realm="Registry \\"x\\" realm"') == (
        "basic", {"realm": 'Registry "x" realm'})
    assert parse_challenge("Bearer realm=https://a.test/t, service=s") == (
        "bearer", {"realm": "https://a.test/t", "service": "s"})


def test_a_401_is_answered_with_one_token_and_one_retry_never_a_loop(upstream, make_vault):
    token_path = "/token?service=reg&scope=repository%3Aa%3Apull"
    upstream.add(token_path, b'{"token": "t1", "expires_in": 300}',
                 headers={"Content-Type": "application/json"})
    challenge = (f'Bearer realm="{upstream.url}/token",service="reg",'
                 'scope="repository:a:pull"')
    upstream.add("/v2/a/manifests/1", status=401, headers={"WWW-Authenticate": challenge})
    vault = make_vault([backend(upstream.url)])
    r = requests.get(f"{vault.url}/v2/r/a/manifests/1", headers={"Accept": OCI}, timeout=10)
    assert r.status_code == 502 and r.json()["errors"][0]["code"]
    asked = [h for _, path, h in upstream.log if path == "/v2/a/manifests/1"]
    assert [h.get("Authorization") for h in asked] == [None, "Bearer t1"]
    assert upstream.count(token_path) == 1
