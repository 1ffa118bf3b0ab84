"""Registry token auth (Docker's token spec): answer a Bearer challenge with a cached token.

A registry answers an unauthenticated request with 401 and ``WWW-Authenticate: Bearer
realm="...",service="...",scope="..."``. We ask the realm for a token (anonymously, or with
the configured credentials as Basic auth), cache it per realm, service and scope until it
expires, and retry the request once with it.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import requests

from ...errors import UpstreamError

log = logging.getLogger(__name__)
_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s"]*))\s*(?:,|$)')
_DEFAULT_EXPIRY = 60  # seconds, per the token spec when the response has no expires_in
_EARLY = 10  # renew this long before expiry, so a token never dies mid-request


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """(scheme, params) of a WWW-Authenticate header; quoted values may contain commas."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        match = _PARAM.match(rest, pos)
        if not match or match.end() == pos:
            break
        value = match[2] if match[2] is not None else match[3]
        params[match[1].lower()] = re.sub(r"\\(.)", r"\1", value)
        pos = match.end()
    return scheme.lower(), params


def same_site(a: str, b: str) -> bool:
    """Whether two hostnames share a registrable domain (auth.docker.io, registry-1.docker.io).

    IP addresses have no domain: only the same address is the same site (comparing their last
    two labels would make 10.0.0.5 and 192.168.0.5 one site)."""
    if a == b:
        return True
    if _is_ip(a) or _is_ip(b):
        return False
    la, lb = a.split("."), b.split(".")
    return len(la) >= 2 and len(lb) >= 2 and la[-2:] == lb[-2:]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class TokenAuth:
    """Tokens for one upstream registry; thread-safe."""

    def __init__(self, registry_host: str, credentials: tuple[str, str] | None,
                 session: Callable[[], requests.Session], verify: bool | str,
                 realm_hosts: tuple[str, ...] = (), timeout: float = 30.0) -> None:
        self._registry = (urlsplit(f"//{registry_host}").hostname or registry_host).lower()
        self._credentials = credentials
        self._session = session
        self._verify = verify
        self._realm_hosts = {h.lower() for h in realm_hosts}
        self._timeout = timeout
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._realm: tuple[str, str] | None = None  # the last (realm, service) challenged with

    def header(self, scope: str | None) -> str | None:
        with self._lock:
            if self._realm is None:
                return None
            found = self._tokens.get((*self._realm, scope or ""))
        if found and found[1] > time.monotonic():
            return f"Bearer {found[0]}"
        return None

    def answer(self, challenge: str, scope: str | None) -> bool:
        scheme, params = parse_challenge(challenge)
        if scheme != "bearer" or "realm" not in params:
            return False  # Basic: the configured credentials were already sent, or there are none
        realm, service = params["realm"], params.get("service", "")
        scope = params.get("scope") or scope or ""
        realm_host = (urlsplit(realm).hostname or "").lower()
        if urlsplit(realm).scheme not in ("http", "https") or not (
                same_site(realm_host, self._registry) or realm_host in self._realm_hosts):
            raise UpstreamError(f"upstream {self._registry} sent a token realm on {realm_host}, "
                                "which is not its own domain (see token_realm_hosts)",
                                upstream=self._registry)
        token, expires_in = self._fetch(realm, service, scope)
        with self._lock:
            self._realm = (realm, service)
            self._tokens[(realm, service, scope)] = (token, time.monotonic() + expires_in - _EARLY)
        return True

    def _fetch(self, realm: str, service: str, scope: str) -> tuple[str, float]:
        query = {k: v for k, v in (("service", service), ("scope", scope)) if v}
        try:
            resp = self._session().get(realm, params=query, auth=self._credentials,
                                       timeout=self._timeout, verify=self._verify)
        except requests.RequestException as exc:
            raise UpstreamError(f"token service {urlsplit(realm).netloc} is unreachable "
                                f"({type(exc).__name__})", upstream=urlsplit(realm).netloc) from exc
        if resp.status_code != 200:
            raise UpstreamError(f"token service {urlsplit(realm).netloc} answered "
                                f"{resp.status_code} for scope {scope!r}",
                                upstream=urlsplit(realm).netloc, upstream_status=resp.status_code)
        try:
            doc = resp.json()
            token = doc.get("token") or doc.get("access_token")
            expires_in = float(doc.get("expires_in") or _DEFAULT_EXPIRY)
        except (ValueError, AttributeError, TypeError):
            token, expires_in = None, 0.0
        if not token:
            raise UpstreamError(f"token service {urlsplit(realm).netloc} gave no token",
                                upstream=urlsplit(realm).netloc)
        log.debug("got a token for %s (%s), valid %ss", scope, service, expires_in)
        return str(token), max(expires_in, _EARLY + 1)
