"""The pypi backend's protocol details, through the real server with a counting upstream."""

from __future__ import annotations

import hashlib
import json
import threading
from urllib.parse import urljoin

import msgspec
import pytest
import requests

from artifact_vault.backends.pypi import model, render
from artifact_vault.backends.pypi.model import parse_page

from .pypi_index import Index, sdist, wheel
from .test_app import raw_request
from .test_pypi_clients import pypi

JSON = "application/vnd.pypi.simple.v1+json"
PIP_ACCEPT = ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
              "text/html; q=0.01")
UV_ACCEPT = ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
             "text/html;q=0.01")


@pytest.mark.parametrize("accept,fmt,expected", [
    (None, None, "text/html"), ("*/*", None, "text/html"), (PIP_ACCEPT, None, JSON),
    (UV_ACCEPT, None, JSON), ("text/html", None, "text/html"),
    ("application/vnd.pypi.simple.v1+html", None, "application/vnd.pypi.simple.v1+html"),
    ("application/vnd.pypi.simple.latest+json", None, JSON),
    (f"{JSON};q=0.1, text/html;q=0.9", None, "text/html"),
    ("text/html", "json", JSON), ("image/png", None, None)])
def test_the_format_is_chosen_by_q_values_and_format_param(accept, fmt, expected):
    assert render.choose(accept, fmt) == expected


def test_html_pages_parse_yanked_requires_python_hashes_and_metadata():
    page = (b'<html><body><a href="../../p/a-1.0.tar.gz#sha256=AB12" data-requires-python='
            b'"&gt;=3.8" data-yanked="bad" data-dist-info-metadata="true">a-1.0.tar.gz</a>'
            b'<a href="https://files.test/a-2.0-py3-none-any.whl">a-2.0-py3-none-any.whl</a>')
    project = parse_page(page, "text/html", "https://index.test/simple/a/", "a")
    first, second = project.files
    assert first.url == "https://index.test/p/a-1.0.tar.gz" and first.hashes == {"sha256": "ab12"}
    assert (first.requires_python, first.yanked, first.core_metadata) == (">=3.8", "bad", True)
    assert second.yanked is False and second.core_metadata is False
    assert project.versions == ("1.0", "2.0")


def test_json_pages_parse_size_upload_time_and_yanked_true():
    doc = (b'{"meta":{"api-version":"1.1"},"name":"a","versions":["1"],"files":[{"filename":'
           b'"a-1.tar.gz","url":"a-1.tar.gz","hashes":{},"yanked":true,"size":5,'
           b'"upload-time":"2024-01-01T00:00:00Z","core-metadata":{"sha256":"AA"}}]}')
    (f,) = parse_page(doc, JSON, "https://index.test/simple/a/", "a").files
    assert (f.url, f.yanked, f.size, f.upload_time) == ("https://index.test/simple/a/a-1.tar.gz",
                                                       True, 5, "2024-01-01T00:00:00Z")
    assert f.core_metadata == {"sha256": "aa"}


