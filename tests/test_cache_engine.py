"""The cache engine alone, with a scripted fetch: verification and commits."""

from __future__ import annotations

import errno
import hashlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from requests.structures import CaseInsensitiveDict

from artifact_vault.cache import Cache, Policy
from artifact_vault.cache.streams import Hasher
from artifact_vault.config import CacheSettings
from artifact_vault.errors import IntegrityError, TransferAborted
from artifact_vault.metrics import Metrics

from .conftest import wait_for

BODY = b"artifact bytes " * 1000
DIGEST = hashlib.sha256(BODY).hexdigest()


class Scripted:
    def __init__(self, body: bytes, announce: int | None = None) -> None:
        self.status = 200
        self.host = "scripted"
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
    # Broken mid-body, or (the body is small, and the fill may be checked and failed before
    # the reader opens its file) refused with the upstream's error: never a clean body.
    with pytest.raises((TransferAborted, IntegrityError)):
        read_all(cache, Policy(digest="0" * 64), BODY)
    assert cache.index.get("k") is None
    assert list(cache.blobs.tmp_dir.iterdir()) == []
    assert not cache.blobs.has(DIGEST, len(BODY))


def test_a_mismatch_found_before_the_answer_starts_names_the_upstream(cache):
    """A small body may be fetched and checked before its request gets an answer: the client
    then gets a 502 whose body is this message, and it must say who sent the bad bytes."""
    with pytest.raises(IntegrityError) as raised:
        cache.get_complete("b", "k", Policy(digest="0" * 64), lambda v: Scripted(BODY))
    assert raised.value.upstream == "scripted"
    assert "upstream scripted sent a body of sha256" in raised.value.message


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


def test_the_request_that_starts_a_fill_is_a_miss_even_if_the_commit_comes_first(
        cache, monkeypatch):
    from artifact_vault.cache.fill import Fill

    wait_head = Fill.wait_head

    def slow_wait_head(fill: Fill):  # noqa: ANN202 - the fill thread wins the race: a busy box
        fill.wait_done()
        return wait_head(fill)

    monkeypatch.setattr(Fill, "wait_head", slow_wait_head)
    served = cache.get("b", "k", Policy(ttl=60), lambda _: Scripted(BODY))
    assert served.cache_status == "MISS" and b"".join(served.open()) == BODY
    cache.index.flush_access()
    assert cache.index.get("k").hits == 0  # no hit was counted for it


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


def test_temp_files_of_running_fills_count_against_max_size(tmp_path):
    c = Cache(tmp_path / "budget", CacheSettings(min_free=0, max_size=10_000), Metrics())
    try:
        read_all(c, Policy(), b"x" * 4000)  # one committed entry of 4000 bytes
        assert c.evictor.make_room(5000) is True and c.index.totals()[1] == 4000
        (c.blobs.tmp_dir / "999999999.inflight").write_bytes(b"t" * 3000)  # a fill in flight
        assert c.evictor.make_room(5000) is True
        assert c.index.totals() == (0, 0)  # 4000 + 3000 + 5000 > 10000: the entry had to go
        assert c.evictor.make_room(8000) is False  # 3000 in flight + 8000 can never fit
    finally:
        c.close()


def test_running_totals_match_a_full_recount(tmp_path):
    from artifact_vault.cache.index import Entry, Index

    index = Index(tmp_path / "i.sqlite")
    a, b = "a" * 64, "b" * 64
    index.put(Entry("k1", "x", 200, a, 10))
    index.put(Entry("k2", "x", 200, a, 10))  # same blob under two keys: counted once
    index.put(Entry("k3", "x", 404, None, 0))  # a negative entry: no bytes
    index.put(Entry("k1", "x", 200, b, 7))  # k1 now points elsewhere; a still used by k2
    assert index.totals() == (3, 17)
    index.delete("k2")  # a no longer used
    index.delete("missing")
    assert index.totals() == (2, 7)
    with index._lock:
        index._recount()
    assert index.totals() == (2, 7)
    index.close()


def test_hits_are_counted_in_batches_and_survive_a_refetch(tmp_path):
    from artifact_vault.cache.index import Entry, Index

    index = Index(tmp_path / "i.sqlite")
    index.put(Entry("k", "x", 200, "a" * 64, 10))
    for _ in range(3):
        index.touch("k")
    index.flush_access()
    index.put(Entry("k", "x", 200, "b" * 64, 7))  # refetched: a new body, the same key
    assert index.get("k").hits == 3
    index.close()
    assert Index(tmp_path / "i.sqlite").get("k").hits == 3


def test_the_lookup_memo_keeps_only_the_last_seconds_keys(tmp_path, monkeypatch):
    from artifact_vault.cache import index as index_module

    clock = [1000.0]
    monkeypatch.setattr(index_module.time, "monotonic", lambda: clock[0])
    index = index_module.Index(tmp_path / "i.sqlite")
    for n in range(100):
        index.get(f"old-{n}")
    clock[0] += 1.5
    index.get("new")
    assert set(index._recent) == {"new"}  # memory follows recent keys, not every key seen
    index.close()


