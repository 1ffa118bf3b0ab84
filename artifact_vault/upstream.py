"""Talking to one upstream: timeouts, retries with backoff, a redirect policy, auth, no secrets.

Redirects are followed here, by hand, rather than by requests: each hop is checked against
the hosts the config named, and credentials go only to the configured host, never to a CDN
or object store the upstream redirects to. Everything that can go wrong becomes an
``UpstreamError`` that names the upstream host, so the client's error body says who failed.
"""

from __future__ import annotations

import logging
import math
import os
import ssl
import time
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter

from . import __version__
from .config_values import HttpUrl, PositiveInt, SecretStr, Timeout, TimeoutSpec
from .errors import UpstreamError, UpstreamNotFound, UpstreamRateLimited, UpstreamTimeout
from .upstream_body import UpstreamResponse
from .upstream_state import ConnectionLimit

log = logging.getLogger(__name__)
_MAX_REDIRECTS = 5
_BACKOFF_SECONDS = 0.25
# The longest Retry-After honoured: an upstream cannot shut Vault out of it for longer.
_MAX_HOLD_SECONDS = 3600
_REDIRECTS = (301, 302, 303, 307, 308)


@dataclass(frozen=True)
class UpstreamSettings:
    """Settings every backend shares for reaching its upstream."""

    prefix: str
    base_url: HttpUrl
    headers: Mapping[str, SecretStr] = field(default_factory=lambda: types.MappingProxyType({}))
    username: str | None = None
    password: SecretStr | None = None
    timeout: TimeoutSpec = field(default_factory=Timeout)
    retries: int = 2  # for refused connections and 5xx before the first body byte
    verify_tls: bool = True
    ca_bundle: str | None = None  # CA file for this upstream; default: the system's store
    allowed_redirect_hosts: tuple[str, ...] = ()
    offline: bool = False
    max_upstream_connections: PositiveInt = 16  # at once, for the whole backend


class UpstreamObserver(Protocol):
    def upstream_latency(self, backend: str, seconds: float) -> None: ...

    def upstream_error(self, backend: str, reason: str) -> None: ...

    def upstream_ratelimit(self, backend: str, remaining: int) -> None: ...

    def upstream_outcome(self, backend: str, upstream: str, error: str | None) -> None:
        """One upstream call ended: ``error`` is None for a usable answer (a 404 included)."""


class _Retry(Exception):
    def __init__(self, error: UpstreamError) -> None:
        self.error = error


class Authorizer(Protocol):
    """Token auth for an upstream (registries): ``registry.auth.TokenAuth`` is one."""

    def header(self, scope: str | None) -> str | None:
        """The Authorization header to send for ``scope``, if a token is at hand."""

    def answer(self, challenge: str, scope: str | None) -> bool:
        """Obtain a token for a 401's WWW-Authenticate ``challenge``; True to retry."""


@dataclass(frozen=True)
class _Call:
    method: str
    headers: Mapping[str, str]
    allowed: frozenset[str] | None  # None: any host (a registry's blob storage redirect)
    scope: str | None


