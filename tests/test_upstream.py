"""Upstream edge cases, with ``responses`` standing in for the network."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import responses

from artifact_vault.config_values import build
from artifact_vault.errors import UpstreamError, UpstreamNotFound
from artifact_vault.metrics import Metrics
from artifact_vault.upstream import Upstream, UpstreamSettings

BASE = "https://mirror.test/debian"


def make(**settings: object) -> Upstream:
    config = build(UpstreamSettings, {"prefix": "/d/", "base_url": BASE, "retries": 0, **settings},
                   "config")
    return Upstream("d", config, Metrics())


@responses.activate
def test_a_redirect_on_the_same_host_is_followed():
    responses.get(f"{BASE}/a", status=302, headers={"Location": "/debian/b"})
    responses.get(f"{BASE}/b", body=b"moved")
    resp = make().get(f"{BASE}/a")
    assert b"".join(resp.chunks()) == b"moved"


@responses.activate
def test_a_redirect_to_another_host_is_refused_unless_allowed():
    responses.get(f"{BASE}/a", status=307, headers={"Location": "https://cdn.test/blob"})
    with pytest.raises(UpstreamError, match="cdn.test, which the config does not allow"):
        make().get(f"{BASE}/a")
    assert len(responses.calls) == 1


@responses.activate
def test_credentials_and_configured_headers_never_go_to_another_host():
    responses.get(f"{BASE}/a", status=307, headers={"Location": "https://cdn.test/blob"})
    responses.get("https://cdn.test/blob", body=b"blob")
    up = make(username="u", password="p", headers={"X-Token": "t"},
              allowed_redirect_hosts=["cdn.test"])
    assert b"".join(up.get(f"{BASE}/a").chunks()) == b"blob"
    first, second = responses.calls[0].request, responses.calls[1].request
    assert first.headers["Authorization"].startswith("Basic ") and first.headers["X-Token"] == "t"
    assert "Authorization" not in second.headers and "X-Token" not in second.headers


@responses.activate
def test_a_redirect_loop_ends_in_an_error():
    responses.get(f"{BASE}/loop", status=302, headers={"Location": f"{BASE}/loop"})
    with pytest.raises(UpstreamError, match="redirected more than 5 times"):
        make().get(f"{BASE}/loop")


@responses.activate
def test_5xx_is_retried_then_succeeds():
    responses.get(f"{BASE}/f", status=503)
    responses.get(f"{BASE}/f", body=b"ok")
    assert b"".join(make(retries=1).get(f"{BASE}/f").chunks()) == b"ok"
    assert len(responses.calls) == 2


@responses.activate
def test_4xx_is_not_retried():
    responses.get(f"{BASE}/f", status=403)
    with pytest.raises(UpstreamError, match="answered 403") as info:
        make(retries=3).get(f"{BASE}/f")
    assert info.value.upstream == "mirror.test" and len(responses.calls) == 1


@responses.activate
def test_404_and_410_are_not_found():
    responses.get(f"{BASE}/gone", status=410)
    with pytest.raises(UpstreamNotFound):
        make().get(f"{BASE}/gone")


@responses.activate
def test_error_messages_name_the_host_but_not_the_password():
    responses.get(f"{BASE}/f", status=500)
    with pytest.raises(UpstreamError) as info:
        make(username="u", password="hunter2").get(f"{BASE}/f")
    assert "mirror.test" in info.value.message and "hunter2" not in info.value.message


@pytest.fixture
def tls_upstream(tmp_path):
    """An HTTPS server on 127.0.0.1 with a self-signed certificate; yields (url, cert path)."""
    import ssl
    import subprocess
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:  # noqa: N802
            body = BIG if self.path in ("/big", "/pause") else b"ok"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.path == "/pause":  # 20,000 bytes, a pause, then the rest
                self.wfile.write(body[:20_000])
                self.wfile.flush()
                PAUSED.wait(10)
                body = body[20_000:]
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}", str(cert)
    server.shutdown()
    server.server_close()


def test_tls_uses_the_configured_ca_and_loads_it_once(tls_upstream, monkeypatch):
    import ssl

    url, cert = tls_upstream
    loads = []
    original = ssl.SSLContext.load_verify_locations
    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations",
                        lambda self, *a, **k: (loads.append(a), original(self, *a, **k))[1])
    up = Upstream("t", build(UpstreamSettings, {"prefix": "/t/", "base_url": url,
                                                "ca_bundle": cert, "retries": 0}, "c"), Metrics())
    for _ in range(3):  # HTTP/1.0: a new connection each time
        assert b"".join(up.get(f"{url}/x").chunks()) == b"ok"
    assert len(loads) == 1


BIG = bytes(range(256)) * 2048  # 512 KiB: 32 TLS records
PAUSED = threading.Event()


def test_tls_bytes_already_received_come_in_large_chunks_not_one_per_record(tls_upstream):
    """Each TLS read returns one 16 KiB record; what has already arrived is gathered, so a
    fast upstream costs a few chunks (hash-queue puts, reader wake-ups), not one per record."""
    import time

    url, cert = tls_upstream
    up = Upstream("t", build(UpstreamSettings, {"prefix": "/t/", "base_url": url,
                                                "ca_bundle": cert, "retries": 0}, "c"), Metrics())
    resp = up.get(f"{url}/big")
    time.sleep(0.3)  # the whole body is in the socket buffers by now
    chunks = list(resp.chunks())
    assert b"".join(chunks) == BIG
    assert len(chunks) <= 8, [len(c) for c in chunks]


def test_over_tls_the_bytes_before_a_pause_are_not_held_back_to_gather_more(tls_upstream):
    url, cert = tls_upstream
    up = Upstream("t", build(UpstreamSettings, {"prefix": "/t/", "base_url": url,
                                                "ca_bundle": cert, "retries": 0}, "c"), Metrics())
    PAUSED.clear()
    try:
        chunks = up.get(f"{url}/pause").chunks()
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(next, chunks).result(timeout=5)  # the upstream pauses 10 s
        assert BIG.startswith(first)
    finally:
        PAUSED.set()
    assert first + b"".join(chunks) == BIG


def test_tls_to_an_untrusted_certificate_fails_clearly(tls_upstream):
    url, _ = tls_upstream
    up = Upstream("t", build(UpstreamSettings, {"prefix": "/t/", "base_url": url, "retries": 0},
                             "c"), Metrics())
    with pytest.raises(UpstreamError, match="TLS certificate verification failed"):
        up.get(f"{url}/x")
