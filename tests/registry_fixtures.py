"""A real container registry for tests: CNCF distribution 2.8 behind a counting proxy.

What this module gives:

* ``start_registry(tmp, auth=None|"htpasswd"|"token")`` -> ``Registry``: runs
  ``docker-registry serve`` on a free loopback port with a generated config, and a small
  counting reverse proxy in front of it. ``Registry.url``/``.host`` are the proxy's (point
  Vault there); ``.requests`` lists every ``(method, path)`` that went through it.
  ``.stop()``/``.start()`` take both down and bring them back on the same ports with the
  same storage. Fixtures: ``registry``, ``registry_basic``, ``registry_token``,
  ``token_server``, ``make_registry``.
* ``TokenServer``: Docker token auth (``GET /token``), RS256 JWTs with ``x5c``, signed with
  the ``openssl`` CLI. Anonymous: pull only; Basic ``vault:s3cret``: everything asked for.
* ``build_image``/``build_index``: deterministic OCI image layouts written in Python.
* ``push``: ``skopeo copy oci:DIR:TAG docker://BACKEND/NAME:TAG`` straight to the registry
  (not through the proxy, so pushes do not show in ``.requests``).
* ``skopeo_copy``/``skopeo_inspect_raw``: skopeo with a clean environment.

Needs the Debian packages ``docker-registry`` and ``skopeo``, the ``openssl`` CLI, and the
``bcrypt`` package for the htpasswd file.
"""

from __future__ import annotations

import atexit
import base64
import collections
import functools
import gzip
import hashlib
import http.client
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

USER = "vault"
PASSWORD = "s3cret"
CREDS = f"{USER}:{PASSWORD}"
SERVICE = "test-registry"
ISSUER = "test-issuer"

REGISTRY_BIN = "docker-registry"
SKOPEO_BIN = "skopeo"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
REF_NAME = "org.opencontainers.image.ref.name"

# Everything a client may send as Accept for a manifest.
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
              "proxy-authorization", "te", "trailer", "trailers", "transfer-encoding",
              "upgrade", "expect"}


def require_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise RuntimeError(f"missing tools {missing}: "
                           "apt-get install docker-registry skopeo openssl")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# ---------------------------------------------------------------------------------------
# The counting reverse proxy


@dataclass
class ProxyRecord:
    method: str
    path: str  # without the query
    query: str
    headers: dict[str, str]
    status: int | None = None  # None until the backend answered (or never: 502 -> 502)


