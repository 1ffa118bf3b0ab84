"""The cache engine alone, with a scripted fetch: verification and commits."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from requests.structures import CaseInsensitiveDict

from artifact_vault.cache import Cache, Policy
from artifact_vault.config import CacheSettings
from artifact_vault.errors import IntegrityError, TransferAborted
from artifact_vault.metrics import Metrics

BODY = b"artifact bytes " * 1000
DIGEST = hashlib.sha256(BODY).hexdigest()


class Scripted:
    def __init__(self, body: bytes, announce: int | None = None) -> None:
        self.status = 200
        self.headers = CaseInsensitiveDict({"content-length": str(announce or len(body))})
        self._body = body

    def chunks(self) -> Iterator[bytes]:
        yield self._body[:1000]
        yield self._body[1000:]

    def close(self) -> None:
        pass


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Cache]:
    c = Cache(tmp_path, CacheSettings(min_free=0), Metrics())
    yield c
    c.close()


def read_all(cache: Cache, policy: Policy, body: bytes) -> bytes:
    fetches = []

    def fetch(validators: object) -> Scripted:
        fetches.append(1)
        return Scripted(body)

    served = cache.get("b", "k", policy, fetch)
    return b"".join(served.open())


def test_a_body_matching_the_expected_digest_is_committed(cache):
    assert read_all(cache, Policy(digest=DIGEST), BODY) == BODY
    entry = cache.index.get("k")
    assert entry is not None and entry.digest == DIGEST and entry.immutable
    assert cache.blobs.has(DIGEST, len(BODY))


def test_a_digest_mismatch_breaks_the_transfer_and_keeps_nothing(cache):
    with pytest.raises(TransferAborted):
        read_all(cache, Policy(digest="0" * 64), BODY)
    assert cache.index.get("k") is None
    assert list(cache.blobs.tmp_dir.iterdir()) == []
    assert not cache.blobs.has(DIGEST, len(BODY))


def test_a_size_different_from_the_expected_one_is_refused_before_any_body(cache):
    with pytest.raises(IntegrityError):
        read_all(cache, Policy(size=5), BODY)
    assert cache.index.get("k") is None


def test_a_fresh_hit_does_not_call_fetch(cache):
    read_all(cache, Policy(ttl=60), BODY)

    def fetch(validators: object) -> Scripted:
        raise AssertionError("fetched again")

    served = cache.get("b", "k", Policy(ttl=60), fetch)
    assert served.cache_status == "HIT" and b"".join(served.open()) == BODY


def test_a_pass_through_body_is_still_verified(tmp_path):
    full = Cache(tmp_path / "full", CacheSettings(min_free=10**18), Metrics())
    try:
        served = full.get("b", "k", Policy(digest="0" * 64), lambda v: Scripted(BODY))
        assert served.cache_status == "BYPASS" and served.size == len(BODY)
        with pytest.raises(TransferAborted):
            b"".join(served.open())
        good = full.get("b", "k", Policy(digest=DIGEST), lambda v: Scripted(BODY))
        assert b"".join(good.open()) == BODY
        assert full.index.totals() == (0, 0)
    finally:
        full.close()