def test_lookups_do_not_wait_for_a_write_in_progress(tmp_path):
    """A writer holds the lock across its statement (SQLite lets go of the GIL, and under load
    taking it back is slow): lookups must not queue behind it. Cold installs showed page
    lookups waiting up to a second for the lock."""
    import threading

    from artifact_vault.cache.index import Entry, Index

    index = Index(tmp_path / "i.sqlite")
    index.put(Entry("pypi file six/a/six.whl", "pypi", 200, "a" * 64, 10))
    with index._lock:  # a write that has not finished
        found: list[object] = []
        reader = threading.Thread(target=lambda: found.extend(
            [index.get("pypi file six/a/six.whl"), index.keys_under("pypi file six/")]))
        reader.start()
        reader.join(timeout=10)
        assert not reader.is_alive(), "a lookup waited for the writer's lock"
    assert found[0].digest == "a" * 64 and found[1] == ["pypi file six/a/six.whl"]
    index.close()


def test_a_lookup_that_raced_a_write_is_not_remembered(tmp_path):
    """A lookup reads without the write lock: when a write lands between its read and its
    note in the lookup memo, the memo must not keep the older answer for the next second."""
    from contextlib import contextmanager

    from artifact_vault.cache.index import Entry, Index

    index = Index(tmp_path / "i.sqlite")
    real = index._reader

    @contextmanager
    def racing():
        with real() as db:
            yield db
        index.put(Entry("k", "x", 200, "a" * 64, 10))  # after the read, before the memo

    index._reader = racing
    assert index.get("k") is None  # what it read
    index._reader = real
    assert index.get("k") is not None  # not the remembered "missing"
    index.close()


def test_a_short_write_is_completed_not_ignored(tmp_path, monkeypatch):
    """A raw write may write less than asked (a filling disk): the rest must still be written,
    or the file would be shorter than what was hashed and verified."""
    import builtins

    import artifact_vault.cache.download as download

    class Short:  # writes at most 100 bytes per call, as a nearly full disk may
        def __init__(self, f):
            self._f = f

        def write(self, data):
            return self._f.write(bytes(data)[:100])

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

    monkeypatch.setattr(download, "open", lambda *a, **k: Short(builtins.open(*a, **k)),
                        raising=False)
    c = Cache(tmp_path / "short", CacheSettings(min_free=0), Metrics())
    try:
        assert read_all(c, Policy(digest=DIGEST), BODY) == BODY
        assert c.blobs.path(DIGEST).read_bytes() == BODY
    finally:
        c.close()


@pytest.mark.parametrize("digest", [DIGEST, "0" * 64])
def test_a_spilled_fill_is_still_verified_and_never_committed(cache, monkeypatch, digest):
    """Disk full after the first chunk: the body is passed on, but only whole and verified."""
    import artifact_vault.cache.download as download

    def full_disk(f, chunk):
        if f.tell():
            raise OSError(errno.ENOSPC, "No space left on device")
        f.write(chunk)

    monkeypatch.setattr(download, "_write_all", full_disk)
    if digest == DIGEST:
        assert read_all(cache, Policy(digest=digest), BODY) == BODY
    else:
        with pytest.raises(TransferAborted):
            read_all(cache, Policy(digest=digest), BODY)
    assert cache.index.get("k") is None and cache.index.totals() == (0, 0)
    assert list(cache.blobs.tmp_dir.iterdir()) == []


def test_a_miss_that_finds_the_fill_just_committed_does_not_fetch_again(cache):
    """The race: a request looked the key up (missing) just before a fill committed, and
    reaches the fills table just after the fill left it. The new fill re-reads the index
    under the key's lock (``_filled_elsewhere``) and ends with the committed entry."""
    import time

    read_all(cache, Policy(ttl=60), BODY)  # the fill that committed meanwhile
    while cache.fills_in_progress():  # it has left the fills table
        time.sleep(0.01)

    def fetch(validators: object) -> Scripted:
        raise AssertionError("fetched a second time")

    served = cache._join("b", "k", Policy(ttl=60), fetch, None)
    assert served.cache_status == "HIT" and b"".join(served.open()) == BODY


def test_a_fill_cut_short_by_the_stop_is_one_line_not_a_traceback(tmp_path, caplog,
                                                                    monkeypatch):
    """Fills still running when the cache closes (a stop that timed out, blobs fetched ahead)
    lose their temp file and index: that is expected, not an error worth a traceback."""
    caplog.set_level(logging.INFO, logger="artifact_vault.cache")
    cache = Cache(tmp_path, CacheSettings(min_free=0), Metrics())
    committing, closed = threading.Event(), threading.Event()
    commit = cache.blobs.commit

    def held_commit(temp: Path, digest: str) -> Path:
        committing.set()
        closed.wait(10)
        return commit(temp, digest)

    monkeypatch.setattr(cache.blobs, "commit", held_commit)
    cache.start("b", "k", Policy(digest=DIGEST), lambda v: Scripted(BODY))
    assert committing.wait(10)
    cache.close()  # removes the temp file the commit is about to move
    closed.set()
    wait_for(lambda: not cache.fills_in_progress(), "the fill did not end")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert "fill of k cut short by the stop" in caplog.text


@pytest.mark.parametrize("sizes", [[], [10], [600_000, 448_576], [600_000, 448_577],
                                   [2 << 20], [10, 3 << 20, 10]])
def test_a_body_hashes_alike_inline_or_on_a_thread(sizes):
    """Up to 1 MiB a body is hashed in the fill's own thread (a page, a manifest: a thread of
    its own cost ~1 ms of CPU per fill); past that, on a thread beside the fill."""
    chunks = [bytes([i + 1]) * n for i, n in enumerate(sizes)]
    hasher = Hasher()
    for chunk in chunks:
        hasher.update(chunk)
    assert hasher.hexdigest() == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert (hasher._thread is not None) == (sum(sizes) > 1 << 20)