def test_a_page_decoded_in_c_is_the_page_the_full_parse_reads():
    """A JSON page is decoded straight into ``File``s when the decoder's checks suffice, and
    left to the full parse when some entry needs more. Both must give the same model."""
    sha = "ab" * 32
    plain = [
        {"filename": "a-1.0.tar.gz", "url": "https://files.test/a-1.0.tar.gz",
         "hashes": {"sha256": sha}, "requires-python": ">=3.8", "yanked": False, "size": 5,
         "upload-time": "2024-01-01T00:00:00Z"},
        {"filename": "a-1.0-py3-none-any.whl", "url": "https://files.test/w.whl",
         "hashes": {"sha256": "cd" * 32}, "requires-python": None, "yanked": "broken",
         "size": 7, "upload-time": None, "core-metadata": {"sha256": "ef" * 32},
         "data-dist-info-metadata": {"sha256": "ef" * 32}, "provenance": None},
        {"filename": "a-1.1.tar.gz", "url": "http://files.test/a-1.1.tar.gz",
         "hashes": {}, "yanked": True, "core-metadata": True, "gpg-sig": False},
        {"filename": "a-1.2.tar.gz", "url": "https://files.test/a-1.2.tar.gz",
         "hashes": {"sha256": "23" * 32, "md5": "0f" * 16}, "core-metadata": False}]
    full_parse_only = [  # each needs the full parse in one way
        {"filename": "a-2.0.tar.gz", "url": "rel/a-2.0.tar.gz", "hashes": {"sha256": sha}},
        {"filename": "a-2.0.tar.gz", "url": "https://files.test/a#frag", "hashes": {}},
        {"filename": "a-2.0.tar.gz", "url": "https://files.test/a", "hashes": {"sha256": "AB"}},
        {"filename": "a/2.1.tar.gz", "url": "https://files.test/x", "hashes": {}},
        {"filename": "..", "url": "https://files.test/dots", "hashes": {"sha256": sha}},
        {"filename": ".", "url": "https://files.test/dot", "hashes": {"sha256": sha}},
        {"filename": "a-2.2.tar.gz", "url": "https://files.test/y"},
        {"filename": "a-2.3.tar.gz", "url": "https://files.test/z", "hashes": {"sha256": sha},
         "requires-python": ["not", "a", "string"]},
        {"filename": "a-2.3.tar.gz", "url": "https://files.test/z", "hashes": {}, "size": True},
        {"filename": "a-2.3.tar.gz", "url": "https://files.test/z", "hashes": {}, "yanked": ""},
        {"filename": "", "url": "https://files.test/empty", "hashes": {}},
        {"filename": "a-2.3.tar.gz", "url": "https://files.test/z", "hashes": {},
         "requires-python": ""},
        {"filename": "a-2.3.tar.gz", "url": "https://files.test/z", "hashes": {},
         "upload-time": ""},
        {"filename": "a-2.3.tar.gz", "url": "https://files.test/z", "hashes": {},
         "core-metadata": "true"},
        {"filename": "a-2.4.tar.gz", "url": "https://files.test/v", "hashes": {},
         "dist-info-metadata": {"sha256": "EF" * 32}}]
    page_url = "https://index.test/simple/a/"
    for extra in [None, *full_parse_only]:
        for head in ({"name": "a", "versions": ["1.0", "2.0"]}, {}):
            doc = {"meta": {"api-version": "1.1"}, **head,
                   "files": plain + ([extra] if extra else [])}
            body = json.dumps(doc).encode()
            full = model._parse_json(json.loads(body), page_url, "a")
            decoded = model._decoded(body, "a")
            assert (decoded is None) == (extra is not None), extra
            assert decoded in (None, full)
            assert parse_page(body, JSON, page_url, "a") == full


def test_json_rendering_tells_what_the_model_holds():
    files = (model.File("a-1.0.tar.gz", "https://files.test/a", {"sha256": "ab" * 32}, ">=3.8",
                        "broken", 5, "2024-01-01T00:00:00Z", {"sha256": "ef" * 32}),
             model.File("a 1.1.tar.gz", "https://files.test/b", {}),
             model.File("a-1.2-py3-none-any.whl", "https://files.test/c", {"sha256": "cd" * 32}))
    project = model.Project("a", ("1.0",), files)
    links = render.Links("http://vault/pypi/files/a/", frozenset(["cd" * 32]))
    back = parse_page(render.project_json(project, links), JSON, "http://vault/pypi/simple/a/", "a")
    assert back.files == tuple(
        msgspec.structs.replace(f, url=url, core_metadata=metadata or False)
        for f, url, metadata in links.each(project))
    doc = json.loads(render.project_json(project, links))
    assert doc["files"][1] == {"filename": "a 1.1.tar.gz", "hashes": {}, "yanked": False,
                               "url": links.url(files[1].id, "a 1.1.tar.gz")}
    assert doc["files"][2]["dist-info-metadata"] == doc["files"][2]["core-metadata"] is True


@pytest.mark.parametrize("names", [["a-1.0.tar.gz", "a-1.0-py3-none-any.whl"],
                                   ["a-1.0.tar.gz", "a 1.1.tar.gz", "a%2F1.2.zip"]])
