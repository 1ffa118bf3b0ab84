"""The HTTP layer: routing, path safety, Vault's own endpoints, errors, request ids."""

from __future__ import annotations

import socket

import pytest
import requests

from artifact_vault.app import safe_path
from artifact_vault.errors import BadRequest

from .conftest import http_backend


def raw_request(url: str, request_line: str, headers: str = "") -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"{request_line}\r\nHost: x\r\nConnection: close\r\n{headers}\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize("raw", ["a/../b", "../x", "a/./b", "a//b", "%2e%2e/x", "a/%2E%2E/b",
                                 "a%2fb", "a%2Fb", "a%5cb", "a%00b", "a\\b", "a%0d%0ab"])
def test_unsafe_paths_are_refused(raw):
    with pytest.raises(BadRequest):
        safe_path(raw)


@pytest.mark.parametrize("raw,path", [("pool/main/h/hello/hello_2.10-3_amd64.deb",) * 2,
                                      ("foo_1%253a2.0.deb", "foo_1%3a2.0.deb"),
                                      ("dir/", "dir/"), ("a%20b", "a b")])
def test_safe_paths_are_decoded(raw, path):
    assert safe_path(raw) == path


@pytest.mark.parametrize("target", ["/files/../secret", "/files/%2e%2e/secret",
                                    "/files/a%2f..%2fsecret", "/files//etc/passwd",
                                    "/files/.%2e/secret"])
def test_traversal_through_the_server_never_reaches_the_upstream(upstream, make_vault, target):
    upstream.add("/secret", b"nope")
    vault = make_vault([http_backend(upstream.url + "/sub")])
    response = raw_request(vault.url, f"GET {target} HTTP/1.1")
    assert response.split(b" ")[1] in (b"400", b"404")
    assert upstream.log == []


def test_an_absolute_form_request_is_not_proxied_to_its_host(upstream, make_vault):
    canary = type(upstream)()  # a second server that must receive nothing
    try:
        upstream.add("/x", b"from the configured upstream")
        vault = make_vault([http_backend(upstream.url)])
        response = raw_request(vault.url, f"GET {canary.url}/files/x HTTP/1.1")
        assert b"from the configured upstream" in response
        assert canary.log == []
    finally:
        canary.stop()


def test_paths_with_query_strings_reach_the_upstream_with_them(upstream, make_vault):
    upstream.add("/q?a=1", b"query")
    vault = make_vault([http_backend(upstream.url)])
    assert requests.get(f"{vault.url}/files/q?a=1", timeout=10).content == b"query"


def test_unknown_paths_are_404_and_list_the_prefixes(upstream, make_vault):
    vault = make_vault([http_backend(upstream.url)])
    r = requests.get(f"{vault.url}/nothing/here", timeout=10)
    assert r.status_code == 404 and "/files/" in r.text


def test_writes_are_405_with_allow(upstream, make_vault):
    vault = make_vault([http_backend(upstream.url)])
    r = requests.put(f"{vault.url}/files/x", data=b"x", timeout=10)
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD"
    assert r.headers["X-Cache"] == "BYPASS"


def test_health_reports_version_and_uptime(upstream, make_vault):
    vault = make_vault([http_backend(upstream.url)])
    doc = requests.get(f"{vault.url}/health", timeout=10).json()
    assert doc["status"] == "ok" and "version" in doc and doc["uptime_seconds"] >= 0


def test_ready_checks_the_cache_dir_and_index(upstream, make_vault):
    vault = make_vault([http_backend(upstream.url)])
    doc = requests.get(f"{vault.url}/ready", timeout=10).json()
    assert doc == {"ready": True, "cache_dir_writable": True, "index_open": True}