class Upstream:
    """One configured upstream origin, shared by all requests of one backend."""

    def __init__(self, backend: str, settings: UpstreamSettings, observer: UpstreamObserver,
                 pool_size: int = 32, authorizer: Authorizer | None = None,
                 limit: ConnectionLimit | None = None) -> None:
        self.backend = backend
        self.settings = settings
        self.base_url = settings.base_url
        self.host = urlsplit(settings.base_url).netloc.lower()
        self.authorizer = authorizer
        self._observer = observer
        self._allowed = frozenset({self.host, *(h.lower() for h in settings.allowed_redirect_hosts)})
        # One limit per backend: a backend with several upstreams (pypi) passes its own.
        self.limit = limit or ConnectionLimit(settings.max_upstream_connections,
                                              settings.timeout.connect)
        self.session = requests.Session()
        self.session.trust_env = False  # no ~/.netrc credentials, no surprise proxies
        context = tls_context(settings.verify_tls, settings.ca_bundle)
        adapter = _Adapter(context, pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        # True with our context: requests then adds no CA path of its own to the pools.
        self.verify = settings.verify_tls
        self._hold_until = 0.0  # monotonic: a 429's Retry-After, not yet over

    def close(self) -> None:
        self.session.close()

    def get(self, url: str, headers: Mapping[str, str] | None = None, *,
            also_allow: str | None = None, any_redirect: bool = False, scope: str | None = None,
            method: str = "GET", compressed: bool = False) -> UpstreamResponse:
        """GET (or HEAD) ``url``, following allowed redirects, retrying what is safe.

        ``url`` must be on this upstream's host, or on ``also_allow``: a host that this
        upstream itself named (a PyPI index's file host). ``any_redirect`` lets redirects go
        anywhere (registries send blobs to object storage). Credentials, configured headers
        and tokens go only to this upstream's own host. ``scope`` is the token scope to ask
        an ``Authorizer`` for (``repository:NAME:pull``). ``compressed`` asks for gzip and
        hands the body over decoded: for pages Vault parses itself, which are several times
        smaller compressed (a 6 MB PyPI project page is a fraction of that in gzip)."""
        if compressed:
            headers = {**(headers or {}), "Accept-Encoding": "gzip"}
        allowed = None if any_redirect else (
            self._allowed | {also_allow.lower()} if also_allow else self._allowed)
        call = _Call(method, headers or {}, allowed, scope)
        held = self._hold_until - time.monotonic()
        if held > 0:  # asked to wait: ask again only when the wait is over
            raise UpstreamRateLimited(
                f"upstream {self.host} is rate-limiting us (429); it asked for a pause, "
                f"{held:.0f} s of which remain", upstream=self.host, upstream_status=429,
                retry_after=str(max(1, round(held))))
        permit = self.limit.acquire(self.host)
        try:
            resp = self._attempts(url, call)
        except UpstreamNotFound:  # a clear answer: the upstream works
            permit.release()
            self._observer.upstream_outcome(self.backend, self.host, None)
            raise
        except UpstreamError as exc:
            permit.release()
            self._observer.upstream_outcome(self.backend, self.host, exc.message)
            raise
        except BaseException:
            permit.release()
            raise
        self._observer.upstream_outcome(self.backend, self.host, None)
        resp.permit = permit  # released with the body
        return resp.decoded() if compressed else resp

    def _attempts(self, url: str, call: _Call) -> UpstreamResponse:
        attempts = max(1, self.settings.retries + 1)
        for attempt in range(attempts):
            try:
                return self._follow(url, call)
            except _Retry as retry:
                if attempt + 1 == attempts:
                    raise retry.error from None
                log.info("retrying %s after: %s", self.host, retry.error.message)
                time.sleep(_BACKOFF_SECONDS * 2**attempt)
        raise AssertionError("unreachable")

    def _follow(self, url: str, call: _Call) -> UpstreamResponse:
        # The first hop always goes to a host the config (or the upstream's index) named; only
        # redirects may go further, and then only as far as ``call.allowed`` says.
        allowed: frozenset[str] | None = call.allowed or self._allowed
        challenged = False
        for _ in range(_MAX_REDIRECTS + 1):
            resp = self._send(url, call, allowed)
            if resp.status_code in _REDIRECTS and "location" in resp.headers:
                url = urljoin(url, resp.headers["location"])
                allowed = call.allowed
                resp.close()
                continue
            challenge = resp.headers.get("www-authenticate")
            if (resp.status_code == 401 and challenge and self.authorizer is not None
                    and not challenged and self.authorizer.answer(challenge, call.scope)):
                challenged = True  # retry once with the new token, never loop
                resp.close()
                continue
            return self._judge(resp)
        raise UpstreamError(f"upstream {self.host} redirected more than {_MAX_REDIRECTS} times",
                            upstream=self.host)

    def _send(self, url: str, call: _Call, allowed: frozenset[str] | None) -> requests.Response:
        host = urlsplit(url).netloc.lower()
        if allowed is not None and host not in allowed:
            self._observer.upstream_error(self.backend, "host_not_allowed")
            raise UpstreamError(f"upstream {self.host} led to {host}, which the config "
                                "does not allow (see allowed_redirect_hosts)", upstream=self.host)
        own_host = host == self.host  # credentials and configured headers stay on this host
        send = {"User-Agent": f"artifact-vault/{__version__}", "Accept-Encoding": "identity",
                **(self.settings.headers if own_host else {}), **call.headers}
        auth = None
        token = self.authorizer.header(call.scope) if own_host and self.authorizer else None
        if token:
            send["Authorization"] = token
        elif own_host and self.settings.username is not None:
            auth = (self.settings.username, self.settings.password or "")
        timeout = (self.settings.timeout.connect, self.settings.timeout.read)
        started = time.monotonic()
        try:
            resp = self.session.request(call.method, url, headers=send, auth=auth, timeout=timeout,
                                        stream=True, allow_redirects=False, verify=self.verify)
        except requests.Timeout as exc:
            self._observer.upstream_error(self.backend, "timeout")
            raise _Retry(UpstreamTimeout(f"upstream {host} timed out", upstream=host)) from exc
        except requests.ConnectionError as exc:
            self._observer.upstream_error(self.backend, "unreachable")
            raise _Retry(UpstreamError(f"upstream {host} is unreachable ({_reason(exc)})",
                                       upstream=host)) from exc
        except requests.RequestException as exc:
            self._observer.upstream_error(self.backend, "request")
            raise UpstreamError(f"request to upstream {host} failed ({type(exc).__name__})",
                                upstream=host) from exc
        self._observer.upstream_latency(self.backend, time.monotonic() - started)
        remaining = resp.headers.get("ratelimit-remaining")
        if remaining and remaining.split(";")[0].isdigit():
            self._observer.upstream_ratelimit(self.backend, int(remaining.split(";")[0]))
        return resp

    def _judge(self, resp: requests.Response) -> UpstreamResponse:
        status = resp.status_code
        host = urlsplit(resp.url).netloc.lower()
        if status in (200, 206, 304):
            return UpstreamResponse(resp, host, lambda message: self._observer.upstream_outcome(
                self.backend, self.host, message))
        resp.close()
        if status in (404, 410):
            raise UpstreamNotFound(f"upstream {host} has no {urlsplit(resp.url).path}",
                                   upstream=host, upstream_status=status)
        self._observer.upstream_error(self.backend, f"http_{status}")
        if status == 429:
            wait = _seconds(resp.headers.get("retry-after", ""))
            if wait is not None and host == self.host:
                self._hold_until = time.monotonic() + min(wait, _MAX_HOLD_SECONDS)
            raise UpstreamRateLimited(f"upstream {host} is rate-limiting us (429)",
                                      upstream=host, upstream_status=429,
                                      retry_after=None if wait is None else str(wait))
        error = UpstreamError(f"upstream {host} answered {status}", upstream=host,
                              upstream_status=status)
        if status >= 500:
            raise _Retry(error)
        raise error


def _seconds(retry_after: str) -> int | None:
    """A Retry-After value in seconds: given as seconds, or as an HTTP date (RFC 9110)."""
    if retry_after.isdigit():
        return int(retry_after)
    try:
        when = parsedate_to_datetime(retry_after)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0, math.ceil(when.timestamp() - time.time()))