def test_a_page_renders_each_file_as_its_own_url_says(names):
    """``Links.each`` builds every URL in one loop when no name needs quoting; the result is
    what ``Links.url`` gives file by file, ids included (one upper-case, one missing)."""
    hashes = [{"sha256": "AB" * 32}, {}, {"sha256": "cd" * 32}]
    files = tuple(model.File(n, f"https://files.test/{i}", h)
                  for i, (n, h) in enumerate(zip(names, hashes)))
    project = model.Project("a", (), files)
    links = render.Links("http://vault/pypi/files/a/", frozenset([files[0].id]))
    assert project.ids == tuple(f.id for f in files)
    assert list(links.each(project)) == [
        (f, links.url(f.id, f.filename), True if i == 0 else None) for i, f in enumerate(files)]


@pytest.fixture
def index(upstream):
    idx = Index(upstream, fmt="html")
    idx.add(wheel("alpha", "1.0", requires_python="<4,>=3.8"),
            wheel("alpha", "2.0", yanked="broken <build>"), sdist("alpha", "1.0"),
            wheel("beta", "1.0", upstream_metadata=False))
    return idx


def page(vault, name: str, accept: str | None = None,
         headers: dict[str, str] | None = None) -> requests.Response:
    headers = {**({"Accept": accept} if accept else {}), **(headers or {})}
    return requests.get(f"{vault.url}/pypi/simple/{name}", headers=headers, timeout=10,
                        allow_redirects=False)


def test_non_normalized_names_and_missing_slashes_redirect(index, make_vault):
    vault = make_vault([pypi(index.upstream.url)])
    for path in ("Alpha/", "ALPHA", "alpha", "Alpha.Beta_x/"):
        r = page(vault, path)
        assert r.status_code == 301
    assert page(vault, "Alpha/").headers["Location"] == "/pypi/simple/alpha/"
    assert page(vault, "alpha").headers["Location"] == "/pypi/simple/alpha/"
    assert page(vault, "Alpha.Beta_x/").headers["Location"] == "/pypi/simple/alpha-beta-x/"
    assert index.upstream.log == []


def test_both_formats_come_from_one_upstream_fetch(index, make_vault):
    vault = make_vault([pypi(index.upstream.url)])
    html_page = page(vault, "alpha/")
    json_page = page(vault, "alpha/", PIP_ACCEPT)
    assert html_page.headers["Content-Type"].startswith("text/html")
    assert json_page.headers["Content-Type"] == JSON
    assert html_page.headers["Vary"] == json_page.headers["Vary"] == "Accept"
    assert index.upstream.count("/simple/alpha/") == 1
    assert index.upstream.log[0][2]["Accept"].startswith(JSON)  # Vault's own Accept


def test_pages_are_fetched_gzipd_and_files_as_they_are(index, make_vault):
    """Pages are parsed by Vault, so they may travel compressed (several times smaller: a
    large PyPI page is megabytes); files are kept as the upstream's exact bytes."""
    vault = make_vault([pypi(index.upstream.url)])
    json_page = page(vault, "alpha/", PIP_ACCEPT)
    assert "alpha-1.0-py3-none-any.whl" in json_page.text
    url = urljoin(f"{vault.url}/pypi/simple/alpha/", json_page.json()["files"][0]["url"])
    assert requests.get(url, timeout=10).status_code == 200
    sent = {path: headers.get("Accept-Encoding") for _, path, headers in index.upstream.log}
    assert sent["/simple/alpha/"] == "gzip"
    assert all(enc == "identity" for path, enc in sent.items() if path.startswith("/packages/"))


def test_a_gzipd_page_that_expands_too_far_is_refused(upstream, make_vault, monkeypatch):
    monkeypatch.setattr("artifact_vault.upstream_body._DECODED_MAX", 100_000)
    doc = json.dumps({"meta": {"api-version": "1.1"}, "name": "bomb", "files": [],
                      "padding": " " * 1_000_000}).encode()  # ~1 KB gzip'd
    upstream.add("/simple/bomb/", doc, headers={"Content-Type": JSON}, gzip=True)
    vault = make_vault([pypi(upstream.url)])
    r = page(vault, "bomb/", PIP_ACCEPT)
    assert r.status_code == 502 and "expands past" in r.text
    assert vault.app.cache.index.totals()[0] == 0


