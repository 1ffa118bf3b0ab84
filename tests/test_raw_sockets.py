"""Hostile requests on a raw socket against the real server, and an SSRF canary.

The canary is a server on another loopback port that counts what it receives. After each
battery of crafted requests it must have received nothing, except where the config (or an
index the config names) names it. What may reach another host, by design:
- a redirect from an upstream, only to hosts in ``allowed_redirect_hosts``; registry blobs may
  redirect anywhere (object storage, CDNs), without credentials;
- PyPI file URLs on any host the configured index lists (the index is trusted like the config:
  it names where its files live), and only files it lists;
- a registry token realm on the registry's own site, or on ``token_realm_hosts``.
"""

from __future__ import annotations

import json
import socket

import pytest
import requests

from .conftest import http_backend
from .fake_upstream import FakeUpstream

OVERSIZED = 300 * 1024  # over waitress' 256 KiB request-header limit


@pytest.fixture
def canary():
    server = FakeUpstream()
    server.add("/x", b"canary\n")
    yield server
    server.stop()


@pytest.fixture
def vault(upstream, make_vault):
    upstream.add("/a.txt", b"hello\n")
    return make_vault([http_backend(upstream.url)])


def raw(url: str, data: bytes, timeout: float = 10) -> bytes:
    """Send ``data`` on a fresh connection; everything the server answers until it closes."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may close early on an oversized request: that is an answer too
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, socket.timeout):
            pass
    return b"".join(chunks)


def status(answer: bytes) -> int | None:
    """The first response's status; None if the server closed without one."""
    if not answer.startswith(b"HTTP/1."):
        return None
    return int(answer.split(b" ", 2)[1])


def head_of(answer: bytes) -> bytes:
    return answer.split(b"\r\n\r\n", 1)[0]


def header_names(answer: bytes) -> set[bytes]:
    return {line.split(b":", 1)[0].strip().lower() for line in head_of(answer).split(b"\r\n")[1:]}


def still_serving(vault) -> None:
    assert requests.get(f"{vault.url}/files/a.txt", timeout=10).content == b"hello\n"


