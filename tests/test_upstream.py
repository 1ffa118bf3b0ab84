"""Upstream edge cases, with ``responses`` standing in for the network."""

from __future__ import annotations

import pytest
import responses

from artifact_vault.config import build
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