def test_a_page_is_parsed_once_when_fetched(index, make_vault, monkeypatch):
    from artifact_vault.backends import pypi as backend

    calls = []

    def counting(*args, **kw):  # noqa: ANN002, ANN003, ANN202
        calls.append(args[3])
        return parse_page(*args, **kw)

    monkeypatch.setattr(backend, "parse_page", counting)
    vault = make_vault([pypi(index.upstream.url)])
    assert page(vault, "alpha/", PIP_ACCEPT).status_code == 200
    assert page(vault, "alpha/").status_code == 200
    assert calls == ["alpha"]  # the check before the commit parsed it; that parse is used


def test_a_page_is_answered_before_its_fsync_and_kept_after_it(index, make_vault, monkeypatch):
    """The page is parsed and verified before it is synced to disk: the client need not wait
    for the fsync (tens of ms while wheels are being written); the page is still kept."""
    import os
    import threading

    from artifact_vault.cache import download

    synced, release = threading.Event(), threading.Event()
    fdatasync = os.fdatasync

    def held(fd: int) -> None:
        synced.set()
        release.wait(30)
        fdatasync(fd)

    monkeypatch.setattr(download.os, "fdatasync", held)
    vault = make_vault([pypi(index.upstream.url)])
    try:
        r = requests.get(f"{vault.url}/pypi/simple/alpha/", headers={"Accept": PIP_ACCEPT},
                         timeout=5)  # the fsync is held for 30 s
        assert r.status_code == 200 and "alpha-1.0-py3-none-any.whl" in r.text
        assert synced.wait(10)  # the fill reaches its (held) fsync, maybe after the answer
    finally:
        release.set()
    assert page(vault, "alpha/", PIP_ACCEPT).headers["X-Cache"] == "HIT"
    assert index.upstream.count("/simple/alpha/") == 1


def test_a_gzipd_page_cut_short_is_a_502_and_not_kept(upstream, make_vault):
    doc = json.dumps({"meta": {"api-version": "1.1"}, "name": "cut", "files": [
        {"filename": f"cut-{i}.tar.gz", "url": f"cut-{i}.tar.gz", "hashes": {}}
        for i in range(2000)]}).encode()
    route = upstream.add("/simple/cut/", doc, headers={"Content-Type": JSON}, gzip=True,
                         reset_at=200)
    vault = make_vault([pypi(upstream.url)])
    assert page(vault, "cut/", PIP_ACCEPT).status_code == 502
    route.reset_at = None
    assert len(page(vault, "cut/", PIP_ACCEPT).json()["files"]) == 2000
    assert upstream.count("/simple/cut/") == 2


def test_pages_keep_hashes_yanked_reasons_and_requires_python(index, make_vault):
    vault = make_vault([pypi(index.upstream.url)])
    text = page(vault, "alpha/").text
    wheel1 = next(d for d in index.dists if d.filename == "alpha-1.0-py3-none-any.whl")
    assert f"#sha256={wheel1.sha256}" in text
    assert 'data-requires-python="&lt;4,&gt;=3.8"' in text
    assert 'data-yanked="broken &lt;build&gt;"' in text
    assert '<meta name="pypi:repository-version" content="1.1">' in text
    doc = page(vault, "alpha/", JSON).json()
    files = {f["filename"]: f for f in doc["files"]}
    assert files["alpha-2.0-py3-none-any.whl"]["yanked"] == "broken <build>"
    assert files["alpha-1.0-py3-none-any.whl"]["requires-python"] == "<4,>=3.8"
    assert doc["versions"] == ["1.0", "2.0"] and doc["meta"]["api-version"] == "1.1"
    assert all(f["url"].startswith("../../files/alpha/") for f in doc["files"])


def test_with_public_url_pages_link_files_by_absolute_url(index, make_vault):
    """pip takes absolute links as they are and runs urljoin on relative ones (a third of its
    time on a large page); the Host header never decides the links, the config does."""
    vault = make_vault([pypi(index.upstream.url)], public_url="https://vault.example/mirror/")
    doc = page(vault, "alpha/", JSON, headers={"Host": "evil.example"}).json()
    base = "https://vault.example/mirror/pypi/files/alpha/"
    assert doc["files"] and all(f["url"].startswith(base) for f in doc["files"])
    assert f'href="{base}' in page(vault, "alpha/").text
    local = doc["files"][0]["url"].replace("https://vault.example/mirror", vault.url)
    assert requests.get(local, timeout=10).status_code == 200