def get_line(target: bytes, *headers: bytes) -> bytes:
    lines = [b"GET " + target + b" HTTP/1.1", b"Host: 127.0.0.1", *headers,
             b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n"


# -- malformed and oversized requests ------------------------------------------------------------

def test_an_oversized_request_line_is_refused_and_the_server_keeps_serving(vault):
    answer = raw(vault.url, get_line(b"/files/" + b"a" * OVERSIZED))
    assert status(answer) in (400, 414, 431, None)
    still_serving(vault)


def test_oversized_headers_are_refused_and_the_server_keeps_serving(vault):
    many = [b"X-Fill-%d: %s" % (i, b"v" * 1000) for i in range(OVERSIZED // 1000)]
    assert status(raw(vault.url, get_line(b"/files/a.txt", *many))) in (400, 431, None)
    one_huge = b"X-Huge: " + b"v" * OVERSIZED
    assert status(raw(vault.url, get_line(b"/files/a.txt", one_huge))) in (400, 431, None)
    still_serving(vault)


@pytest.mark.parametrize("method", [b"FOO", b"PUT", b"DELETE", b"PATCH", b"TRACE", b"OPTIONS",
                                    b"PROPFIND", b"get"])
def test_invalid_and_unsupported_methods_are_405_or_501(vault, upstream, method):
    request = get_line(b"/files/a.txt").replace(b"GET", method, 1)
    assert status(raw(vault.url, request)) in (400, 405, 501)
    assert upstream.count("/a.txt") == 0


@pytest.mark.parametrize("line", [b"G\x00T /files/a.txt HTTP/1.1", b"GET", b"\x16\x03\x01\x00\x00", b"GET /files/a.txt\x00 HTTP/1.1",
                                  b"GET files/a.txt HTTP/1.1", b"GET * HTTP/1.1",
                                  b"GET //[ HTTP/1.1", b"GET http://[/ HTTP/1.1"])
def test_garbage_request_lines_get_a_4xx_or_a_closed_connection(vault, line):
    answer = raw(vault.url, line + b"\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert status(answer) is None or 400 <= status(answer) < 500, answer[:200]
    still_serving(vault)


@pytest.mark.parametrize("target", [b"/files/a.txt%0d%0aX-Injected:%20yes",
                                    b"/files/a.txt%0aX-Injected:%20yes",
                                    b"/files/%0d%0a%0d%0a<html>"])
def test_encoded_crlf_in_the_path_is_400_and_injects_no_header(vault, upstream, target):
    answer = raw(vault.url, get_line(target))
    assert status(answer) == 400
    assert b"x-injected" not in header_names(answer)
    assert len(upstream.log) == 0


@pytest.mark.parametrize("target", [b"/files/a.txt\rX-Injected: yes", b"/files/a.txt\nX-Injected: yes",
                                    b"/files/a.txt HTTP/1.1\r\nX-Injected: yes\r\nFoo:"])
def test_raw_crlf_in_the_request_line_injects_no_header(vault, target):
    answer = raw(vault.url, get_line(target))
    assert b"x-injected" not in header_names(answer)
    still_serving(vault)


def test_a_crlf_in_the_query_is_not_echoed_into_a_redirect(upstream, make_vault):
    vault = make_vault([{"type": "pypi", "config": {"prefix": "/pypi/",
                                                    "base_url": f"{upstream.url}/simple/"}}])
    answer = raw(vault.url, get_line(b"/pypi/simple/Foo/?a=%0d%0aX-Injected:%20yes"))
    assert status(answer) == 301 and b"x-injected" not in header_names(answer)


def test_a_hostile_request_id_is_not_echoed(vault):
    answer = raw(vault.url, get_line(b"/files/a.txt", b"X-Request-Id: <script>%0d%0aX: y"))
    assert status(answer) == 200 and b"<script>" not in head_of(answer)


# -- absolute-form URIs, CONNECT, Host: never an open proxy ---------------------------------------

def test_absolute_form_uris_never_make_vault_an_open_proxy(vault, upstream, canary):
    port = canary.port
    for target in (f"http://127.0.0.1:{port}/x", f"http://localhost:{port}/x",
                   f"http://127.0.0.1:{port}/files/a.txt", f"https://127.0.0.1:{port}/x"):
        answer = raw(vault.url, get_line(target.encode()))
        code = status(answer)
        assert code is None or code < 500, answer[:200]
        if code == 200:  # only ever Vault's own backend, never the named host
            assert answer.endswith(b"hello\n")
    assert canary.log == []


def test_connect_and_targets_without_a_path_are_refused(vault, canary):
    for target in (f"127.0.0.1:{canary.port}", f"localhost:{canary.port}"):
        request = (f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").encode()
        answer = raw(vault.url, request)
        assert status(answer) == 405 and b"no backend serves" not in answer
    assert status(raw(vault.url, get_line(b"*").replace(b"GET", b"OPTIONS"))) in (400, 405)
    assert canary.log == []


def test_the_host_header_routes_nothing_and_appears_in_no_redirect(upstream, make_vault, canary):
    vault = make_vault([http_backend(upstream.url),
                        {"type": "pypi", "config": {"prefix": "/pypi/",
                                                    "base_url": f"{upstream.url}/simple/"}}])
    upstream.add("/a.txt", b"hello\n")
    for host in (f"127.0.0.1:{canary.port}", f"localhost:{canary.port}", "evil.invalid",
                 "a\tb", ""):
        for target in (b"/files/a.txt", b"/x", b"/pypi/simple/Foo"):
            request = (b"GET " + target + b" HTTP/1.1\r\nHost: " + host.encode() +
                       b"\r\nX-Forwarded-Host: evil.invalid\r\nConnection: close\r\n\r\n")
            answer = raw(vault.url, request)
            assert b"evil.invalid" not in head_of(answer) and b"localhost" not in head_of(answer)
    assert canary.log == []


# -- the SSRF canary: crafted paths and hostile upstreams ------------------------------------------

def test_crafted_paths_never_reach_another_host(vault, upstream, canary):
    c = f"127.0.0.1:{canary.port}"
    paths = [f"/files/@{c}/x", f"/files/http:%2F%2F{c}/x", f"/files/http://{c}/x",
             f"//{c}/x", f"/files//{c}/x", f"/files/%2F%2F{c}/x", f"/files/%40{c}/x",
             f"/files/..%2F..%2F{c}/x", f"/files/http%3A%2F%2F{c}%2Fx", f"/files/\\\\{c}/x",
             f"/files/x?url=http://{c}/x", f"/files/x#@{c}/x", f"/files/{c}/x",
             f"/v2/{c}/x/manifests/latest", f"/files/%68ttp://{c}/x"]
    for path in paths:
        answer = raw(vault.url, get_line(path.encode()))
        assert status(answer) is None or status(answer) < 500, (path, answer[:300])
    assert canary.log == []
    assert all(p.startswith("/") for _, p, _ in upstream.log)


def test_a_redirect_to_another_host_is_refused_unless_the_config_allows_it(upstream, make_vault,
                                                                          canary):
    upstream.add("/moved", status=302, location=f"{canary.url}/x")
    upstream.add("/moved-localhost", status=307, location=f"http://localhost:{canary.port}/x")
    refusing = make_vault([http_backend(upstream.url)])
    for path in ("/files/moved", "/files/moved-localhost"):
        assert requests.get(refusing.url + path, timeout=10).status_code == 502
    assert canary.log == []
    allowing = make_vault([http_backend(upstream.url, prefix="/allowed/",
                                        allowed_redirect_hosts=[f"127.0.0.1:{canary.port}"])])
    assert requests.get(f"{allowing.url}/allowed/moved", timeout=10).content == b"canary\n"
    assert [p for _, p, _ in canary.log] == ["/x"]  # the one hop the config names


def test_pypi_files_come_only_from_hosts_the_index_lists(upstream, make_vault, canary):
    body = b"not really a wheel"
    import hashlib
    digest = hashlib.sha256(body).hexdigest()
    canary.add("/evil-1.0.tar.gz", body)
    listed = f"http://localhost:{canary.port}/evil-1.0.tar.gz"
    page = {"meta": {"api-version": "1.1"}, "name": "evil", "files": [
        {"filename": "evil-1.0.tar.gz", "url": listed, "hashes": {"sha256": digest}}]}
    upstream.add("/simple/evil/", json.dumps(page).encode(),
                 headers={"Content-Type": "application/vnd.pypi.simple.v1+json"})
    upstream.add("/simple/other/", json.dumps({**page, "name": "other", "files": []}).encode(),
                 headers={"Content-Type": "application/vnd.pypi.simple.v1+json"})
    vault = make_vault([{"type": "pypi", "config": {"prefix": "/pypi/", "retries": 0,
                                                    "base_url": f"{upstream.url}/simple/"}}])
    # A file the index does not list for that project is never fetched, wherever it points.
    for path in (f"/pypi/files/other/{digest}/evil-1.0.tar.gz",
                 f"/pypi/files/evil/{'0' * 64}/evil-1.0.tar.gz",
                 f"/pypi/files/evil/url-{'0' * 40}/x.tar.gz"):
        assert requests.get(vault.url + path, timeout=10).status_code == 404
    assert canary.log == []
    # The index named the canary for this file: that one URL is fetched, once.
    assert requests.get(f"{vault.url}/pypi/files/evil/{digest}/evil-1.0.tar.gz",
                        timeout=10).content == body
    assert [p for _, p, _ in canary.log] == ["/evil-1.0.tar.gz"]


def test_file_hosts_limits_where_listed_files_may_be(upstream, make_vault, canary):
    page = {"meta": {"api-version": "1.1"}, "name": "evil", "files": [
        {"filename": "evil-1.0.tar.gz", "url": f"http://localhost:{canary.port}/x", "hashes": {}}]}
    upstream.add("/simple/evil/", json.dumps(page).encode(),
                 headers={"Content-Type": "application/vnd.pypi.simple.v1+json"})
    vault = make_vault([{"type": "pypi", "config": {
        "prefix": "/pypi/", "retries": 0, "base_url": f"{upstream.url}/simple/",
        "file_hosts": ["files.example.org"]}}])
    links = requests.get(f"{vault.url}/pypi/simple/evil/", timeout=10,
                         headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json()
    url = requests.compat.urljoin(f"{vault.url}/pypi/simple/evil/", links["files"][0]["url"])
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 502 and "file_hosts" in resp.text
    assert canary.log == []


def test_a_listed_file_host_cannot_redirect_further(upstream, make_vault, canary):
    second = FakeUpstream()
    try:
        second.add("/f-1.0.tar.gz", status=302, location=f"{canary.url}/x")
        page = {"meta": {"api-version": "1.1"}, "name": "f", "files": [
            {"filename": "f-1.0.tar.gz", "url": f"{second.url}/f-1.0.tar.gz", "hashes": {}}]}
        upstream.add("/simple/f/", json.dumps(page).encode(),
                     headers={"Content-Type": "application/vnd.pypi.simple.v1+json"})
        vault = make_vault([{"type": "pypi", "config": {"prefix": "/pypi/", "retries": 0,
                                                        "base_url": f"{upstream.url}/simple/"}}])
        links = requests.get(f"{vault.url}/pypi/simple/f/", timeout=10,
                             headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json()
        url = links["files"][0]["url"]
        assert requests.get(requests.compat.urljoin(f"{vault.url}/pypi/simple/f/", url),
                            timeout=10).status_code == 502
        assert canary.log == []
    finally:
        second.stop()


def registry_on(upstream: FakeUpstream, **config: object) -> dict:
    return {"type": "registry-v2", "config": {"prefix": "/hub/", "base_url": upstream.url,
                                              "retries": 0, **config}}


def test_a_token_realm_on_another_host_is_refused_unless_configured(upstream, make_vault, canary):
    realm = f'Bearer realm="http://localhost:{canary.port}/token",service="s"'
    upstream.add("/v2/team/app/manifests/v1", status=401, headers={"WWW-Authenticate": realm})
    refusing = make_vault([registry_on(upstream)])
    url = f"{refusing.url}/v2/hub/team/app/manifests/v1"
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 502 and "token_realm_hosts" in resp.text
    assert canary.log == []
    canary.add("/token?service=s&scope=repository%3Ateam%2Fapp%3Apull",
               json.dumps({"token": "t"}).encode())
    allowing = make_vault([registry_on(upstream, prefix="/trusting/",
                                       token_realm_hosts=["localhost"])])
    requests.get(f"{allowing.url}/v2/trusting/team/app/manifests/v1", timeout=10)
    assert [p.split("?")[0] for _, p, _ in canary.log] == ["/token"]


def test_registry_blob_redirects_may_go_anywhere_but_carry_no_credentials(upstream, make_vault,
                                                                          canary):
    body = b"layer bytes"
    import hashlib
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    canary.add("/blob", body)
    upstream.add(f"/v2/team/app/blobs/{digest}", status=307, location=f"{canary.url}/blob")
    vault = make_vault([registry_on(upstream, username="u", password="secret-pw")])
    resp = requests.get(f"{vault.url}/v2/hub/team/app/blobs/{digest}", timeout=10,
                        headers={"Authorization": "Bearer client-secret"})
    assert resp.content == body
    (method, path, headers), = canary.log
    assert path == "/blob" and "authorization" not in {k.lower() for k in headers}