def tls_context(enabled: bool, ca_bundle: str | None) -> ssl.SSLContext | None:
    """The one TLS context for an upstream: the configured CA file, else the system's store.

    The system store (not requests' bundled certifi) is what an operator manages: a company
    CA or a TLS-inspecting gateway is added there, and curl and apt on the same host trust it
    too. One context per upstream, built once: handing requests a CA *path* makes it reload
    the file for every new connection (50-300 ms of CPU each, bench/pypi_compare.py)."""
    if not enabled:
        return None
    for candidate in (ca_bundle, os.environ.get("REQUESTS_CA_BUNDLE"),
                      os.environ.get("SSL_CERT_FILE"), *_SYSTEM_CA_FILES):
        if candidate and os.path.isfile(candidate):
            return ssl.create_default_context(cafile=candidate)
    return ssl.create_default_context()


class _Adapter(HTTPAdapter):
    """An HTTPAdapter whose pools all use one prepared TLS context."""

    def __init__(self, context: ssl.SSLContext | None, **kw: Any) -> None:
        self._context = context
        super().__init__(**kw)

    def init_poolmanager(self, *args: Any, **kw: Any) -> None:
        if self._context is not None:
            kw["ssl_context"] = self._context
        super().init_poolmanager(*args, **kw)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        if self._context is not None and verify:
            # requests would point every pool at certifi's bundle, to be loaded into our
            # context again for each connection; the context already holds the right CAs.
            conn.cert_reqs, conn.ca_certs, conn.ca_cert_dir = "CERT_REQUIRED", None, None
            return
        super().cert_verify(conn, url, verify, cert)


_SYSTEM_CA_FILES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
                    "/etc/ssl/cert.pem")


def _reason(exc: requests.ConnectionError) -> str:
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "TLS certificate verification failed; see verify_tls and ca_bundle"
    for marker in ("Connection refused", "Name or service not known", "reset by peer",
                   "Network is unreachable", "No route to host"):
        if marker in text:
            return marker.lower()
    return "connection failed"