def test_if_none_match_is_answered_from_local_state(index, make_vault):
    vault = make_vault([pypi(index.upstream.url)])
    first = page(vault, "alpha/", JSON)
    again = page(vault, "alpha/", JSON, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.headers["ETag"] == first.headers["ETag"]
    assert "Last-Modified" in first.headers and "Last-Modified" in again.headers
    assert index.upstream.count("/simple/alpha/") == 1


def test_files_are_immutable_verified_and_never_content_encoded(index, make_vault):
    vault = make_vault([pypi(index.upstream.url)])
    doc = page(vault, "alpha/", JSON).json()
    url = next(f["url"] for f in doc["files"] if f["filename"] == "alpha-1.0.tar.gz")
    r = requests.get(f"{vault.url}/pypi/simple/alpha/{url}", timeout=10, stream=True)
    body = r.raw.read()
    assert hashlib.sha256(body).hexdigest() == next(
        d.sha256 for d in index.dists if d.filename == "alpha-1.0.tar.gz")
    assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert "ETag" in r.headers and "Content-Encoding" not in r.headers
    part = requests.get(f"{vault.url}/pypi/simple/alpha/{url}", headers={"Range": "bytes=0-1"},
                        timeout=10)
    assert part.status_code == 206 and part.content == body[:2]
    assert index.upstream.count("/packages/alpha-1.0.tar.gz") == 1


def test_a_head_of_a_cold_file_is_answered_from_the_index_and_starts_its_download(
        upstream, make_vault):
    """uv's HEAD before reading a wheel's metadata by ranges is not held up by the upstream;
    the one download it starts is the one the ranges and the file itself are served from."""
    dist = wheel("gamma", "1.0", upstream_metadata=False)
    Index(upstream).add(dist)  # JSON: the page gives each file's size
    vault = make_vault([pypi(upstream.url)])
    url = urljoin(f"{vault.url}/pypi/simple/gamma/", page(vault, "gamma/", JSON).json()[
        "files"][0]["url"])
    route = upstream.routes["/packages/" + dist.filename]
    route.hold = threading.Event()  # the upstream has not answered yet
    head = requests.head(url, timeout=10)
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(dist.body))
    assert head.headers["Accept-Ranges"] == "bytes"
    assert head.headers["ETag"] == f'"sha256:{dist.sha256}"'
    route.hold.set()
    tail = requests.get(url, headers={"Range": "bytes=-100"}, timeout=10)
    assert tail.status_code == 206 and tail.content == dist.body[-100:]
    vault.settle()
    assert upstream.count("/packages/" + dist.filename) == 1
    full = requests.get(url, timeout=10)
    assert full.headers["X-Cache"] == "HIT" and full.content == dist.body
    assert requests.head(url, timeout=10).headers["X-Cache"] == "HIT"


def test_a_file_whose_hash_does_not_match_the_index_is_a_broken_transfer(index, make_vault,
                                                                        caplog):
    vault = make_vault([pypi(index.upstream.url)])
    doc = page(vault, "alpha/", JSON).json()
    url = next(f["url"] for f in doc["files"] if f["filename"] == "alpha-1.0.tar.gz")
    route = index.upstream.routes["/packages/alpha-1.0.tar.gz"]
    route.body = bytes(reversed(route.body))  # same size, other bytes
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(f"{vault.url}/pypi/simple/alpha/{url}", timeout=10).raise_for_status()
    vault.settle()
    file_id = url.split("/")[4]
    assert not vault.app.cache.cached(f"pypi file alpha/{file_id}/alpha-1.0.tar.gz")
    assert vault.app.cache.index.totals()[0] == 1  # only the page
    (line,) = [r.getMessage() for r in caplog.records if "not caching" in r.getMessage()]
    assert "alpha-1.0.tar.gz" in line and "does not match" in line and file_id in line


