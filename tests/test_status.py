"""The status page and the catalog over plain HTTP: what they show, the JSON API's bounds and
errors, and that hostile names from upstreams are escaped."""

from __future__ import annotations

import time

import pytest
import requests

from artifact_vault.cache.index import Entry

from .catalog_fixtures import FILE_SIZES, backends, populated  # noqa: F401 (a fixture)
from .conftest import http_backend


def api(vault, path: str = "/-/api/catalog", **params):
    return requests.get(f"{vault.url}{path}", params=params, timeout=30)


def test_the_status_page_shows_every_backend_with_setup_for_the_url_the_browser_used(populated):
    vault = populated.vault
    resp = requests.get(f"{vault.url}/", headers={"Host": "vault.example:9000"}, timeout=30)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/html")
    page = resp.text
    for name in ("files", "pypi", "hub"):
        assert f'id="backend-{name}"' in page
    assert "index-url = http://vault.example:9000/pypi/simple/" in page
    assert "trusted-host = vault.example" in page
    assert "&quot;registry-mirrors&quot;: [\n    &quot;http://vault.example:9000&quot;" in page
    assert 'location = &quot;vault.example:9000/hub&quot;' in page  # podman
    assert "[host.&quot;http://vault.example:9000/v2/hub&quot;]" in page  # containerd
    assert "curl -O http://vault.example:9000/files/" in page
    assert "script-src 'sha256-" in resp.headers["Content-Security-Policy"]
    assert " src=" not in page.replace("<script>", "")  # nothing loaded from anywhere


def test_with_public_url_the_setup_snippets_use_it_not_the_host_header(make_vault, upstream):
    vault = make_vault([http_backend(upstream.url)], public_url="https://vault.example/mirror")
    page = requests.get(f"{vault.url}/", headers={"Host": "other:1"}, timeout=30).text
    assert "curl -O https://vault.example/mirror/files/" in page and "other:1" not in page


def test_a_host_header_that_is_not_a_host_is_not_echoed(make_vault, upstream):
    vault = make_vault([http_backend(upstream.url)])
    page = requests.get(f"{vault.url}/", headers={"Host": 'x"><script>y'}, timeout=30).text
    assert "<script>y" not in page and "x&quot;" not in page


def test_the_status_document_has_sizes_hit_ratio_health_and_most_requested(populated):
    doc = api(populated.vault, "/-/api/status").json()
    assert doc["cache"]["entries"] > 20 and doc["cache"]["bytes"] > sum(FILE_SIZES.values())
    files = next(b for b in doc["backends"] if b["name"] == "files")
    assert files["from_cache"] == 1 and files["from_upstream"] == len(FILE_SIZES)
    assert files["entries"] == len(FILE_SIZES)
    (up,) = files["upstreams"]
    assert up["last_success"] and up["last_error"] is None
    assert {"backend": "files", "artifact": "file03.bin", "hits": 1,
            "size": FILE_SIZES["file03.bin"]} in doc["most_requested"]


def test_upstream_health_shows_the_last_error_and_then_the_recovery(make_vault, upstream):
    vault = make_vault([http_backend(upstream.url)])
    upstream.add("/broken", b"no", status=500)
    upstream.add("/fine", b"yes")
    assert requests.get(f"{vault.url}/files/broken", timeout=30).status_code == 502
    (up,) = api(vault, "/-/api/status").json()["backends"][0]["upstreams"]
    assert up["last_success"] is None and "answered 500" in up["error"]
    assert "failing" in requests.get(f"{vault.url}/", timeout=30).text
    assert requests.get(f"{vault.url}/files/fine", timeout=30).status_code == 200
    (up,) = api(vault, "/-/api/status").json()["backends"][0]["upstreams"]
    assert up["last_success"] >= up["last_error"]


def test_the_summary_lists_each_backend_with_its_item_count(populated):
    doc = api(populated.vault).json()
    assert {(b["name"], b["kind"], b["items"]) for b in doc["backends"]} == {
        ("files", "path", 12), ("pypi", "project", 2), ("hub", "image", 3)}


def test_pages_hold_per_page_items_and_end_after_the_last(populated):
    vault = populated.vault
    pages = [api(vault, backend="files", per_page=5, page=n).json() for n in (1, 2, 3, 4)]
    names = [[i["name"] for i in p["items"]] for p in pages]
    assert [len(n) for n in names] == [5, 5, 2, 0]
    assert sum(names, []) == sorted(FILE_SIZES)
    assert {(p["total"], p["pages"]) for p in pages} == {(12, 3)}


@pytest.mark.parametrize("params", [
    {"page": "0"}, {"page": "-1"}, {"page": "x"}, {"per_page": "0"}, {"per_page": "201"},
    {"per_page": "²"}, {"sort": "random"}, {"sort": "name;drop table entries"}, {"q": "x" * 201}])
def test_bad_parameters_are_a_400(make_vault, upstream, params):
    vault = make_vault([http_backend(upstream.url)])
    resp = api(vault, backend="files", **params)
    assert resp.status_code == 400, resp.text
    assert requests.get(f"{vault.url}/-/catalog", params={"backend": "files", **params},
                        timeout=30).status_code == 400


def test_an_unknown_backend_or_item_is_a_404(make_vault, upstream):
    vault = make_vault([http_backend(upstream.url)])
    assert api(vault, backend="nope").status_code == 404
    assert api(vault, "/-/api/catalog/item", backend="files", name="missing").status_code == 404


