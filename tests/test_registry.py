"""skopeo pulling through Vault in front of the real CNCF distribution registry."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from artifact_vault.backends.registry import oci

from .registry_fixtures import (
    DOCKER_MANIFEST,
    MANIFEST_ACCEPT,
    PASSWORD,
    USER,
    Registry,
    TokenServer,
    build_image,
    build_index,
    push,
    sha256_digest,
    skopeo_copy,
)
from .conftest import wait_for
from .test_app import raw_request

LAYERS = [b"layer one\n" * 1000, {"bin/app": b"\x7fELF" + b"x" * 50_000, "etc/conf": b"a=1\n"}]


def hub(registry: Registry, **config: object) -> dict:
    return {"type": "registry-v2", "config": {"prefix": "/hub/", "base_url": registry.url,
                                              "retries": 0, **config}}


def pull(vault_url: str, ref: str, dest: Path, *extra: str) -> Path:
    host = vault_url.removeprefix("http://")
    result = skopeo_copy(f"{host}/{ref}", dest, *extra)
    assert result.returncode == 0, result.stderr
    return dest


def blobs_in(dest: Path) -> set[str]:
    return {f"sha256:{p.name}" for p in dest.iterdir() if len(p.name) == 64}


@pytest.fixture
def image(registry, tmp_path):
    return push(build_image(tmp_path / "img", "v1", LAYERS), "team/app:v1", registry)


def test_skopeo_pulls_by_tag_through_vault_and_blobs_come_from_upstream_once(
        registry, image, make_vault, tmp_path):
    vault = make_vault([hub(registry)])
    first = pull(vault.url, "hub/team/app:v1", tmp_path / "one")
    assert (first / "manifest.json").read_bytes() == image.manifest
    assert blobs_in(first) == set(image.blob_digests)
    vault.settle()
    pull(vault.url, "hub/team/app:v1", tmp_path / "two")
    assert registry.blob_gets("team/app") == {d: 1 for d in image.blob_digests}
    assert registry.count("GET", "/v2/team/app/manifests/v1") == 1


def test_skopeo_pulls_by_digest_and_then_needs_no_upstream(registry, image, make_vault, tmp_path):
    vault = make_vault([hub(registry)])
    pull(vault.url, f"hub/team/app@{image.digest}", tmp_path / "one")
    vault.settle()
    registry.stop()
    out = pull(vault.url, f"hub/team/app@{image.digest}", tmp_path / "two")
    assert (out / "manifest.json").read_bytes() == image.manifest


def test_docker_schema2_images_are_served_byte_for_byte(registry, make_vault, tmp_path):
    pushed = push(build_image(tmp_path / "img", "v2", LAYERS, fmt="docker"), "team/d:v2", registry)
    assert pushed.media_type == DOCKER_MANIFEST
    vault = make_vault([hub(registry)])
    out = pull(vault.url, "hub/team/d:v2", tmp_path / "out")
    assert (out / "manifest.json").read_bytes() == pushed.manifest


def test_multi_arch_index_and_every_child_are_cached(registry, make_vault, tmp_path):
    index = build_index(tmp_path / "idx", "multi", [("amd64", LAYERS), ("arm64", [b"arm\n"])])
    pushed = push(index, "team/multi:1", registry)
    vault = make_vault([hub(registry)])
    out = pull(vault.url, "hub/team/multi:1", tmp_path / "amd", "--override-arch", "amd64")
    amd_digest = sha256_digest((out / "manifest.json").read_bytes())
    assert amd_digest in pushed.children
    (arm_digest,) = set(pushed.children) - {amd_digest}
    deadline = time.monotonic() + 10
    while registry.count("GET", f"/v2/team/multi/manifests/{arm_digest}") == 0:
        assert time.monotonic() < deadline, "the other child was not prefetched"
        time.sleep(0.05)
    vault.settle()
    registry.stop()
    r = requests.get(f"{vault.url}/v2/hub/team/multi/manifests/{arm_digest}",
                     headers={"Accept": MANIFEST_ACCEPT}, timeout=10)
    assert r.status_code == 200 and r.content == pushed.children[arm_digest]
    # The other platform's layers are not fetched ahead: nobody asked for that image.
    arm_layers = {d["digest"] for d in json.loads(pushed.children[arm_digest])["layers"]}
    assert not arm_layers & set(registry.blob_gets())


def test_eight_concurrent_cold_pulls_fetch_each_blob_once(registry, image, make_vault, tmp_path):
    vault = make_vault([hub(registry)])
    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda i: pull(vault.url, "hub/team/app:v1", tmp_path / f"p{i}"),
                             range(8)))
    assert all(blobs_in(out) == set(image.blob_digests) for out in outs)
    assert registry.blob_gets("team/app") == {d: 1 for d in image.blob_digests}


def test_a_fetched_manifest_brings_its_blobs_before_the_client_asks(registry, image, make_vault,
                                                                   tmp_path):
    """skopeo asks for blobs one at a time, so each cold one would wait for the upstream in
    turn: the blobs of a manifest fetched from the upstream are fetched behind it, once each,
    and the pull that follows needs no upstream at all."""
    vault = make_vault([hub(registry)])
    r = requests.get(f"{vault.url}/v2/hub/team/app/manifests/v1",
                     headers={"Accept": MANIFEST_ACCEPT}, timeout=10)
    assert r.status_code == 200 and r.content == image.manifest
    wait_for(lambda: all(vault.app.cache.cached(f"oci blob {d}") for d in image.blob_digests),
             "the blobs were not fetched ahead")
    assert registry.blob_gets("team/app") == {d: 1 for d in image.blob_digests}
    registry.stop()
    out = pull(vault.url, "hub/team/app:v1", tmp_path / "out")
    assert blobs_in(out) == set(image.blob_digests)


def test_a_platform_manifest_already_cached_still_brings_its_blobs(registry, make_vault,
                                                                   tmp_path):
    """docker and containerd ask for the index, then for their platform's manifest by
    digest, which Vault has often cached by then (an index's children are fetched behind
    it): that manifest's blobs are fetched ahead all the same, the other platform's never."""
    index = build_index(tmp_path / "idx", "multi", [("amd64", LAYERS), ("arm64", [b"arm\n"])])
    pushed = push(index, "team/multi:1", registry)
    vault = make_vault([hub(registry)])
    base = f"{vault.url}/v2/hub/team/multi/manifests"
    r = requests.get(f"{base}/1", headers={"Accept": MANIFEST_ACCEPT}, timeout=10)
    amd, arm = (next(m["digest"] for m in r.json()["manifests"]
                     if m["platform"]["architecture"] == arch) for arch in ("amd64", "arm64"))
    wait_for(lambda: vault.app.cache.cached(f"hub manifest team/multi@{amd}"),
             "the index's children were not fetched ahead")
    child = requests.get(f"{base}/{amd}", headers={"Accept": MANIFEST_ACCEPT}, timeout=10)
    assert child.headers["X-Cache"] == "HIT"
    wanted = [d for d, _ in oci.blobs(child.content)]
    wait_for(lambda: all(vault.app.cache.cached(f"oci blob {d}") for d in wanted),
             "the blobs were not fetched ahead")
    vault.settle()
    assert registry.blob_gets() == {d: 1 for d in wanted}
    assert not {d for d, _ in oci.blobs(pushed.children[arm])} & set(registry.blob_gets())


def test_no_blobs_are_fetched_ahead_for_a_head_or_when_switched_off(registry, image, make_vault):
    """A HEAD only asks whether a tag moved (docker's check before a pull it may not need);
    ``prefetch_blobs: false`` leaves every blob to the client's own request."""
    config, *_ = image.blob_digests
    head = make_vault([hub(registry)])
    off = make_vault([hub(registry, prefetch_blobs=False)])
    assert requests.head(f"{head.url}/v2/hub/team/app/manifests/v1",
                         headers={"Accept": MANIFEST_ACCEPT}, timeout=10).status_code == 200
    assert requests.get(f"{off.url}/v2/hub/team/app/manifests/v1",
                        headers={"Accept": MANIFEST_ACCEPT}, timeout=10).status_code == 200
    assert requests.get(f"{off.url}/v2/hub/team/app/blobs/{config}", timeout=10).status_code == 200
    time.sleep(1)  # what a fetch ahead would have had to start in
    assert registry.blob_gets() == {config: 1}


def test_a_tag_update_is_seen_after_tag_ttl_with_a_head_revalidation(registry, image, make_vault,
                                                                     tmp_path):
    vault = make_vault([hub(registry, tag_ttl="1s")])
    url = f"{vault.url}/v2/hub/team/app/manifests/v1"
    accept = {"Accept": MANIFEST_ACCEPT}
    assert requests.get(url, headers=accept, timeout=10).headers["Docker-Content-Digest"] == image.digest
    time.sleep(1.1)
    same = requests.get(url, headers=accept, timeout=10)
    assert (same.headers["X-Cache"], same.headers["Docker-Content-Digest"]) == ("REVALIDATED", image.digest)
    assert registry.count("HEAD", "/v2/team/app/manifests/v1") == 1
    assert registry.count("GET", "/v2/team/app/manifests/v1") == 1
    newer = push(build_image(tmp_path / "img2", "v1", [b"new layer\n"]), "team/app:v1", registry)
    assert requests.get(url, headers=accept, timeout=10).headers["Docker-Content-Digest"] == image.digest
    time.sleep(1.1)
    changed = requests.get(url, headers=accept, timeout=10)
    assert changed.headers["Docker-Content-Digest"] == newer.digest
    assert changed.content == newer.manifest


def test_the_cached_tag_is_served_stale_when_the_upstream_is_down(registry, image, make_vault,
                                                                   tmp_path):
    vault = make_vault([hub(registry, tag_ttl="1s")])
    pull(vault.url, "hub/team/app:v1", tmp_path / "one")
    vault.settle()
    registry.stop()
    time.sleep(1.1)
    r = requests.head(f"{vault.url}/v2/hub/team/app/manifests/v1",
                      headers={"Accept": MANIFEST_ACCEPT}, timeout=10)
    assert (r.status_code, r.headers["X-Cache"]) == (200, "STALE")
    out = pull(vault.url, "hub/team/app:v1", tmp_path / "two")
    assert (out / "manifest.json").read_bytes() == image.manifest


def test_basic_auth_upstream(registry_basic, make_vault, tmp_path):
    pushed = push(build_image(tmp_path / "img", "v1", LAYERS), "private/app:v1", registry_basic)
    vault = make_vault([hub(registry_basic, username=USER, password=PASSWORD)])
    out = pull(vault.url, "hub/private/app:v1", tmp_path / "out")
    assert (out / "manifest.json").read_bytes() == pushed.manifest


def test_bearer_token_upstream_with_tokens_reused(registry_token, token_server, make_vault, tmp_path):
    pushed = push(build_image(tmp_path / "img", "v1", LAYERS), "tok/app:v1", registry_token)
    before = len(token_server.requests)
    vault = make_vault([hub(registry_token)])
    out = pull(vault.url, "hub/tok/app:v1", tmp_path / "out")
    assert (out / "manifest.json").read_bytes() == pushed.manifest
    issued = token_server.requests[before:]
    assert 1 <= len(issued) <= 2 and all(r.user is None for r in issued)


def test_bearer_tokens_use_the_configured_credentials_and_are_renewed_when_they_expire(
        make_registry, tmp_path, make_vault):
    """With credentials configured, Vault asks the realm as that user; a token is reused until
    shortly before it expires, then a new one is fetched (a 401 answered once per expiry,
    never a failed pull)."""
    tokens = TokenServer(tmp_path / "tokens", expires_in=14)  # reused for ~4 s, then renewed
    try:
        reg = make_registry("token", tokens)
        pushed = push(build_image(tmp_path / "img", "v1", LAYERS), "tok/app:v1", reg)
        # Blobs fetched ahead would take the requests this test times out of its hands.
        vault = make_vault([hub(reg, username=USER, password=PASSWORD, prefetch_blobs=False)])
        base = f"{vault.url}/v2/hub/tok/app"
        before = len(tokens.requests)
        first = requests.get(f"{base}/manifests/v1", headers={"Accept": MANIFEST_ACCEPT},
                             timeout=10)
        assert first.status_code == 200 and first.content == pushed.manifest
        config, *layers = pushed.blob_digests
        assert requests.get(f"{base}/blobs/{config}", timeout=10).status_code == 200
        issued = tokens.requests[before:]
        assert len(issued) == 1 and issued[0].user == USER  # one token for both requests
        time.sleep(4.5)  # past the token's renewal point
        blob = requests.get(f"{base}/blobs/{layers[0]}", timeout=10)
        assert blob.status_code == 200 and sha256_digest(blob.content) == layers[0]
        renewed = tokens.requests[before + 1:]
        assert len(renewed) == 1 and renewed[0].user == USER
    finally:
        tokens.stop()


def test_the_clients_authorization_header_is_never_forwarded(registry, image, make_vault):
    vault = make_vault([hub(registry)])
    requests.get(f"{vault.url}/v2/hub/team/app/manifests/v1", timeout=10,
                 headers={"Accept": MANIFEST_ACCEPT, "Authorization": "Bearer client-secret"})
    assert all("client-secret" not in json.dumps(entry.headers) for entry in registry.log)


def test_routing_by_ns_by_prefix_by_default_and_plain_paths(registry, image, make_vault):
    vault = make_vault([hub(registry, default=True)])
    accept = {"Accept": MANIFEST_ACCEPT}
    for path in (f"/v2/team/app/manifests/v1?ns={registry.host}",  # containerd mirror
                 "/v2/hub/team/app/manifests/v1",  # docker pull vault/hub/team/app
                 "/v2/team/app/manifests/v1",  # daemon.json registry-mirrors: the default
                 "/hub/team/app/manifests/v1"):  # curl
        r = requests.get(vault.url + path, headers=accept, timeout=10)
        assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == image.digest, path


def test_api_root_and_headers_on_every_response(registry, image, make_vault):
    vault = make_vault([hub(registry)])
    root = requests.get(f"{vault.url}/v2/", timeout=10)
    assert root.status_code == 200 and root.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    head = requests.head(f"{vault.url}/v2/hub/team/app/manifests/v1",
                         headers={"Accept": MANIFEST_ACCEPT}, timeout=10)
    assert head.headers["Docker-Content-Digest"] == image.digest
    assert head.headers["Content-Type"] == "application/vnd.oci.image.manifest.v1+json"
    assert head.headers["Content-Length"] == str(len(image.manifest))
    assert head.headers["ETag"] == f'"{image.digest}"' and head.content == b""
    missing = requests.get(f"{vault.url}/v2/hub/team/nope/manifests/v1", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert missing.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_manifests_and_blobs_answer_get_and_head_with_their_exact_headers(
        registry, image, make_vault):
    """What clients check on every pull: the stored bytes and media type, the digest, length
    and validator, on GET as on HEAD, by tag and by digest; and the upstream is asked with
    every manifest type Vault can serve (it never converts one type into another)."""
    vault = make_vault([hub(registry)])
    base = f"{vault.url}/v2/hub/team/app"
    expected = {"Content-Type": image.media_type, "Docker-Content-Digest": image.digest,
                "Content-Length": str(len(image.manifest)), "ETag": f'"{image.digest}"',
                "Docker-Distribution-API-Version": "registry/2.0"}
    for method, ref in (("GET", "v1"), ("HEAD", "v1"), ("GET", image.digest),
                        ("HEAD", image.digest)):
        r = requests.request(method, f"{base}/manifests/{ref}",
                             headers={"Accept": MANIFEST_ACCEPT}, timeout=10)
        assert r.status_code == 200, (method, ref)
        assert {k: r.headers.get(k) for k in expected} == expected, (method, ref)
        assert r.content == (image.manifest if method == "GET" else b"")
    (asked,) = [rec for rec in registry.log if rec.path == "/v2/team/app/manifests/v1"]
    accepted = {t.split(";")[0].strip() for t in asked.headers["Accept"].split(",")}
    assert accepted >= {"application/vnd.oci.image.manifest.v1+json",
                        "application/vnd.oci.image.index.v1+json", DOCKER_MANIFEST,
                        "application/vnd.docker.distribution.manifest.list.v2+json"}
    layer = json.loads(image.manifest)["layers"][0]
    for method in ("HEAD", "GET", "HEAD"):  # cold, then cached
        r = requests.request(method, f"{base}/blobs/{layer['digest']}", timeout=10)
        assert r.status_code == 200, method
        assert r.headers["Docker-Content-Digest"] == layer["digest"]
        assert r.headers["Content-Length"] == str(layer["size"])
        assert r.headers["Accept-Ranges"] == "bytes"
        assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        if method == "GET":
            assert sha256_digest(r.content) == layer["digest"]
        else:
            assert r.content == b""
    unknown = "sha256:" + "0" * 64
    for path, code in ((f"{base}/blobs/{unknown}", "BLOB_UNKNOWN"),
                       (f"{base}/manifests/{unknown}", "MANIFEST_UNKNOWN")):
        r = requests.get(path, timeout=10)
        assert r.status_code == 404, path
        (error,) = r.json()["errors"]
        assert error["code"] == code and error["message"] and "detail" in error
        assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_blob_ranges_are_served(registry, image, make_vault):
    vault = make_vault([hub(registry)])
    digest = image.blob_digests[-1]
    url = f"{vault.url}/v2/hub/team/app/blobs/{digest}"
    whole = requests.get(url, timeout=10)
    part = requests.get(url, headers={"Range": "bytes=10-19"}, timeout=10)
    assert part.status_code == 206 and part.content == whole.content[10:20]
    assert whole.headers["Docker-Content-Digest"] == digest


def test_an_index_is_not_served_to_a_client_that_does_not_accept_it(registry, make_vault, tmp_path):
    push(build_index(tmp_path / "idx", "m", [("amd64", LAYERS), ("arm64", [b"a"])]),
         "team/m:1", registry)
    vault = make_vault([hub(registry)])
    r = requests.get(f"{vault.url}/v2/hub/team/m/manifests/1",
                     headers={"Accept": DOCKER_MANIFEST}, timeout=10)
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"


def test_tags_list_paginates_with_n_and_last(registry, make_vault, tmp_path):
    img = build_image(tmp_path / "img", "t", [b"x"])
    for tag in ("a", "b", "c"):
        push(img, f"team/tags:{tag}", registry, src_tag="t")
    vault = make_vault([hub(registry)])
    url = f"{vault.url}/v2/hub/team/tags/tags/list"
    assert requests.get(url, timeout=10).json() == {"name": "team/tags", "tags": ["a", "b", "c"]}
    page = requests.get(url + "?n=2", timeout=10)
    assert page.json()["tags"] == ["a", "b"]
    assert page.headers["Link"] == '</v2/hub/team/tags/tags/list?n=2&last=b>; rel="next"'
    assert requests.get(url + "?n=2&last=b", timeout=10).json()["tags"] == ["c"]


@pytest.mark.parametrize("path,code", [
    ("/v2/hub/Team/App/manifests/v1", "NAME_INVALID"),
    ("/v2/hub/team/app/manifests/sha256:xyz", "DIGEST_INVALID"),
    ("/v2/hub/team/app/blobs/sha512:" + "a" * 128, "UNSUPPORTED"),
    ("/v2/hub/team/app/manifests/bad..tag!", "TAG_INVALID")])
def test_malformed_names_and_digests_are_400_with_an_oci_error(registry, make_vault, path, code):
    vault = make_vault([hub(registry)])
    r = requests.get(vault.url + path, timeout=10)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == code
    assert registry.requests == []


@pytest.mark.parametrize("target", ["/v2/hub/team/../../etc/manifests/v1",
                                    "/v2/hub/team/%2e%2e/x/manifests/v1",
                                    "/v2/hub/../hub/team/app/blobs/sha256:" + "0" * 64])
def test_dot_dot_in_a_name_never_reaches_the_upstream(registry, make_vault, target):
    """Sent as written (``requests`` would fold the dots before sending)."""
    vault = make_vault([hub(registry)])
    response = raw_request(vault.url, f"GET {target} HTTP/1.1")
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] in (b"400", b"404"), head
    assert json.loads(body)["errors"][0]["code"], body
    assert registry.requests == []


def test_writes_are_refused_as_unsupported(registry, make_vault):
    vault = make_vault([hub(registry)])
    r = requests.post(f"{vault.url}/v2/hub/team/app/blobs/uploads/", timeout=10)
    assert r.status_code == 405 and r.json()["errors"][0]["code"] == "UNSUPPORTED"


def test_a_manifest_over_the_size_limit_is_refused(registry, image, make_vault):
    vault = make_vault([hub(registry, max_manifest_size=100)])
    r = requests.get(f"{vault.url}/v2/hub/team/app/manifests/v1",
                     headers={"Accept": MANIFEST_ACCEPT}, timeout=10)
    assert r.status_code == 502 and "max_manifest_size" in r.json()["errors"][0]["message"]


def test_a_blob_whose_digest_does_not_match_is_not_served_whole_or_cached(upstream, make_vault):
    digest = "sha256:" + "ab" * 32
    upstream.add(f"/v2/team/x/blobs/{digest}", b"these bytes do not hash to that digest")
    vault = make_vault([{"type": "registry-v2", "config": {"prefix": "/hub/",
                                                           "base_url": upstream.url}}])
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(f"{vault.url}/v2/hub/team/x/blobs/{digest}", timeout=10).raise_for_status()
    vault.settle()
    assert not vault.app.cache.cached(f"oci blob {digest}")
