"""The registry fixtures themselves: a real distribution registry, pushed to and pulled from
with skopeo directly (no Vault), open, with htpasswd and with token auth."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import requests

from .registry_fixtures import (
    CREDS,
    MANIFEST_ACCEPT,
    OCI_INDEX,
    PASSWORD,
    SERVICE,
    USER,
    Registry,
    TokenServer,
    build_image,
    build_index,
    push,
    sha256_digest,
    skopeo_copy,
    skopeo_inspect_raw,
)


def test_push_pull_open_registry(registry: Registry, tmp_path: Path) -> None:
    img = build_image(tmp_path / "layout", "v1", [b"hello\n", {"a.txt": b"a", "b/c.txt": b"c"}])
    again = build_image(tmp_path / "layout2", "v1", [b"hello\n", {"a.txt": b"a", "b/c.txt": b"c"}])
    assert again.digest == img.digest  # deterministic
    pushed = push(img, "lib/hello:v1", registry)
    assert pushed.digest == img.digest and pushed.blob_digests == img.blob_digests
    assert registry.requests == []  # the push went to the registry itself, not the proxy

    result = skopeo_copy(f"{registry.host}/lib/hello:v1", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert (out / "manifest.json").read_bytes() == img.manifest
    for digest, data in img.blobs.items():
        assert (out / digest.split(":", 1)[1]).read_bytes() == data
    assert registry.blob_gets("lib/hello") == {d: 1 for d in img.blob_digests}
    assert registry.count("GET", "/v2/lib/hello/manifests/v1") == 1

    # Down: connections refused; up again on the same port with the same content.
    port = registry.port
    registry.stop()
    failed = skopeo_copy(f"{registry.host}/lib/hello:v1", tmp_path / "out2")
    assert failed.returncode != 0
    registry.start()
    assert registry.port == port
    raw = skopeo_inspect_raw(f"{registry.host}/lib/hello:v1")
    assert sha256_digest(raw) == img.digest


def test_multiarch_index(registry: Registry, tmp_path: Path) -> None:
    idx = build_index(tmp_path / "layout", "multi",
                      [("amd64", [b"amd64 bits\n"]), ("arm64", [b"arm64 bits\n", b"more\n"])])
    pushed = push(idx, "lib/multi:1", registry)
    assert pushed.digest == idx.digest and pushed.media_type == OCI_INDEX
    assert set(pushed.children) == {img.digest for img in idx.images}
    assert set(pushed.blob_digests) == set(idx.blob_digests)
    r = requests.get(registry.manifest_url("lib/multi", "1"),
                     headers={"Accept": MANIFEST_ACCEPT}, timeout=10)
    assert r.status_code == 200 and r.content == idx.manifest
    assert r.headers["Docker-Content-Digest"] == idx.digest

    result = skopeo_copy(f"{registry.host}/lib/multi:1", tmp_path / "out", "--all")
    assert result.returncode == 0, result.stderr
    assert registry.blob_gets() == {d: 1 for d in idx.blob_digests}


def test_htpasswd_registry(registry_basic: Registry, tmp_path: Path) -> None:
    img = build_image(tmp_path / "layout", "v1", [b"secret layer\n"])
    push(img, "private/app:v1", registry_basic)  # with vault:s3cret

    url = registry_basic.manifest_url("private/app", "v1")
    r = requests.get(url, headers={"Accept": MANIFEST_ACCEPT}, timeout=10)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic ")
    assert requests.get(url, headers={"Accept": MANIFEST_ACCEPT}, auth=(USER, "wrong"),
                        timeout=10).status_code == 401
    r = requests.get(url, headers={"Accept": MANIFEST_ACCEPT}, auth=(USER, PASSWORD), timeout=10)
    assert r.status_code == 200 and r.content == img.manifest

    anonymous = skopeo_copy(f"{registry_basic.host}/private/app:v1", tmp_path / "anon")
    assert anonymous.returncode != 0
    authed = skopeo_copy(f"{registry_basic.host}/private/app:v1", tmp_path / "out",
                         "--src-creds", CREDS)
    assert authed.returncode == 0, authed.stderr
    assert registry_basic.blob_gets() == {d: 1 for d in img.blob_digests}


def test_token_registry(registry_token: Registry, token_server: TokenServer,
                        tmp_path: Path) -> None:
    img = build_image(tmp_path / "layout", "v1", [b"token layer\n"])
    push(img, "team/app:v1", registry_token)  # token server grants vault push
    assert any(t.user == USER and "push" in t.granted[0]["actions"]
               for t in token_server.requests if t.granted)

    url = registry_token.manifest_url("team/app", "v1")
    r = requests.get(url, headers={"Accept": MANIFEST_ACCEPT}, timeout=10)
    assert r.status_code == 401
    challenge = r.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    assert params == {"realm": token_server.realm, "service": SERVICE,
                      "scope": "repository:team/app:pull"}

    before = len(token_server.requests)
    body = requests.get(params["realm"], params={"service": params["service"],
                                                  "scope": params["scope"]}, timeout=10).json()
    assert len(token_server.requests) == before + 1
    assert set(body) >= {"token", "access_token", "expires_in", "issued_at"}
    bearer = {"Authorization": f"Bearer {body['token']}"}
    r = requests.get(url, headers={"Accept": MANIFEST_ACCEPT, **bearer}, timeout=10)
    assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == img.digest
    claims = json.loads(base64.urlsafe_b64decode(body["token"].split(".")[1] + "=="))
    assert claims["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]

    # An anonymous token is pull-only: pushing with it is refused.
    r = requests.post(f"{registry_token.url}/v2/team/app/blobs/uploads/", headers=bearer,
                      timeout=10)
    assert r.status_code == 401 and 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]

    pulled = skopeo_copy(f"{registry_token.host}/team/app:v1", tmp_path / "out")
    assert pulled.returncode == 0, pulled.stderr
    assert registry_token.blob_gets("team/app") == {d: 1 for d in img.blob_digests}
