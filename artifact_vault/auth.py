"""Client auth: which configured token a request carries, and whether its scopes cover the path.

Off unless the config names tokens. Then every path but ``/health`` and ``/ready`` needs a
token: ``read`` for the backends (all of them, or the listed prefixes) and Vault's own pages,
``admin`` for ``/-/admin/`` (admin implies read). Clients send the token as the password of
Basic auth (any username: pip index URLs, apt auth.conf, ``docker login``) or as a Bearer
token. The token is never stored, logged or sent upstream: only its hash is kept.

Why a plain SHA-256 and not bcrypt or scrypt: slow hashes protect low-entropy secrets (human
passwords) against guessing from a stolen hash. Our tokens are 256 random bits made by
``new_token``; nobody can guess one from its SHA-256, however fast the hash is, and a fast hash
costs nothing per request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml

from .config import AuthSettings, TokenSpec, parse_tokens
from .errors import AuthFailed, ConfigError, Forbidden

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/health", "/ready"})
ADMIN_PREFIX = "/-/admin"
REALM = "artifact-vault"
CHALLENGE = f'Basic realm="{REALM}"'


def new_token() -> str:
    """A fresh token: 256 random bits, URL-safe (it goes into pip index URLs as a password)."""
    return "av_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def read_tokens_file(path: Path) -> tuple[TokenSpec, ...]:
    """The tokens in ``path`` (YAML: ``tokens: [{name, hash, scopes, prefixes}]``); a missing
    file holds none, so a server can start before the first ``token create``."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return ()
    except OSError as exc:
        raise ConfigError(f"config.auth.tokens_file: cannot read {str(path)!r} ({exc.strerror}); "
                          "fix its permissions") from None
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        raise ConfigError(f"config.auth.tokens_file: {str(path)!r} is not valid YAML; "
                          "recreate it with artifact-vault token create") from None
    if not isinstance(doc, dict) or set(doc) - {"tokens"}:
        raise ConfigError(f"config.auth.tokens_file: {str(path)!r} must hold one key, 'tokens'")
    return parse_tokens(doc.get("tokens") or [], f"{path}: tokens")


def write_tokens_file(path: Path, tokens: tuple[TokenSpec, ...]) -> None:
    """Replace the tokens file atomically, readable by its owner only."""
    doc = {"tokens": [_token_doc(t) for t in tokens]}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# artifact-vault client tokens: hashes only. Edit with `artifact-vault token`.\n")
        yaml.safe_dump(doc, f, sort_keys=False)
    os.replace(tmp, path)


def _token_doc(t: TokenSpec) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": t.name, "hash": t.hash, "scopes": list(t.scopes)}
    if t.prefixes:
        doc["prefixes"] = list(t.prefixes)
    if t.created:
        doc["created"] = t.created
    return doc


def load_tokens(settings: AuthSettings) -> tuple[TokenSpec, ...]:
    """Inline tokens plus the tokens file's; raises ``ConfigError`` if either is bad."""
    from_file = read_tokens_file(settings.tokens_file) if settings.tokens_file else ()
    names = {t.name for t in settings.tokens}
    for t in from_file:
        if t.name in names:
            raise ConfigError(f"config.auth.tokens_file: {t.name!r} is also an inline token; "
                              "rename one of them")
    return settings.tokens + from_file


def credentials(header: str) -> tuple[str, str] | None:
    """(username, token) from a Basic or Bearer Authorization header; None if unusable.

    Basic with an empty password takes the username as the token (``curl -u TOKEN:``)."""
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return "", value
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return (user, password) if password else ("", user) if user else None


class Gate:
    """The one auth check: ``authenticate`` before routing, ``authorize`` once the backend is
    known. A tokens file is re-read when it changes, so ``token create``/``revoke`` apply to
    a running server at its next request."""

    def __init__(self, settings: AuthSettings) -> None:
        self.enabled = settings.enabled
        self._settings = settings
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._tokens = load_tokens(settings) if self.enabled else ()
        self._stamp = self._file_stamp()

    def authenticate(self, environ: dict[str, Any], path: str) -> TokenSpec | None:
        """The token the request carries; None when auth is off or the path is open.

        The admin scope is checked here, on the path alone, before routing can say 404."""
        if not self.enabled or (path.rstrip("/") or "/") in OPEN_PATHS:
            return None
        header = environ.get("HTTP_AUTHORIZATION", "")
        found = credentials(header) if header else None
        if found is None:
            raise AuthFailed("authentication required: send a token as the Basic password "
                             "or as a Bearer token", code="UNAUTHORIZED")
        user, secret = found
        token = self._match(hash_token(secret))
        if token is None:
            # Never the secret: who said they were, what they asked for, from where.
            log.warning("auth: rejected an unknown token (user %r) for %s %s from %s",
                        user[:64], environ.get("REQUEST_METHOD"), path[:200],
                        environ.get("REMOTE_ADDR", "-"))
            raise AuthFailed("the token is not valid", code="UNAUTHORIZED")
        if is_admin_path(path) and "admin" not in token.scopes:
            self._refuse(token, path, "needs the admin scope")
        return token

    def authorize(self, token: TokenSpec | None, path: str, prefix: str | None) -> None:
        """Raise ``Forbidden`` unless ``token`` may read ``path`` (served by ``prefix``)."""
        if token is None or "admin" in token.scopes or is_admin_path(path):
            return
        if "read" not in token.scopes:
            self._refuse(token, path, "needs the read scope")
        if prefix is not None and token.prefixes and prefix not in token.prefixes:
            self._refuse(token, path, f"is not under {', '.join(token.prefixes)}")

    @staticmethod
    def _refuse(token: TokenSpec, path: str, why: str) -> None:
        log.warning("auth: token %r refused for %s: it %s", token.name, path[:200], why)
        raise Forbidden(f"token {token.name!r} may not read {path[:200]}: it {why}",
                        code="DENIED")

    def _match(self, presented: str) -> TokenSpec | None:
        self._reload_if_changed()
        found = None
        for token in self._tokens:  # no early exit: the time taken says nothing about which
            if hmac.compare_digest(token.hash.encode(), presented.encode()):
                found = token
        return found

    def _file_stamp(self) -> tuple[int, int] | None:
        path = self._settings.tokens_file
        if path is None:
            return None
        try:
            st = os.stat(path)
        except OSError:
            return (0, 0)
        return st.st_mtime_ns, st.st_size

    def _reload_if_changed(self) -> None:
        if self._settings.tokens_file is None:
            return
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return
        with self._lock:
            try:
                self._tokens = load_tokens(self._settings)
            except ConfigError as exc:  # keep the last good set; say why once per change
                log.error("auth: keeping the previous tokens: %s", exc.message)
            self._stamp = stamp


def is_admin_path(path: str) -> bool:
    """Whether ``path`` is (or decodes to) something under the admin prefix; decoded and with
    repeated slashes collapsed so no spelling of it slips past the admin scope."""
    decoded = unquote(path)
    while "//" in decoded:
        decoded = decoded.replace("//", "/")
    return decoded == ADMIN_PREFIX or decoded.startswith(ADMIN_PREFIX + "/")