class CountingProxy:
    """A reverse proxy on 127.0.0.1 that forwards everything to one backend port.

    Headers (Host included), status and bodies go through unchanged; bodies are streamed
    both ways; only hop-by-hop headers and the framing are the proxy's own. Each request is
    appended to ``records`` before it is forwarded.
    """

    def __init__(self, backend_port: int, port: int = 0,
                 records: list[ProxyRecord] | None = None) -> None:
        self.backend_port = backend_port
        self.records: list[ProxyRecord] = records if records is not None else []
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with proxy._lock:
                    proxy._conns.add(self.connection)

            def finish(self) -> None:
                try:
                    super().finish()
                finally:
                    with proxy._lock:
                        proxy._conns.discard(self.connection)

        # (Expect: 100-continue is answered by BaseHTTPRequestHandler, and not forwarded.)
        def do(self: BaseHTTPRequestHandler) -> None:
            proxy._forward(self)

        for method in ("GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS"):
            setattr(Handler, f"do_{method}", do)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                        daemon=True, name=f"registry-proxy-{self.port}")
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and cut every open client connection."""
        self.server.shutdown()
        self.server.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _forward(self, h: BaseHTTPRequestHandler) -> None:
        split = urllib.parse.urlsplit(h.path)
        record = ProxyRecord(h.command, split.path, split.query, dict(h.headers.items()))
        with self._lock:
            self.records.append(record)
        conn = http.client.HTTPConnection("127.0.0.1", self.backend_port, timeout=120)
        try:
            try:
                self._send_request(h, conn)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                record.status = 502
                body = f"counting proxy: backend failed: {exc!r}\n".encode()
                h.send_response_only(502)
                h.send_header("Content-Type", "text/plain")
                h.send_header("Content-Length", str(len(body)))
                h.send_header("Connection", "close")
                h.end_headers()
                if h.command != "HEAD":
                    h.wfile.write(body)
                h.close_connection = True
                return
            record.status = resp.status
            self._send_response(h, resp)
        except (BrokenPipeError, ConnectionResetError, OSError, http.client.HTTPException):
            h.close_connection = True
        finally:
            conn.close()

    @staticmethod
    def _send_request(h: BaseHTTPRequestHandler, conn: http.client.HTTPConnection) -> None:
        chunked = "chunked" in h.headers.get("Transfer-Encoding", "").lower()
        length = int(h.headers.get("Content-Length") or 0) if not chunked else 0
        conn.putrequest(h.command, h.path, skip_host=True, skip_accept_encoding=True)
        for key, value in h.headers.items():
            if key.lower() not in HOP_BY_HOP:
                conn.putheader(key, value)
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        if chunked:
            while True:
                line = h.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while h.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers: dropped
                    conn.send(b"0\r\n\r\n")
                    break
                data = h.rfile.read(size)
                h.rfile.readline(3)  # CRLF after the chunk
                conn.send(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            remaining = length
            while remaining > 0:
                data = h.rfile.read(min(remaining, 65536))
                if not data:
                    raise ConnectionResetError("client closed mid-body")
                conn.send(data)
                remaining -= len(data)

    @staticmethod
    def _send_response(h: BaseHTTPRequestHandler, resp: http.client.HTTPResponse) -> None:
        no_body = h.command == "HEAD" or resp.status in (204, 304) or resp.status < 200
        has_length = resp.getheader("Content-Length") is not None
        chunked_out = not no_body and not has_length
        h.send_response_only(resp.status, resp.reason)
        for key, value in resp.getheaders():
            if key.lower() not in HOP_BY_HOP:
                h.send_header(key, value)
        if chunked_out:
            h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        if no_body:
            h.wfile.flush()
            return
        while True:
            data = resp.read1(65536)
            if not data:
                break
            if chunked_out:
                h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            else:
                h.wfile.write(data)
        if chunked_out:
            h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()  # a backend that ends early raises IncompleteRead: connection closed


# ---------------------------------------------------------------------------------------
# The token server


@functools.lru_cache(maxsize=None)
def _key_and_cert(subject: str) -> tuple[bytes, bytes]:
    """An RSA key and its self-signed cert (PEM), made once per process: keygen is slow."""
    with tempfile.TemporaryDirectory(prefix="token-key-") as tmp:
        key, cert = Path(tmp) / "key.pem", Path(tmp) / "cert.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
                        "-days", "3650", "-subj", f"/CN={subject}",
                        "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True, timeout=60)
        return key.read_bytes(), cert.read_bytes()


@dataclass
class TokenRequest:
    method: str
    service: str
    scopes: list[str]
    user: str | None  # the Basic user, None when anonymous
    granted: list[dict[str, Any]]
    status: int


class TokenServer:
    """Docker registry token auth on 127.0.0.1 (``GET /token`` and OAuth2 ``POST /token``).

    Tokens are JWTs signed RS256 (openssl) with the chain in the ``x5c`` header; the
    registry trusts ``cert_path``. Anonymous clients get ``pull`` only; ``vault:s3cret``
    gets every action it asks for; wrong credentials get a 401.
    """

    def __init__(self, workdir: Path, expires_in: int = 300, issuer: str = ISSUER,
                 users: dict[str, str] | None = None) -> None:
        require_tools("openssl")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.expires_in = expires_in
        self.issuer = issuer
        self.users = dict(users) if users is not None else {USER: PASSWORD}
        self.key_path = self.workdir / "token-key.pem"
        self.cert_path = self.workdir / "token-cert.pem"
        key, cert = _key_and_cert(issuer)
        self.key_path.write_bytes(key)
        self.cert_path.write_bytes(cert)
        pem = self.cert_path.read_text()
        der_b64 = "".join(line for line in pem.splitlines() if line and "-----" not in line)
        self.x5c = [der_b64]  # standard base64 of the DER certificate
        self.requests: list[TokenRequest] = []
        self._lock = threading.Lock()
        server_self = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                server_self._serve(self)

            def do_POST(self) -> None:  # noqa: N802
                server_self._serve(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.realm = f"{self.url}/token"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True,
                         name=f"token-server-{self.port}").start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": self.x5c}
        signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                         + _b64url(json.dumps(claims, separators=(",", ":")).encode()))
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key_path)],
                             input=signing_input.encode(), capture_output=True, check=True,
                             timeout=30).stdout
        return signing_input + "." + _b64url(sig)

    def issue(self, service: str, access: list[dict[str, Any]],
              subject: str = "") -> dict[str, Any]:
        """A token response body for these grants (also usable directly by tests)."""
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": subject, "aud": service, "exp": now + self.expires_in,
                  "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        token = self.sign(claims)
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        return {"token": token, "access_token": token, "expires_in": self.expires_in,
                "issued_at": issued}

    def grant(self, scope: str, user: str | None) -> dict[str, Any] | None:
        try:
            rtype, rest = scope.split(":", 1)
            name, actions_s = rest.rsplit(":", 1)
        except ValueError:
            return None
        asked = [a for a in actions_s.split(",") if a]
        if user is not None:
            actions = asked
        else:
            actions = [a for a in asked if a == "pull"] if rtype == "repository" else []
        return {"type": rtype, "name": name, "actions": actions}

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        split = urllib.parse.urlsplit(h.path)
        params = urllib.parse.parse_qs(split.query)
        user: str | None = None
        password: str | None = None
        if h.command == "POST":  # OAuth2 password grant (docker login's other way)
            length = int(h.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(h.rfile.read(length).decode())
            params = {**params, **form}
            if form.get("grant_type", [""])[0] == "password":
                user = form.get("username", [""])[0]
                password = form.get("password", [""])[0]
        auth = h.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user, password = "", None
        service = params.get("service", [""])[0]
        scopes = [s for value in params.get("scope", []) for s in value.split(" ") if s]
        status = 200
        granted: list[dict[str, Any]] = []
        if split.path != "/token":
            status = 404
        elif user is not None and self.users.get(user) != password:
            status = 401
        else:
            granted = [g for g in (self.grant(s, user) for s in scopes) if g is not None]
        with self._lock:
            self.requests.append(TokenRequest(h.command, service, scopes, user, granted, status))
        if status == 200:
            body = json.dumps(self.issue(service, granted, user or "")).encode()
        else:
            body = json.dumps({"errors": [{"code": "UNAUTHORIZED" if status == 401 else "NOT_FOUND",
                                           "message": "no"}]}).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        if status == 401:
            h.send_header("WWW-Authenticate", 'Basic realm="test-token-server"')
        h.end_headers()
        h.wfile.write(body)


# ---------------------------------------------------------------------------------------
# The registry

_LIVE: set[subprocess.Popen[bytes]] = set()  # registries to kill if the interpreter exits


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        if proc.poll() is None:
            proc.kill()


class Registry:
    """One ``docker-registry`` process and the counting proxy in front of it.

    ``url``/``host``: the proxy (what Vault should use). ``backend_url``/``backend_host``:
    the registry itself (pushes go there). ``requests``: ``(method, path)`` of every request
    through the proxy, in order, kept across stop/start; ``log``: the same as ``ProxyRecord``
    with query, request headers and status.
    """

    def __init__(self, workdir: Path, auth: str | None = None,
                 token_server: TokenServer | None = None) -> None:
        if auth not in (None, "htpasswd", "token"):
            raise ValueError(f"auth must be None, 'htpasswd' or 'token', not {auth!r}")
        require_tools(REGISTRY_BIN)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.auth = auth
        self._own_token_server = False
        if auth == "token" and token_server is None:
            token_server = TokenServer(self.workdir / "token")
            self._own_token_server = True
        self.token_server = token_server
        self.creds: str | None = CREDS if auth else None
        self.storage = self.workdir / "storage"
        self.storage.mkdir(exist_ok=True)
        self.log_path = self.workdir / "registry.log"
        self.config_path = self.workdir / "config.yml"
        self.htpasswd_path = self.workdir / "htpasswd"
        self.secret = secrets.token_hex(16)
        self.log: list[ProxyRecord] = []
        self.backend_port = 0
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.proxy: CountingProxy | None = None
        self._closed = False
        if auth == "htpasswd":
            import bcrypt  # tests/requirements.txt; distribution only accepts bcrypt

            # Cost 4: the registry checks the hash on every request, keep that cheap.
            hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
            self.htpasswd_path.write_text(f"{USER}:{hashed}\n")

    # -- addresses -------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def backend_url(self) -> str:
        return f"http://127.0.0.1:{self.backend_port}"

    @property
    def backend_host(self) -> str:
        return f"127.0.0.1:{self.backend_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- counts ----------------------------------------------------------------------
    @property
    def requests(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in list(self.log)]

    @property
    def counts(self) -> collections.Counter[tuple[str, str]]:
        return collections.Counter(self.requests)

    def count(self, method: str, path: str) -> int:
        return sum(1 for r in list(self.log) if r.method == method and r.path == path)

    def blob_gets(self, name: str | None = None) -> collections.Counter[str]:
        """Digest -> number of GETs of /v2/NAME/blobs/DIGEST (any name when None)."""
        out: collections.Counter[str] = collections.Counter()
        for method, path in self.requests:
            if method != "GET" or "/blobs/" not in path or "/blobs/uploads" in path:
                continue
            repo, digest = path[len("/v2/"):].rsplit("/blobs/", 1)
            if name is None or repo == name:
                out[digest] += 1
        return out

    def clear_requests(self) -> None:
        self.log.clear()

    def blob_url(self, name: str, digest: str) -> str:
        return f"{self.url}/v2/{name}/blobs/{digest}"

    def manifest_url(self, name: str, reference: str) -> str:
        return f"{self.url}/v2/{name}/manifests/{reference}"

    # -- lifecycle -------------------------------------------------------------------
    def _write_config(self) -> None:
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn", "formatter": "text", "accesslog": {"disabled": True},
                    "fields": {"service": "registry"}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)},
                        "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": f"127.0.0.1:{self.backend_port}", "secret": self.secret,
                     "headers": {"X-Content-Type-Options": ["nosniff"]}},
        }
        if self.auth == "htpasswd":
            config["auth"] = {"htpasswd": {"realm": "test-registry",
                                           "path": str(self.htpasswd_path)}}
        elif self.auth == "token":
            assert self.token_server is not None
            config["auth"] = {"token": {"realm": self.token_server.realm, "service": SERVICE,
                                        "issuer": self.token_server.issuer,
                                        "rootcertbundle": str(self.token_server.cert_path)}}
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.workdir)}
        log = open(self.log_path, "ab")
        try:
            return subprocess.Popen([REGISTRY_BIN, "serve", str(self.config_path)],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    env=env, cwd=self.workdir, start_new_session=True)
        finally:
            log.close()

    def _wait_ready(self, proc: subprocess.Popen[bytes], timeout: float = 20) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.backend_port, timeout=2)
                conn.request("GET", "/v2/")
                status = conn.getresponse().status
                conn.close()
                if status in (200, 401):
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def start(self) -> None:
        """Start the registry and the proxy; after a stop(), on the same ports if free."""
        if self._closed:
            raise RuntimeError("registry was closed")
        if self.running:
            return
        for attempt in range(5):
            if not self.backend_port or attempt:
                self.backend_port = free_port()
            self._write_config()
            proc = self._spawn()
            _LIVE.add(proc)
            if self._wait_ready(proc):
                self.proc = proc
                break
            self._kill(proc)
        else:
            raise RuntimeError(f"docker-registry did not start:\n{self.log_tail()}")
        try:
            self.proxy = CountingProxy(self.backend_port, self.port, self.log)
        except OSError:  # the old port is taken: take a new one
            self.proxy = CountingProxy(self.backend_port, 0, self.log)
        self.port = self.proxy.port

    def stop(self, graceful: bool = False) -> None:
        """Take the registry down (proxy included: connections are refused, not 502).

        Default SIGKILL (instant); graceful=True sends SIGTERM, which distribution 2.8 takes
        about 0.5 s to act on.
        """
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None
        if self.proc is not None:
            if graceful:
                self._terminate(self.proc)
            else:
                self._kill(self.proc)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        self._closed = True
        if self._own_token_server and self.token_server is not None:
            self.token_server.stop()

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                Registry._kill(proc)
        _LIVE.discard(proc)

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        _LIVE.discard(proc)

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_registry(tmp_dir: Path | str, auth: str | None = None,
                   token_server: TokenServer | None = None) -> Registry:
    """Start a registry (and its proxy) under tmp_dir; stop it with ``.close()``.

    auth: None (open), "htpasswd" (vault:s3cret, bcrypt) or "token" (token_server, or a new
    one owned by the registry when None).
    """
    reg = Registry(Path(tmp_dir), auth=auth, token_server=token_server)
    try:
        reg.start()
    except BaseException:
        reg.close()
        raise
    return reg


# ---------------------------------------------------------------------------------------
# Test images


@dataclass
class Image:
    layout: Path
    name: str | None  # ref name in the layout's index.json (None: not tagged)
    digest: str  # manifest digest
    manifest: bytes
    media_type: str
    config_digest: str
    layer_digests: list[str]
    arch: str
    blobs: dict[str, bytes] = field(default_factory=dict)  # config + layers, by digest

    @property
    def blob_digests(self) -> list[str]:
        return [self.config_digest, *self.layer_digests]


@dataclass
class ImageIndex:
    layout: Path
    name: str | None
    digest: str
    manifest: bytes
    media_type: str
    images: list[Image]  # one per platform, in order

    @property
    def blobs(self) -> dict[str, bytes]:
        return {d: b for img in self.images for d, b in img.blobs.items()}

    @property
    def blob_digests(self) -> list[str]:
        return list(self.blobs)

    def image(self, arch: str) -> Image:
        return next(img for img in self.images if img.arch == arch)


Layer = bytes | dict[str, bytes]


def layer_tar(files: dict[str, bytes], mtime: int = 1_600_000_000) -> bytes:
    """An uncompressed tar with these files, byte for byte the same every time."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path, content in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size = len(content)
            info.mtime = mtime
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def gzip_stable(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def _json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _put_blob(layout: Path, data: bytes) -> str:
    digest = sha256_digest(data)
    path = layout / "blobs" / "sha256" / digest.split(":", 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(data)
    return digest


def _init_layout(layout: Path) -> None:
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    if not (layout / "index.json").exists():
        (layout / "index.json").write_bytes(_json({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                   "manifests": []}))


def _tag(layout: Path, name: str, descriptor: dict[str, Any]) -> None:
    index = json.loads((layout / "index.json").read_text())
    manifests = [m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) != name]
    manifests.append({**descriptor, "annotations": {REF_NAME: name}})
    index["manifests"] = manifests
    (layout / "index.json").write_bytes(_json(index))


def _write_image(layout: Path, layers: list[Layer], arch: str, fmt: str,
                 os_: str = "linux") -> Image:
    if fmt not in ("oci", "docker"):
        raise ValueError(f"fmt must be 'oci' or 'docker', not {fmt!r}")
    oci = fmt == "oci"
    _init_layout(layout)
    blobs: dict[str, bytes] = {}
    layer_descs = []
    diff_ids = []
    for i, layer in enumerate(layers):
        files = layer if isinstance(layer, dict) else {f"file{i}.txt": layer}
        tar = layer_tar(files)
        gz = gzip_stable(tar)
        digest = _put_blob(layout, gz)
        blobs[digest] = gz
        diff_ids.append(sha256_digest(tar))
        layer_descs.append({"mediaType": OCI_LAYER if oci else DOCKER_LAYER,
                            "digest": digest, "size": len(gz)})
    config = _json({"architecture": arch, "os": os_, "created": "2020-09-13T12:26:40Z",
                    "config": {"Env": ["PATH=/usr/bin:/bin"]},
                    "rootfs": {"type": "layers", "diff_ids": diff_ids}})
    config_digest = _put_blob(layout, config)
    blobs[config_digest] = config
    media_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
    manifest = _json({"schemaVersion": 2, "mediaType": media_type,
                      "config": {"mediaType": OCI_CONFIG if oci else DOCKER_CONFIG,
                                 "digest": config_digest, "size": len(config)},
                      "layers": layer_descs})
    digest = _put_blob(layout, manifest)
    return Image(layout, None, digest, manifest, media_type, config_digest,
                 [d["digest"] for d in layer_descs], arch, blobs)


def build_image(layout_dir: Path | str, name: str, layers: list[Layer], arch: str = "amd64",
                fmt: str = "oci") -> Image:
    """Write (or add to) an OCI image layout: one image tagged ``name`` in index.json.

    layers: each a bytes (one file ``file{i}.txt``) or a dict path -> bytes. Gzip'd tars with
    fixed mtimes, so the same input always gives the same digests. fmt "docker" writes a
    Docker schema 2 manifest (with Docker media types) into the layout instead of an OCI one.
    """
    layout = Path(layout_dir)
    img = _write_image(layout, layers, arch, fmt)
    img.name = name
    _tag(layout, name, {"mediaType": img.media_type, "digest": img.digest,
                        "size": len(img.manifest)})
    return img


def build_index(layout_dir: Path | str, name: str,
                platforms: list[tuple[str, list[Layer]]] | None = None,
                fmt: str = "oci") -> ImageIndex:
    """A multi-arch image tagged ``name``: an OCI index (fmt "docker": a manifest list)."""
    if platforms is None:
        platforms = [("amd64", [b"amd64 layer\n"]), ("arm64", [b"arm64 layer\n"])]
    layout = Path(layout_dir)
    images = [_write_image(layout, layers, arch, fmt) for arch, layers in platforms]
    media_type = OCI_INDEX if fmt == "oci" else DOCKER_LIST
    index = _json({"schemaVersion": 2, "mediaType": media_type,
                   "manifests": [{"mediaType": img.media_type, "digest": img.digest,
                                  "size": len(img.manifest),
                                  "platform": {"architecture": img.arch, "os": "linux"}}
                                 for img in images]})
    digest = _put_blob(layout, index)
    _tag(layout, name, {"mediaType": media_type, "digest": digest, "size": len(index)})
    return ImageIndex(layout, name, digest, index, media_type, images)


# ---------------------------------------------------------------------------------------
# skopeo


def skopeo_env(home: Path) -> dict[str, str]:
    """No proxy variables, no auth file, no registries.conf of this machine."""
    home.mkdir(parents=True, exist_ok=True)
    empty_conf = home / "registries.conf"
    empty_conf.write_text("")
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
            "XDG_RUNTIME_DIR": str(home / "run"), "XDG_CONFIG_HOME": str(home / "config"),
            "REGISTRY_AUTH_FILE": str(home / "auth.json"),
            "CONTAINERS_REGISTRIES_CONF": str(empty_conf), "TMPDIR": str(home),
            "LANG": "C.UTF-8"}


