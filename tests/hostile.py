"""Hostile-input properties, shared by the CI suite (tests/test_hostile_input.py, default example
counts) and the long fuzz run (bench/fuzz.py, thousands of examples each).

Each property is a plain ``@given`` function built by ``properties(target)``: call it to run
it. What every property says: hostile input gives a domain error (a 4xx, ``ConfigError``,
``UpstreamError`` for a bad upstream page), never an unexpected exception or a 500; no path
maps outside its backend or the cache dir; no upstream URL leaves the backend's host.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import posixpath
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import msgspec
import requests
import urllib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from artifact_vault.app import App, build_app, safe_path, target_path
from artifact_vault.auth import OPEN_PATHS, credentials, hash_token
from artifact_vault.backends.pypi import model
from artifact_vault.backends.pypi.model import parse_page
from artifact_vault.backends.registry import oci
from artifact_vault.backends.registry.auth import parse_challenge
from artifact_vault.cache.blobs import BlobStore
from artifact_vault.config import load_config, parse_config
from artifact_vault.delivery import parse_range
from artifact_vault.errors import (BadRequest, ConfigError, NotFound, RangeNotSatisfiable,
                                   UpstreamError, UpstreamNotFound, VaultError)
from artifact_vault.routing import Router
from artifact_vault.status import PUBLIC
from artifact_vault.upstream import UpstreamResponse

BASE = "http://127.0.0.1:9"  # never contacted: every upstream call is recorded and refused
TOKEN = "av_fuzz-token-that-hypothesis-never-guesses"

# -- strategies --------------------------------------------------------------------------------

_PIECES = ["/", "//", ".", "..", "%2e%2e", "%2E.", "%2f", "%2F", "%5c", "%00", "%", "%zz", "%c0%af",
           "%ff", "\\", "@", ":", "?", "#", ";", "http://127.0.0.1:1/", "//127.0.0.1:1/", "~",
           "\r\n", "\x00", "\t", " ", "é", "\u202e", "manifests/", "blobs/", "sha256:" + "a" * 64,
           "tags/list", "library/", "simple/", "files/", "url-" + "0" * 40 + "/", "a" * 300,
           "ok.bin"]
_MOUNTS = ["/files/ok.bin", "/files/", "/pypi/", "/pypi/simple/", "/pypi/files/", "/v2/", "/v2/hub/", "/hub/",
           "/-/admin/", "/-/api/", "/", "/health", "/ready", "/metrics", ""]
segments = st.one_of(st.sampled_from(_PIECES), st.text(max_size=10),
                     st.from_regex(r"[a-z0-9._-]{1,12}", fullmatch=True))
_WORD = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,10}", fullmatch=True)
_PLAUSIBLE = ["/files/{a}/{b}", "/pypi/simple/{a}/", "/pypi/files/{a}/url-{h40}/{b}",
              "/pypi/files/{a}/{h64}/{b}.whl.metadata", "/v2/hub/{a}/manifests/{b}",
              "/v2/{a}/{b}/blobs/sha256:{h64}", "/v2/{a}/tags/list", "/hub/{a}"]
plausible_paths = st.builds(
    lambda pattern, a, b, hex_, tail: pattern.format(a=a, b=b, h40=hex_[:40], h64=hex_) + tail,
    st.sampled_from(_PLAUSIBLE), _WORD, _WORD, st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    st.one_of(st.just(""), segments))
raw_paths = st.one_of(
    st.builds(lambda mount, parts: mount + "".join(parts), st.sampled_from(_MOUNTS),
              st.lists(segments, max_size=8)),
    plausible_paths)
latin1 = st.text(st.characters(max_codepoint=255), max_size=80)
# Numbers too long for int() (Python refuses strings of over 4300 digits) or for a float.
digits = st.one_of(st.from_regex(r"[0-9]{0,8}", fullmatch=True),
                   st.integers(min_value=300, max_value=6000).map(lambda n: "7" * n))
range_values = st.one_of(
    st.builds(lambda a, b, sp: f"bytes{sp}={sp}{a}{sp}-{sp}{b}", digits, digits,
              st.sampled_from(["", " "])),
    st.builds(lambda a, b, c: f"bytes={a}-{b},{c}-", digits, digits, digits), latin1)
_HEADER_VALUES = {
    "RANGE": range_values,
    "IF_NONE_MATCH": latin1, "IF_MODIFIED_SINCE": latin1, "IF_RANGE": latin1, "ACCEPT": latin1,
    "AUTHORIZATION": st.one_of(latin1, st.builds(lambda s: "Basic " + s, latin1),
                               st.builds(lambda s: "Bearer " + s, latin1)),
    "X_REQUEST_ID": latin1, "HOST": latin1, "X_FORWARDED_HOST": latin1,
}
headers = st.dictionaries(st.sampled_from(sorted(_HEADER_VALUES)), latin1, max_size=4).flatmap(
    lambda d: st.fixed_dictionaries({k: _HEADER_VALUES[k] for k in d}))
methods = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE",
                           "CONNECT", "PROPFIND", "get"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.text(max_size=10), children, max_size=4), max_leaves=20)


_FILE_NAMES = st.one_of(st.text(max_size=30), st.sampled_from([
    "../../../../files/x", "..", ".", "a/b.whl", "x.whl#frag", "x?.tar.gz", "%2e%2e", "a b.whl",
    "pkg-1.0-py3-none-any.whl", "http://127.0.0.1:1/x.whl", "//127.0.0.1:1/x.whl"]))
_FILE_URLS = st.one_of(st.text(max_size=30), st.sampled_from([
    "http://127.0.0.1:1/x.whl", "//127.0.0.1:1/x.whl", "javascript:alert(1)", "../x.whl",
    "/packages/x.whl#sha256=" + "a" * 64, "file:///etc/passwd"]))
_LOWER_HEX = st.from_regex(r"[0-9a-f]{64}", fullmatch=True)
_HEX = st.one_of(_LOWER_HEX, st.from_regex(r"[0-9a-fA-F]{64}", fullmatch=True))
_DECODABLE_FILES = st.fixed_dictionaries(
    {"url": st.sampled_from(["https://files.test/a.whl", "http://files.test/b/c.tar.gz"]),
     "filename": st.from_regex(r"[A-Za-z0-9_.~ -]{3,12}", fullmatch=True),
     "hashes": st.dictionaries(st.sampled_from(["sha256", "md5"]), _LOWER_HEX, max_size=2)},
    optional={"requires-python": st.one_of(st.none(), st.just(">=3.8")),
              "upload-time": st.one_of(st.none(), st.just("2024-01-01T00:00:00Z")),
              "yanked": st.one_of(st.booleans(), st.just("bad")),
              "size": st.one_of(st.none(), st.integers()),
              "core-metadata": st.one_of(st.booleans(),
                                         st.fixed_dictionaries({"sha256": _LOWER_HEX})),
              "data-dist-info-metadata": st.booleans(), "provenance": st.none()})
_OFF_DECODABLE_FILES = st.builds(  # one field off what the decoder alone may take
    lambda entry, off: {**entry, off[0]: off[1]}, _DECODABLE_FILES, st.one_of(
        st.tuples(st.just("url"), st.one_of(_FILE_URLS, st.just("https://files.test/x#y"))),
        st.tuples(st.just("filename"), _FILE_NAMES),
        st.tuples(st.sampled_from(["hashes", "core-metadata"]),
                  st.fixed_dictionaries({"sha256": _HEX})),
        st.tuples(st.just("dist-info-metadata"), st.fixed_dictionaries({"sha256": _LOWER_HEX})),
        st.tuples(st.sampled_from(["requires-python", "upload-time", "yanked"]),
                  st.text(max_size=4)),
        st.tuples(st.sampled_from(["requires-python", "upload-time", "yanked", "filename"]),
                  st.just("")),  # the decoder refuses these; the full parse reads them
        st.tuples(st.sampled_from(["size", "hashes", "core-metadata", "yanked"]), json_values)))
pypi_pages = st.one_of(
    st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"files": st.lists(st.dictionaries(
        st.sampled_from(["url", "filename", "hashes", "yanked", "size", "core-metadata",
                         "requires-python"]), json_values, max_size=7), max_size=4)}).map(
        lambda v: json.dumps(v).encode()),
    st.lists(st.fixed_dictionaries({"url": _FILE_URLS, "filename": _FILE_NAMES, "hashes": st.one_of(
        st.just({}), st.fixed_dictionaries({"sha256": _HEX}))}),
        max_size=4).map(
        lambda files: json.dumps({"meta": {"api-version": "1.1"}, "files": files}).encode()),
    # Entries that the C decoder alone can take (model._decoded), mixed with well-typed ones
    # that are off it in one field or another: the property checks that path against the
    # full parse.
    st.lists(st.one_of(_DECODABLE_FILES, _OFF_DECODABLE_FILES), max_size=4).map(
        lambda files: json.dumps({"meta": {"api-version": "1.1"}, "files": files}).encode()),
    st.lists(st.tuples(_FILE_URLS, _FILE_NAMES)).map(
        lambda links: "".join(f'<a href="{h}" data-yanked="{t}">{t}</a>'
                              for h, t in links).encode()))


manifests = st.one_of(
    st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode()),
    st.lists(st.fixed_dictionaries({"digest": st.one_of(
        st.text(max_size=20), st.from_regex(r"sha256:[0-9a-f]{64}", fullmatch=True))}),
        max_size=3).map(lambda m: json.dumps({"manifests": m}).encode()))


# -- the app under fuzz ------------------------------------------------------------------------

class FuzzTarget:
    """Vault with one backend of each kind, built in-process; upstream calls are recorded and
    answered 404, so the fuzz never leaves this process and every built URL can be checked."""

    def __init__(self, root: Path, auth: bool = False) -> None:
        self.root = root
        self.cache_dir = root / "cache"
        self.calls: list[tuple[str, str, str]] = []  # (backend, expected base URL, URL asked)
        self.pages: dict[str, tuple[bytes, str]] = {}  # project -> (page body, content type)
        self.manifests: dict[str, tuple[bytes, str, str]] = {}  # repo -> (body, type, digest)
        config = {"cache_dir": str(self.cache_dir), "cache": {"min_free": 0},
                  "log_level": "ERROR", "backends": [
                      {"type": "http", "config": {"prefix": "/files/", "base_url": f"{BASE}/base",
                                                  "retries": 0}},
                      {"type": "pypi", "config": {"prefix": "/pypi/", "retries": 0,
                                                  "base_url": f"{BASE}/simple/"}},
                      {"type": "registry-v2", "config": {"prefix": "/hub/", "base_url": BASE,
                                                         "retries": 0, "default": True}}]}
        if auth:
            config["auth"] = {"tokens": [{"name": "t", "hash": hash_token(TOKEN)}]}
        self.app: App = build_app(parse_config(config, env={}))
        for backend in self.app._backends:
            ups = getattr(backend, "_upstreams", None) or [backend._upstream]  # type: ignore[attr-defined]
            for upstream in ups:
                upstream.get = self._recorder(backend.name, upstream.base_url)

    def _recorder(self, backend: str, base: str) -> Callable[..., Any]:
        def get(url: str, *args: Any, **kw: Any) -> Any:
            self.calls.append((backend, base, url))
            if url.endswith("/ok.bin"):  # a real body, so ranges and conditionals are fuzzed
                return _response(url, BODY)
            project = url.rstrip("/").rsplit("/", 1)[-1]
            if backend == "pypi" and project in self.pages:
                return _response(url, *self.pages[project])
            repo = url.split("/v2/", 1)[-1].split("/manifests/", 1)[0]
            if backend == "hub" and "/manifests/" in url and repo in self.manifests:
                body, media_type, digest = self.manifests[repo]
                return _response(url, body, media_type, {"Docker-Content-Digest": digest})
            raise UpstreamNotFound(f"fuzz upstream has no {url}", upstream=BASE)
        return get

    def close(self) -> None:
        self.app.close()

    def call(self, method: str, raw_path: str, query: str = "",
             request_headers: dict[str, str] | None = None) -> int:
        """One request through the WSGI app, as waitress would hand it over; the status."""
        return self.fetch(method, raw_path, request_headers, query)[0]

    def fetch(self, method: str, raw_path: str, request_headers: dict[str, str] | None = None,
              query: str = "") -> tuple[int, bytes]:
        """Status and body of one request through the WSGI app."""
        environ = {"REQUEST_METHOD": method, "REQUEST_URI": raw_path + (f"?{query}" if query else ""),
                   "PATH_INFO": raw_path, "QUERY_STRING": query, "SERVER_NAME": "127.0.0.1",
                   "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
                   "wsgi.input": io.BytesIO(b""), "wsgi.url_scheme": "http",
                   **{f"HTTP_{k}": v for k, v in (request_headers or {}).items()}}
        seen: list[str] = []
        body = self.app(environ, lambda status, hdrs, exc_info=None: seen.append(status))
        chunks = []
        try:
            for chunk in body:
                chunks.append(chunk)
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        return int(seen[0].split()[0]), b"".join(chunks)

    def check_upstream_urls(self, since: int = 0) -> None:
        """Every URL a request made Vault build is on its backend's host, under its base path
        (``since``: only the calls from that index on, those of the example being checked)."""
        for backend, base, url in self.calls[since:]:
            parts, want = urlsplit(url), urlsplit(base)
            assert parts.scheme == want.scheme and parts.netloc == want.netloc, (backend, url)
            assert parts.path.startswith(want.path.rstrip("/") + "/") or parts.path == want.path, (
                backend, url)
            assert "\r" not in url and "\n" not in url, url

    def check_files_inside(self) -> None:
        """Nothing was written anywhere but the cache dir."""
        for dirpath, _, files in os.walk(self.root):
            for name in files:
                path = Path(dirpath, name).resolve()
                assert path.is_relative_to(self.cache_dir.resolve()), path


BODY = bytes(range(256)) * 40


def _response(url: str, body: bytes, content_type: str = "application/octet-stream",
              extra: dict[str, str] | None = None) -> UpstreamResponse:
    resp = requests.Response()
    resp.status_code, resp.url = 200, url
    resp.headers.update({"Content-Length": str(len(body)), "ETag": '"fuzz"',
                         "Content-Type": content_type, **(extra or {}),
                         "Last-Modified": "Sun, 22 Nov 2026 00:00:00 GMT"})
    resp.raw = urllib3.HTTPResponse(body=io.BytesIO(body), preload_content=False,
                                    headers=dict(resp.headers), status=200)
    return UpstreamResponse(resp, urlsplit(url).netloc)


# -- the properties ----------------------------------------------------------------------------

def properties(target: FuzzTarget, guarded: FuzzTarget,
               run: settings | None = None) -> dict[str, Callable[[], None]]:
    """Name -> a runnable hypothesis property (``target``: auth off, ``guarded``: auth on);
    ``run``: settings for a long run (bench/fuzz.py), else Hypothesis' default counts."""
    router = Router(target.app._backends, ["/health", "/ready", "/metrics"])
    blobs = BlobStore(target.cache_dir)
    fast = run or settings(suppress_health_check=list(HealthCheck), deadline=None)

    @fast
    @given(raw_paths)
    def safe_path_stays_in_its_prefix(raw: str) -> None:
        try:
            path = safe_path(raw)
        except BadRequest:
            return
        parts = path.split("/")
        assert ".." not in parts and "." not in parts and "" not in parts[:-1], path
        assert not any(c in path for c in "\\\x00\r\n"), path

    @fast
    @given(raw_paths, st.text(max_size=40))
    def routing_keeps_the_rest_below_the_mount(raw: str, query: str) -> None:
        try:
            route = router.route(raw, query)
        except NotFound:
            return
        assert route.rest == "" or raw.endswith(route.rest)
        if route.backend is not None:
            assert route.mount.startswith("/") and route.mount.endswith("/")

    @fast
    @given(st.text(max_size=80))
    def blob_paths_stay_in_the_cache(digest: str) -> None:
        try:
            path = blobs.path(digest)
        except ValueError:
            return
        assert path.resolve().is_relative_to(blobs.blob_dir.resolve())

    @fast
    @given(methods, raw_paths, st.text(max_size=30).map(lambda q: q.replace("#", "")), headers)
    def the_app_never_answers_500(method: str, raw: str, query: str, hdrs: dict[str, str]) -> None:
        before = len(target.calls)
        status = target.call(method, raw, query, hdrs)
        assert status < 500, (method, raw, query, hdrs, status)
        target.check_upstream_urls(before)

    @fast
    @given(methods, raw_paths, headers)
    def with_auth_on_only_open_paths_answer_without_a_token(method: str, raw: str,
                                                            hdrs: dict[str, str]) -> None:
        status = guarded.call(method, raw, "", hdrs)
        path = target_path(raw)
        if method == "CONNECT" or not path.startswith("/"):
            assert status == 405, (method, raw, status)  # refused before auth: not a proxy
        elif (path.rstrip("/") or "/") in OPEN_PATHS:
            pass  # liveness and readiness are for load balancers, which carry no token
        elif (path.rstrip("/") or "/") in PUBLIC and "AUTHORIZATION" not in hdrs:
            pass  # the reduced status page: no addresses, errors or artifact names
        else:
            assert status in (401, 403), (method, raw, hdrs, status)
        assert status < 500

    @fast
    @given(st.one_of(latin1, st.builds(lambda s: "Bearer " + s, latin1),
                     st.builds(lambda b: "Basic " + b, st.binary(max_size=40).map(
                         lambda b: __import__("base64").b64encode(b).decode()))))
    def authorization_parsing_never_raises(header: str) -> None:
        found = credentials(header)
        assert found is None or (isinstance(found[0], str) and found[1])

    @fast
    @given(st.one_of(st.text(max_size=200), st.builds(
        lambda s, kv: s + " " + ",".join(f'{k}="{v}"' for k, v in kv),
        st.sampled_from(["Bearer", "Basic", "bearer", ""]),
        st.lists(st.tuples(st.text(max_size=8), st.text(max_size=20)), max_size=5))))
    def challenge_parsing_never_raises(header: str) -> None:
        scheme, params = parse_challenge(header)
        assert isinstance(scheme, str) and all(isinstance(v, str) for v in params.values())

    @fast
    @given(pypi_pages, st.sampled_from(["application/vnd.pypi.simple.v1+json", "text/html", ""]))
    def pypi_pages_parse_or_raise_upstream_error(body: bytes, content_type: str) -> None:
        decoded = model._decoded(body, "x")  # the C path, whatever the content type says
        if decoded is not None:
            assert decoded == model._parse_json(msgspec.json.decode(body), f"{BASE}/simple/x/", "x")
        try:
            project = parse_page(body, content_type, f"{BASE}/simple/x/", "x")
        except UpstreamError:
            return
        for f in project.files:
            assert isinstance(f.url, str) and isinstance(f.filename, str)
        if "json" in content_type:  # whichever path parsed it, the full parse agrees
            assert project == model._parse_json(msgspec.json.decode(body), f"{BASE}/simple/x/", "x")

    served_pages = itertools.count()

    @fast
    @given(pypi_pages, st.sampled_from(["application/vnd.pypi.simple.v1+json", "text/html"]),
           st.sampled_from(["application/vnd.pypi.simple.v1+json", "text/html", "*/*"]))
    def served_pypi_pages_link_only_below_their_files_path(body: bytes, upstream_type: str,
                                                           accept: str) -> None:
        name = f"p{next(served_pages)}"
        target.pages[name] = (body, upstream_type)
        page = f"/pypi/simple/{name}/"
        environ_accept = {"ACCEPT": accept}
        status, text = target.fetch("GET", page, environ_accept)
        assert status in (200, 502), (status, body)
        if status != 200:
            return
        fmt = "application/vnd.pypi.simple.v1+json" if accept.endswith("json") else "text/html"
        project = parse_page(text, fmt, f"http://vault{page}", name)
        for f in project.files:
            parts = urlsplit(f.url)
            assert parts.netloc == "vault", f.url
            resolved = posixpath.normpath(unquote(parts.path))
            assert resolved.startswith(f"/pypi/files/{name}/") and resolved.count("/") == 5, (
                f.url, body)

    served_manifests = itertools.count()

    @fast
    @given(manifests, st.one_of(st.sampled_from([*oci.INDEXES, oci.OCI_MANIFEST, ""]),
                                st.text(st.characters(min_codepoint=32, max_codepoint=126),
                                        max_size=40)),
           st.one_of(st.just(""), st.text(max_size=80), manifests.map(
               lambda b: "sha256:" + hashlib.sha256(b).hexdigest())),
           st.one_of(st.none(), latin1))
    def served_manifests_are_byte_for_byte_or_an_error(body: bytes, media_type: str, digest: str,
                                                       accept: str | None) -> None:
        repo, before = f"fuzz/m{next(served_manifests)}", len(target.calls)
        target.manifests[repo] = (body, media_type, digest)
        hdrs = {"ACCEPT": accept} if accept is not None else {}
        status, sent = target.fetch("GET", f"/v2/hub/{repo}/manifests/latest", hdrs)
        assert status < 500 or status == 502, (status, body, media_type, digest)
        if status == 200:
            assert sent == body
        target.check_upstream_urls(before)

    @fast
    @given(st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode()),
                     st.lists(json_values).map(lambda m: json.dumps({"manifests": m}).encode())),
           st.text(max_size=300), st.text(max_size=100))
    def oci_parsing_never_raises_unexpectedly(manifest: bytes, name: str, digest: str) -> None:
        assert all(oci.DIGEST.match(d) for d in oci.children(manifest))
        for check, value in ((oci.check_name, name), (oci.check_digest, digest)):
            try:
                check(value)
            except VaultError as exc:
                assert exc.code
        assert isinstance(oci.accepts(name, oci.OCI_INDEX), bool)

    @fast
    @given(range_values, st.integers(min_value=0, max_value=2**63))
    def ranges_stay_inside_the_body(value: str, size: int) -> None:
        try:
            found = parse_range(value, size)
        except RangeNotSatisfiable:
            return
        if found is not None:
            start, end = found
            assert 0 <= start < end <= size, (value, size, found)

    @fast
    @given(st.dictionaries(st.sampled_from(["backends", "http_port", "cache_dir", "threads",
                                            "log_level", "cache", "auth", "offline", "bogus"]),
                           json_values, max_size=5),
           st.lists(st.fixed_dictionaries({"type": st.sampled_from(["http", "pypi", "registry-v2",
                                                                    "dockerhub", "nope"]),
                                           "config": st.dictionaries(st.sampled_from([
                                               "prefix", "base_url", "ttl", "timeout", "retries",
                                               "upstreams", "headers", "default"]), json_values)}),
                    max_size=2))
    def config_is_valid_or_a_config_error(top: dict[str, Any], backends: list[Any]) -> None:
        data = {**top, "backends": backends} if backends else top
        try:
            parse_config(data, env={})
        except ConfigError as exc:
            assert exc.message

    @fast
    @given(st.sampled_from(["cache.max_size", "cache.min_free", "cache.max_stale",
                            "cache.negative_ttl"]),
           st.one_of(digits, st.builds(lambda d, u: d + u, digits, st.sampled_from(
               ["", "B", "KB", "GiB", "TB", "s", "m", "h", "d", "ms", ".5", "e9"])), json_values))
    def sizes_and_durations_parse_or_raise_a_config_error(key: str, value: Any) -> None:
        section, name = key.split(".")
        try:
            parse_config({"backends": [{"type": "http", "config": {
                "prefix": "/f/", "base_url": BASE}}], section: {name: value}}, env={})
        except ConfigError as exc:
            assert exc.message

    @fast
    @given(st.text(max_size=300))
    def config_files_load_or_raise_a_config_error(text: str) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
            f.write(text)
        try:
            load_config(Path(f.name))
        except ConfigError as exc:
            assert exc.message
        finally:
            os.unlink(f.name)

    found = {name: fn for name, fn in locals().items() if hasattr(fn, "hypothesis")}
    return found