def test_metrics_count_requests_bytes_and_cache_size(upstream, make_vault):
    upstream.add("/m.bin", b"x" * 1234)
    vault = make_vault([http_backend(upstream.url)])
    requests.get(f"{vault.url}/files/m.bin", timeout=10)
    requests.get(f"{vault.url}/files/m.bin", timeout=10)
    # The HIT can be served from the index entry a moment before its fill leaves the table
    # of running fills (the entry goes in first, so that no request starts a second fill).
    vault.settle()
    text = requests.get(f"{vault.url}/metrics", timeout=10).text
    assert 'vault_requests_total{backend="files",cache="HIT",code="200"} 1.0' in text
    assert 'vault_requests_total{backend="files",cache="MISS",code="200"} 1.0' in text
    assert 'vault_upstream_bytes_total{backend="files"} 1234.0' in text
    assert "vault_cache_bytes 1234.0" in text and "vault_cache_entries 1.0" in text
    assert "vault_upstream_latency_seconds_count" in text
    assert "vault_fills_in_progress 0.0" in text


def test_request_id_is_taken_from_the_client_or_made(upstream, make_vault):
    vault = make_vault([http_backend(upstream.url)])
    mine = requests.get(f"{vault.url}/health", headers={"X-Request-Id": "ci-42"}, timeout=10)
    made = requests.get(f"{vault.url}/health", timeout=10)
    assert mine.headers["X-Request-Id"] == "ci-42"
    assert len(made.headers["X-Request-Id"]) == 16


def test_cached_responses_answer_conditionals_ranges_and_head(upstream, make_vault):
    upstream.add("/c.bin", b"0123456789", etag='"e1"',
                 last_modified="Wed, 01 Jan 2025 00:00:00 GMT")
    vault = make_vault([http_backend(upstream.url)])
    url = f"{vault.url}/files/c.bin"
    requests.get(url, timeout=10)
    assert requests.get(url, headers={"If-None-Match": '"e1"'}, timeout=10).status_code == 304
    assert requests.get(url, headers={"If-Modified-Since": "Thu, 02 Jan 2025 00:00:00 GMT"},
                        timeout=10).status_code == 304
    part = requests.get(url, headers={"Range": "bytes=2-4"}, timeout=10)
    assert (part.status_code, part.content) == (206, b"234")
    bad = requests.get(url, headers={"Range": "bytes=50-"}, timeout=10)
    assert (bad.status_code, bad.headers["Content-Range"]) == (416, "bytes */10")
    head = requests.head(url, timeout=10)
    assert (head.status_code, head.headers["Content-Length"], head.content) == (200, "10", b"")
    assert head.headers["ETag"] == '"e1"' and head.headers["X-Cache"] == "HIT"
    assert upstream.count("/c.bin") == 1


def test_gzip_files_are_served_as_stored_bytes(upstream, make_vault):
    upstream.add("/Packages.gz", b"\x1f\x8b\x08fakegzip", headers={"Content-Type": "application/gzip"})
    vault = make_vault([http_backend(upstream.url)])
    r = requests.get(f"{vault.url}/files/Packages.gz", timeout=10, stream=True)
    assert r.raw.read() == b"\x1f\x8b\x08fakegzip"
    assert "Content-Encoding" not in r.headers
    assert upstream.log[0][2].get("Accept-Encoding") == "identity"


def test_a_tls_handshake_on_the_plain_port_is_refused_at_once(upstream, make_vault):
    """docker/skopeo try HTTPS first on an insecure registry; they must fail fast and fall back."""
    vault = make_vault([http_backend(upstream.url)])
    host, port = vault.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40)
        assert s.recv(100) == b""  # closed without waiting for a request line


def test_a_large_body_in_memory_reaches_the_server_in_pieces_and_is_counted_once():
    """waitress moves an output buffer past outbuf_overflow (4 MiB) to a temp file: a large
    project page handed over whole was written to disk and read back to be sent."""
    from artifact_vault.bodies import Whole, wrap_body

    sizes: list[int] = []
    page = bytes(range(256)) * (3 * 4096 + 1)  # 3 MiB and 256 bytes
    body = wrap_body([page], sizes.append)
    pieces = list(body)
    body.close()
    assert b"".join(pieces) == page and max(map(len, pieces)) <= 1024 * 1024
    assert sizes == [len(page)]
    small = wrap_body([b"small"], sizes.append)
    assert isinstance(small, Whole)  # sent without a Python call per piece