def run_skopeo(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``skopeo --insecure-policy ARGS`` in a throwaway HOME; never raises on exit code."""
    require_tools(SKOPEO_BIN)
    with tempfile.TemporaryDirectory(prefix="skopeo-home-") as home:
        regd = Path(home) / "registries.d"
        regd.mkdir()
        return subprocess.run([SKOPEO_BIN, "--insecure-policy", "--registries.d", str(regd), *args],
                              env=skopeo_env(Path(home)), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)


def _docker_ref(ref: str) -> str:
    return ref if ref.startswith("docker://") else f"docker://{ref}"


def skopeo_copy(src_ref: str, dest_dir: Path | str, *extra: str,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``skopeo copy --src-tls-verify=false --retry-times 0 EXTRA docker://SRC dir:DEST``.

    src_ref: "HOST/NAME:TAG" or "HOST/NAME@DIGEST" (a docker:// prefix is allowed). extra:
    e.g. "--src-creds", CREDS or "--all". Returns the CompletedProcess (check returncode).
    """
    return run_skopeo(["copy", "--src-tls-verify=false", "--retry-times", "0", *extra,
                       _docker_ref(src_ref), f"dir:{dest_dir}"], timeout=timeout)


def skopeo_inspect_raw(ref: str, *extra: str, config: bool = False, timeout: float = 60) -> bytes:
    """The raw manifest (config=True: the raw config) of docker://REF; raises on failure."""
    args = ["inspect", "--raw", "--tls-verify=false", "--retry-times", "0"]
    if config:
        args.append("--config")
    result = run_skopeo([*args, *extra, _docker_ref(ref)], timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"skopeo inspect {ref} failed:\n{result.stderr}")
    return result.stdout.encode()


@dataclass
class Pushed:
    ref: str  # NAME:TAG as pushed
    name: str
    tag: str
    digest: str  # manifest digest in the registry
    manifest: bytes
    media_type: str
    blob_digests: list[str]  # config + layers (of every child, for an index pushed with all)
    children: dict[str, bytes] = field(default_factory=dict)  # digest -> child manifest

    def proxied_ref(self, registry: Registry) -> str:
        return f"{registry.host}/{self.name}:{self.tag}"


def _blobs_of(manifest: bytes) -> list[str]:
    doc = json.loads(manifest)
    return [doc["config"]["digest"], *(layer["digest"] for layer in doc.get("layers", []))]


def _source_ref(layout: Path, tag: str, tmp: Path) -> str:
    """oci:LAYOUT:TAG, or for a Docker-typed manifest (which skopeo's oci: transport skips)
    a dir: copy of it, which keeps the manifest and so its digest byte for byte."""
    index = json.loads((layout / "index.json").read_text())
    desc = next((m for m in index["manifests"]
                 if m.get("annotations", {}).get(REF_NAME) == tag), None)
    if desc is None or desc["mediaType"] not in (DOCKER_MANIFEST, DOCKER_LIST):
        return f"oci:{layout}:{tag}"
    blobs = layout / "blobs" / "sha256"

    def read(digest: str) -> bytes:
        return (blobs / digest.split(":", 1)[1]).read_bytes()

    def copy_blobs(manifest: bytes) -> None:
        for digest in _blobs_of(manifest):
            shutil.copyfile(blobs / digest.split(":", 1)[1], tmp / digest.split(":", 1)[1])

    top = read(desc["digest"])
    (tmp / "version").write_text("Directory Transport Version: 1.1\n")
    (tmp / "manifest.json").write_bytes(top)
    if desc["mediaType"] == DOCKER_LIST:
        for child in json.loads(top)["manifests"]:
            data = read(child["digest"])
            (tmp / (child["digest"].split(":", 1)[1] + ".manifest.json")).write_bytes(data)
            copy_blobs(data)
    else:
        copy_blobs(top)
    return f"dir:{tmp}"


def push(source: Path | str | Image | ImageIndex, ref: str, registry: Registry,
         creds: str | None = None, fmt: str = "oci", all: bool = False,  # noqa: A002
         src_tag: str | None = None, through_proxy: bool = False) -> Pushed:
    """Push oci:LAYOUT:TAG to the registry itself (not the proxy) as NAME:TAG; fail loudly.

    source: a layout dir (its ref name is ``src_tag``, default ref's tag) or an Image /
    ImageIndex from build_*. creds: default the registry's (vault:s3cret when it has auth).
    fmt: "oci" keeps the manifest as written, "v2s2" converts it (other digest). all:
    copy every image of an index (else only this machine's platform). through_proxy: push
    via the counting proxy (the pushes then show in ``registry.requests``).
    """
    if isinstance(source, (Image, ImageIndex)):
        layout, src_tag = source.layout, src_tag or source.name
        all = all or isinstance(source, ImageIndex)  # noqa: A001
    else:
        layout = Path(source)
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:
        name, tag = ref, "latest"
    src_tag = src_tag or tag
    creds = creds if creds is not None else registry.creds
    args = ["copy", "--dest-tls-verify=false", "--retry-times", "0", "--quiet"]
    if all:
        args.append("--all")
    if fmt == "v2s2":
        args += ["--format", "v2s2"]
    elif fmt != "oci":
        raise ValueError(f"fmt must be 'oci' or 'v2s2', not {fmt!r}")
    if creds:
        args += ["--dest-creds", creds]
    host = registry.host if through_proxy else registry.backend_host
    dest = f"{host}/{name}:{tag}"
    with tempfile.TemporaryDirectory(prefix="push-src-") as tmp:
        result = run_skopeo([*args, _source_ref(layout, src_tag, Path(tmp)), f"docker://{dest}"],
                            timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"skopeo push to {dest} failed:\n{result.stderr}\n"
                           f"registry log:\n{registry.log_tail()}")
    extra = ["--creds", creds] if creds else []
    manifest = skopeo_inspect_raw(dest, *extra)
    media_type = json.loads(manifest).get("mediaType", "")
    children: dict[str, bytes] = {}
    if media_type in (OCI_INDEX, DOCKER_LIST):
        blobs: list[str] = []
        if all:
            for desc in json.loads(manifest)["manifests"]:
                child = skopeo_inspect_raw(f"{host}/{name}@{desc['digest']}", *extra)
                children[desc["digest"]] = child
                blobs += [d for d in _blobs_of(child) if d not in blobs]
    else:
        blobs = _blobs_of(manifest)
    return Pushed(f"{name}:{tag}", name, tag, sha256_digest(manifest), manifest, media_type,
                  blobs, children)


# ---------------------------------------------------------------------------------------
# pytest fixtures (import them into a test module, or into conftest.py)


@pytest.fixture
def make_registry(tmp_path: Path) -> Iterator[Callable[..., Registry]]:
    """``make_registry(auth=None, token_server=None)``: as many registries as a test wants."""
    started: list[Registry] = []

    def make(auth: str | None = None, token_server: TokenServer | None = None) -> Registry:
        reg = start_registry(tmp_path / f"registry-{len(started)}", auth, token_server)
        started.append(reg)
        return reg

    yield make
    for reg in started:
        reg.close()


@pytest.fixture
def registry(make_registry: Callable[..., Registry]) -> Registry:
    """An open registry (no auth)."""
    return make_registry()


@pytest.fixture
def registry_basic(make_registry: Callable[..., Registry]) -> Registry:
    """A registry with htpasswd auth: vault / s3cret."""
    return make_registry("htpasswd")


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[TokenServer]:
    server = TokenServer(tmp_path / "token-server")
    yield server
    server.stop()


@pytest.fixture
def registry_token(make_registry: Callable[..., Registry], token_server: TokenServer) -> Registry:
    """A registry with token auth from ``token_server`` (also at ``registry.token_server``)."""
    return make_registry("token", token_server)