def test_metadata_is_passed_through_or_extracted_from_a_cached_wheel(index, make_vault):
    vault = make_vault([pypi(index.upstream.url)])
    doc = page(vault, "beta/", JSON).json()
    (f,) = doc["files"]
    assert "core-metadata" not in f  # upstream has none and the wheel is not cached yet
    file_url = f"{vault.url}/pypi/simple/beta/{f['url']}"
    assert requests.get(file_url + ".metadata", timeout=10).status_code == 404
    requests.get(file_url, timeout=10)
    vault.settle()
    doc = page(vault, "beta/", JSON).json()
    assert doc["files"][0]["core-metadata"] is True
    metadata = requests.get(file_url + ".metadata", timeout=10)
    assert metadata.status_code == 200 and b"Name: beta" in metadata.content
    assert index.upstream.count("/packages/beta-1.0-py3-none-any.whl.metadata") == 0
    assert ('data-dist-info-metadata="true" data-core-metadata="true"'
            in page(vault, "beta/").text)  # both names (PEP 714), in HTML too


def test_upstream_metadata_is_announced_with_its_hash_and_passed_through(index, make_vault):
    vault = make_vault([pypi(index.upstream.url)])
    dist = next(d for d in index.dists if d.filename == "alpha-1.0-py3-none-any.whl")
    sha = hashlib.sha256(dist.metadata).hexdigest()
    (f,) = [f for f in page(vault, "alpha/", JSON).json()["files"]
            if f["filename"] == dist.filename]
    assert f["core-metadata"] == f["dist-info-metadata"] == {"sha256": sha}
    assert (f'data-dist-info-metadata="sha256={sha}" data-core-metadata="sha256={sha}"'
            in page(vault, "alpha/").text)
    url = urljoin(f"{vault.url}/pypi/simple/alpha/", f["url"]) + ".metadata"
    for _ in range(2):
        got = requests.get(url, timeout=10)
        assert got.status_code == 200 and got.content == dist.metadata
    assert index.upstream.count(f"/packages/{dist.filename}.metadata") == 1
    assert index.upstream.count(f"/packages/{dist.filename}") == 0  # no wheel for metadata


def test_an_expired_page_is_revalidated_with_its_etag(index, make_vault):
    """After index_ttl the stored page is checked with If-None-Match: a 304 keeps it, a
    changed page replaces it."""
    vault = make_vault([pypi(index.upstream.url, index_ttl=0)])
    first = page(vault, "alpha/", JSON)
    vault.settle()  # committed: a request during the commit would join it (a HIT)
    second = page(vault, "alpha/", JSON)
    assert second.headers["X-Cache"] == "REVALIDATED" and second.content == first.content
    etag = index.upstream.routes["/simple/alpha/"].etag
    asked = [h for _, path, h in index.upstream.log if path == "/simple/alpha/"]
    assert "If-None-Match" not in asked[0] and asked[1]["If-None-Match"] == etag
    vault.settle()
    index.add(wheel("alpha", "3.0"))  # a new release: a new page and ETag upstream
    third = page(vault, "alpha/", JSON)
    assert "alpha-3.0-py3-none-any.whl" in {f["filename"] for f in third.json()["files"]}


def test_an_unknown_project_is_404_and_remembered(index, make_vault):
    vault = make_vault([pypi(index.upstream.url)])
    assert page(vault, "nope/").status_code == 404
    assert page(vault, "nope/").status_code == 404
    assert index.upstream.count("/simple/nope/") == 1


@pytest.mark.parametrize("path", ["files/alpha/../../etc/passwd", "files/alpha/zz/x.whl",
                                  "files/alpha/" + "a" * 64 + "/not-listed.whl",
                                  "simple/bad name/", "simple/-x-/", "other"])
def test_bad_paths_are_4xx_and_never_reach_the_upstream_for_files(index, make_vault, path):
    vault = make_vault([pypi(index.upstream.url)])
    r = requests.get(f"{vault.url}/pypi/{path}", timeout=10, allow_redirects=False)
    assert 400 <= r.status_code < 500
    assert not [p for _, p, _ in index.upstream.log if p.startswith("/packages/")]