def test_writes_to_the_catalog_are_405(make_vault, upstream):
    vault = make_vault([http_backend(upstream.url)])
    assert requests.post(f"{vault.url}/-/api/catalog", timeout=30).status_code == 405


def test_a_search_narrows_and_sorting_by_size_orders_by_size(populated):
    vault = populated.vault
    found = api(vault, backend="files", q="FILE1").json()
    assert [i["name"] for i in found["items"]] == ["file10.bin", "file11.bin"]
    by_size = api(vault, backend="files", sort="size", per_page=50).json()["items"]
    assert [i["size"] for i in by_size] == sorted(FILE_SIZES.values(), reverse=True)
    assert api(vault, backend="files", q="%").json()["total"] == 0  # literal, not a wildcard


def test_images_show_tags_platforms_and_the_size_of_their_layers(populated):
    vault, sizes = populated.vault, populated.image_sizes
    items = {i["name"]: i for i in api(vault, backend="hub").json()["items"]}
    assert set(items) == {"team/app", "team/multi", "tools/lint"}
    assert sorted(items["team/app"]["tags"]) == ["v1", "v2"]
    assert items["team/app"]["platforms"] == ["linux/amd64"]
    layers = sizes["team/app:v1"] + sizes["team/app:v2"]
    assert items["team/app"]["image_size"] == layers
    assert items["team/multi"]["platforms"] == ["linux/amd64", "linux/arm64"]
    detail = api(vault, "/-/api/catalog/item", backend="hub", name="team/multi").json()
    (tag,) = detail["tags"]  # the children are shown under their index, not as extra tags
    assert tag["tag"] == "1" and tag["digest"] == populated.multi.digest
    assert tag["size"] == sizes["team/multi:1"] and detail["digests"] == 3


def test_projects_show_versions_and_files(populated):
    vault = populated.vault
    items = {i["name"]: i for i in api(vault, backend="pypi").json()["items"]}
    assert items["alpha"]["versions"] == ["2.0", "1.0"] and items["beta"]["versions"] == ["0.1"]
    detail = api(vault, "/-/api/catalog/item", backend="pypi", name="alpha").json()
    files = {v["version"]: sorted(f["file"] for f in v["files"]) for v in detail["versions"]}
    assert files == {"2.0": ["alpha-2.0-py3-none-any.whl", "alpha-2.0.tar.gz"],
                     "1.0": ["alpha-1.0-py3-none-any.whl"]}


def test_listings_search_the_key_index_and_never_scan_the_table(make_vault, upstream):
    vault = make_vault([http_backend(upstream.url)])
    pages = vault.app._pages  # noqa: SLF001 - the query plan is the point of this test
    for source in pages._browser.sources.values():  # noqa: SLF001
        plan = " ".join(pages._catalog.plan(source.shape))  # noqa: SLF001
        assert "SEARCH entries USING" in plan and "SCAN entries" not in plan, plan


def test_hostile_names_from_upstreams_are_escaped(make_vault, upstream, registry):
    vault = make_vault(backends(upstream, registry))
    index = vault.app.cache.index
    evil = '<script>alert(1)</script>"\'&'
    for key, backend in ((f"hub manifest evil{evil}:tag{evil}", "hub"),
                         (f"pypi file evil{evil}/{'0' * 64}/evil{evil}-1.0.tar.gz", "pypi"),
                         (f"files {upstream.url}/x?{evil}", "files")):
        index.put(Entry(key, backend, 200, "ab" * 32, 10, {}, time.time(), None, time.time()))
    for backend in ("hub", "pypi", "files"):
        listing = requests.get(f"{vault.url}/-/catalog", params={"backend": backend}, timeout=30)
        assert listing.status_code == 200
        assert "<script>alert" not in listing.text and "&lt;script&gt;alert(1)" in listing.text
        (item,) = api(vault, backend=backend).json()["items"]
        detail = requests.get(f"{vault.url}/-/catalog/item", timeout=30,
                              params={"backend": backend, "name": item["name"]})
        assert detail.status_code == 200, detail.text
        assert "<script>alert" not in detail.text and "&lt;script&gt;alert(1)" in detail.text


def test_the_status_for_anyone_leaves_out_upstream_addresses_errors_and_names(make_vault,
                                                                                upstream):
    vault = make_vault([http_backend(upstream.url)])
    upstream.add("/secret-name", b"x")
    upstream.add("/broken", b"no", status=500)
    for path in ("/files/secret-name", "/files/secret-name", "/files/broken"):
        requests.get(f"{vault.url}{path}", timeout=30)
    pages = vault.app._pages  # noqa: SLF001 - what the auth layer calls for anonymous users
    environ = {"REQUEST_METHOD": "GET", "HTTP_HOST": "vault:8080", "wsgi.url_scheme": "http"}
    for path in ("/", "/-/api/status"):
        full = b"".join(pages.reply(environ, "GET", path).body)
        public = b"".join(pages.reply(environ, "GET", path, detailed=False).body)
        assert upstream.url.encode() in full and b"secret-name" in full
        assert b"answered 500" in full
        for private in (upstream.url.encode(), b"secret-name", b"answered 500",
                        b"127.0.0.1"):
            assert private not in public


def test_head_of_the_status_page_has_its_headers_and_no_body(make_vault, upstream):
    vault = make_vault([http_backend(upstream.url)])
    get = requests.get(f"{vault.url}/", timeout=30)
    head = requests.head(f"{vault.url}/", timeout=30)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Type"] == get.headers["Content-Type"]
