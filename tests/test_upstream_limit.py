"""The per-backend cap on concurrent upstream connections (``max_upstream_connections``).

The fake upstream counts the connections it has open and the requests it is answering at
once; the cap must hold for both, every slot must come back however a transfer ends, and
single-flight followers must never wait for a slot.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from artifact_vault.config import parse_config
from artifact_vault.errors import ConfigError

from .conftest import http_backend, vault_config
from .test_cache_engine_e2e import MB, blob


def limit_of(vault):  # the http backend's ConnectionLimit
    return vault.app._backends[0]._upstream.limit


def test_fifty_cold_keys_never_open_more_connections_than_the_cap(upstream, make_vault):
    bodies = {f"/k{i}.bin": blob(20_000, seed=i) for i in range(50)}
    for path, body in bodies.items():
        upstream.add(path, body, delay=0.05)
    vault = make_vault([http_backend(upstream.url, max_upstream_connections=4,
                                     timeout={"connect": "30s", "read": "30s"})])

    def fetch(path: str) -> bool:
        r = requests.get(f"{vault.url}/files{path}", timeout=60)
        return r.status_code == 200 and r.content == bodies[path]

    with ThreadPoolExecutor(50) as pool:
        assert all(pool.map(fetch, bodies))
    assert all(upstream.count(path) == 1 for path in bodies)
    assert upstream.busy_peak <= 4 and upstream.open_peak <= 4
    assert limit_of(vault).peak <= 4
    vault.settle()
    assert limit_of(vault).in_use == 0


def test_waiting_for_a_slot_longer_than_the_connect_timeout_is_a_clear_504(upstream, make_vault):
    gate = threading.Event()
    # Past the 1 MiB the fill reads per chunk, so the client has its headers.
    upstream.add("/hog.bin", blob(2 * MB), gate=gate, gate_at=MB)
    upstream.add("/next.bin", b"next")
    vault = make_vault([http_backend(upstream.url, max_upstream_connections=1,
                                     timeout={"connect": "0.5s", "read": "30s"})])
    try:
        hog = requests.get(f"{vault.url}/files/hog.bin", stream=True, timeout=30)
        r = requests.get(f"{vault.url}/files/next.bin", timeout=30)
        assert r.status_code == 504
        assert "upstream connection limit reached" in r.text and "waited 0.5s" in r.text
    finally:
        gate.set()
    assert hog.raw.read() and upstream.count("/next.bin") == 0
    vault.settle()
    assert requests.get(f"{vault.url}/files/next.bin", timeout=30).content == b"next"


def test_followers_of_one_fill_do_not_need_a_slot(upstream, make_vault):
    body = blob(2_000_000)
    upstream.add("/shared.bin", body, trickle=0.01)
    vault = make_vault([http_backend(upstream.url, max_upstream_connections=1,
                                     timeout={"connect": "0.5s", "read": "30s"})])
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(
            lambda _: requests.get(f"{vault.url}/files/shared.bin", timeout=60), range(10)))
    assert all(r.status_code == 200 and r.content == body for r in results)
    assert upstream.count("/shared.bin") == 1


def test_every_way_a_transfer_ends_gives_its_slot_back(upstream, make_vault):
    upstream.add("/reset.bin", blob(300_000), reset_at=100_000)
    upstream.add("/500", status=500)
    upstream.add("/404", status=404)
    upstream.add("/loop", status=302, location="/loop")
    upstream.add("/away", status=302, location="http://elsewhere.invalid/x")
    upstream.add("/stall.bin", blob(300_000), stall_at=1000, stall=3)
    upstream.add("/big.bin", blob(3_000_000), trickle=0.01)
    upstream.add("/ok.bin", b"ok")
    vault = make_vault([http_backend(upstream.url, max_upstream_connections=1,
                                     timeout={"connect": "1s", "read": "1s"})])
    for path in ("/reset.bin", "/500", "/404", "/loop", "/away", "/stall.bin"):
        try:
            requests.get(f"{vault.url}/files{path}", timeout=30).content
        except requests.RequestException:
            pass  # a broken transfer
        vault.settle()
    client = requests.get(f"{vault.url}/files/big.bin", stream=True, timeout=30)
    client.raw.read(1000)
    client.close()  # the fill goes on without its client, and ends
    vault.settle()
    assert limit_of(vault).in_use == 0
    assert requests.get(f"{vault.url}/files/ok.bin", timeout=30).content == b"ok"


def test_a_pass_through_releases_its_slot_on_head_and_on_a_client_that_leaves(
        upstream, make_vault):
    upstream.add("/p.bin", blob(3_000_000), trickle=0.01)
    vault = make_vault([http_backend(upstream.url, max_upstream_connections=1,
                                     timeout={"connect": "1s", "read": "5s"})],
                       cache={"min_free": "100000TB"})  # nothing fits: every body is passed through
    head = requests.head(f"{vault.url}/files/p.bin", timeout=30)
    assert (head.status_code, head.headers["X-Cache"]) == (200, "BYPASS")
    client = requests.get(f"{vault.url}/files/p.bin", stream=True, timeout=30)
    client.raw.read(1000)
    client.close()
    r = requests.get(f"{vault.url}/files/p.bin", timeout=30)  # waits at most 1s for the slot
    assert r.status_code == 200 and len(r.content) == 3_000_000


def test_the_cap_is_configurable_per_backend_and_at_least_one(tmp_path):
    base = "http://127.0.0.1:9"
    config = parse_config(vault_config(tmp_path, [
        http_backend(base), http_backend(base, prefix="/b/", max_upstream_connections=3),
        {"type": "pypi", "config": {"prefix": "/pypi/", "base_url": base,
                                    "max_upstream_connections": 2}},
        {"type": "registry-v2", "config": {"prefix": "/r/", "base_url": base,
                                           "max_upstream_connections": 5}}]), env={})
    assert [b.settings.max_upstream_connections for b in config.backends] == [16, 3, 2, 5]
    with pytest.raises(ConfigError, match=r"max_upstream_connections: must be a whole number"):
        parse_config(vault_config(tmp_path, [http_backend(base, max_upstream_connections=0)]),
                     env={})