@pytest.mark.parametrize("target", ["/pypi/files/alpha/../../../etc/passwd",
                                    "/pypi/files/alpha/%2e%2e/x.whl",
                                    "/pypi/simple/../simple/alpha/", "/pypi/simple/%2e%2e/"])
def test_dot_segments_sent_as_written_never_reach_the_upstream(index, make_vault, target):
    vault = make_vault([pypi(index.upstream.url)])
    response = raw_request(vault.url, f"GET {target} HTTP/1.1")
    assert response.split(b" ")[1] in (b"400", b"404"), response[:200]
    assert index.upstream.log == []


def test_a_broken_upstream_page_is_a_502_naming_the_problem(upstream, make_vault):
    upstream.add("/simple/bad/", b'{"files": [{"nofilename": 1}]}',
                 headers={"Content-Type": JSON})
    vault = make_vault([pypi(upstream.url)])
    r = page(vault, "bad/")
    assert r.status_code == 502 and "not a valid simple-API page" in r.text


@pytest.mark.parametrize("root_ttl,fetches", [("1h", 1), (0, 2)])
def test_the_project_list_is_kept_for_root_ttl(index, make_vault, root_ttl, fetches):
    vault = make_vault([pypi(index.upstream.url, root_ttl=root_ttl)])
    for _ in range(2):
        assert page(vault, "", JSON).json()["projects"] == [{"name": "alpha"}, {"name": "beta"}]
    assert index.upstream.count("/simple/") == fetches


def test_the_project_list_is_streamed_in_both_formats(index, make_vault):
    vault = make_vault([pypi(index.upstream.url)])
    html_root = requests.get(f"{vault.url}/pypi/simple/", timeout=10)
    assert '<a href="alpha/">alpha</a>' in html_root.text
    json_root = requests.get(f"{vault.url}/pypi/simple/", headers={"Accept": JSON}, timeout=10)
    assert json_root.json()["projects"] == [{"name": "alpha"}, {"name": "beta"}]
    assert index.upstream.count("/simple/") == 1


def test_wrongly_typed_json_fields_are_ignored_not_a_500(upstream, make_vault):
    # Found by tests/hostile.py: "requires-python": [null] reached html.escape() and the page
    # answered 500; a boolean size was passed on as a size.
    page = {"meta": {"api-version": "1.1"}, "name": "odd", "files": [
        {"filename": "odd-1.0.tar.gz", "url": "/packages/odd-1.0.tar.gz", "hashes": {},
         "requires-python": [None], "upload-time": 5, "size": True}]}
    upstream.add("/simple/odd/", json.dumps(page).encode(),
                 headers={"Content-Type": "application/vnd.pypi.simple.v1+json"})
    vault = make_vault([pypi(upstream.url)])
    html = requests.get(f"{vault.url}/pypi/simple/odd/", timeout=10)
    assert html.status_code == 200 and "odd-1.0.tar.gz" in html.text
    (item,) = requests.get(f"{vault.url}/pypi/simple/odd/", timeout=10, headers={
        "Accept": "application/vnd.pypi.simple.v1+json"}).json()["files"]
    assert "requires-python" not in item and "size" not in item and "upload-time" not in item


@pytest.mark.parametrize("filename", ["..", ".", "", "../../../../files/x", "a/b.whl", "a\\b"])
def test_files_whose_names_are_not_one_path_segment_are_left_out(filename):
    # Found by tests/hostile.py: a name like '../../../../files/x' rendered a link that
    # resolved outside the project's files (and could never be served).
    page = json.dumps({"files": [{"filename": filename, "url": "/p/x", "hashes": {}},
                                 {"filename": "ok-1.0.tar.gz", "url": "/p/ok", "hashes": {}}]})
    project = parse_page(page.encode(), "application/vnd.pypi.simple.v1+json",
                         "http://up/simple/x/", "x")
    assert [f.filename for f in project.files] == ["ok-1.0.tar.gz"]
    html = f'<a href="/p/x">{filename}</a><a href="/p/ok-1.0.tar.gz">ok-1.0.tar.gz</a>'
    project = parse_page(html.encode(), "text/html", "http://up/simple/x/", "x")
    assert [f.filename for f in project.files] in (["ok-1.0.tar.gz"], ["x", "ok-1.0.tar.gz"])
