"""The config: its schema (the top level, cache, auth, backends) and where it is read from.

The config is validated once, at start-up, and then passed explicitly to whatever needs it.
Validation is generic (``config_values``): a dataclass's type hints say what each key accepts,
so a backend adds its settings by declaring a dataclass and nothing here changes. Unknown keys
are errors, because a silently ignored typo (``max_szie``) is the commonest config bug there is.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml

from .config_values import (Duration, PositiveInt, Size, build, expand_env, one_of,
                            parse_port, parse_public_url)
from .errors import ConfigError

RESERVED_PREFIXES = ("/health", "/ready", "/metrics", "/-")  # "/-/...": admin endpoints


@dataclass(frozen=True)
class CacheSettings:
    max_size: Size | None = None  # None: no limit but min_free
    min_free: Size = 1024**3
    max_stale: Duration = 7 * 86400.0  # how long past its TTL a copy may serve on upstream error
    negative_ttl: Duration = 60.0  # how long an upstream 404 is remembered


def _token_hash(value: Any, key: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"sha256:[0-9a-f]{64}", value):
        raise ConfigError(f"{key}: expected 'sha256:<64 hex digits>' (never the token itself); "
                          "make one with: artifact-vault token create")
    return value


def _scopes(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or any(v not in AUTH_SCOPES for v in value):
        raise ConfigError(f"{key}: {value!r}; use a list of: {', '.join(AUTH_SCOPES)}")
    return tuple(dict.fromkeys(value))


def _token_prefixes(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or any(not isinstance(v, str) for v in value):
        raise ConfigError(f"{key}: expected a list of backend prefixes, e.g. [/pypi/]")
    return tuple(normalize_prefix(v, f"{key}[{i}]") for i, v in enumerate(value))


AUTH_SCOPES = ("read", "admin")


@dataclass(frozen=True)
class TokenSpec:
    """One client token, stored only as its hash: the file can be read without leaking access."""

    name: str
    hash: Annotated[str, _token_hash]
    scopes: Annotated[tuple[str, ...], _scopes] = ("read",)
    prefixes: Annotated[tuple[str, ...], _token_prefixes] = ()  # read only these; (): all
    created: str | None = None


def parse_tokens(value: Any, key: str) -> tuple[TokenSpec, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list of tokens ({{name, hash, scopes}})")
    tokens = tuple(build(TokenSpec, t, f"{key}[{i}]") for i, t in enumerate(value))
    names = [t.name for t in tokens]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"{key}[{i}].name: {name!r} is used twice; names must be unique")
    return tokens


Tokens = Annotated[tuple[TokenSpec, ...], parse_tokens]


@dataclass(frozen=True)
class AuthSettings:
    """Client auth, off unless tokens are configured inline or in a tokens file."""

    tokens: Tokens = ()
    tokens_file: Path | None = None  # written by ``artifact-vault token create``

    @property
    def enabled(self) -> bool:
        return bool(self.tokens) or self.tokens_file is not None


@dataclass(frozen=True)
class BackendSpec:
    type: str
    prefix: str
    settings: Any  # the backend's own frozen dataclass; it has a ``prefix`` too


def normalize_prefix(prefix: str, key: str) -> str:
    if not prefix.startswith("/") or prefix.strip("/") == "" or "//" in prefix or ".." in prefix:
        raise ConfigError(f"{key}: {prefix!r} is not a usable prefix; write e.g. /debian/")
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    if any(prefix.rstrip("/") == r for r in RESERVED_PREFIXES) or prefix.startswith("/-/"):
        raise ConfigError(f"{key}: {prefix!r} is reserved for Vault's own endpoints; pick another")
    return prefix


def _backend(raw: Any, key: str) -> BackendSpec:
    from .backends import SETTINGS  # late: backends import BackendSpec from here

    if not isinstance(raw, Mapping) or set(raw) - {"type", "config"} or "type" not in raw:
        raise ConfigError(f"{key}: each backend is a mapping with 'type' and 'config' keys")
    kind = raw["type"]
    if kind not in SETTINGS:
        raise ConfigError(f"{key}.type: unknown backend type {kind!r}; use one of: "
                          f"{', '.join(SETTINGS)}")
    settings = build(SETTINGS[kind], raw.get("config") or {}, f"{key}.config")
    check = getattr(settings, "check", None)
    if check is not None:  # rules that span several keys; it raises ConfigError itself
        check(f"{key}.config")
    prefix = normalize_prefix(settings.prefix, f"{key}.config.prefix")
    return BackendSpec(type=kind, prefix=prefix, settings=dataclasses.replace(settings, prefix=prefix))


def _parse_backends(value: Any, key: str) -> tuple[BackendSpec, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{key}: no backends configured; add a list with at least one")
    backends = tuple(_backend(b, f"{key}[{i}]") for i, b in enumerate(value))
    for i, a in enumerate(backends):
        for j, b in enumerate(backends[:i]):
            if a.prefix.startswith(b.prefix) or b.prefix.startswith(a.prefix):
                raise ConfigError(f"{key}[{i}].config.prefix: {a.prefix!r} overlaps "
                                  f"backends[{j}] ({b.prefix!r}); give each backend its own prefix")
    return backends


Backends = Annotated[tuple[BackendSpec, ...], _parse_backends]


@dataclass(frozen=True)
class Config:
    backends: Backends
    http_host: str = "0.0.0.0"
    http_port: Annotated[int, parse_port] = 8080
    cache_dir: Path = Path("./vault-cache")
    log_level: Annotated[str, one_of("DEBUG", "INFO", "WARNING", "ERROR")] = "INFO"
    log_format: Annotated[str, one_of("text", "json")] = "text"
    threads: PositiveInt = 32
    stop_timeout: Duration = 20.0  # SIGTERM waits this long for responses and downloads
    offline: bool = False
    # The URL clients reach Vault at (through any proxy): pages then link files by absolute
    # URL, which pip parses in a third less time. None: relative links, right behind any
    # proxy that forwards Vault's paths.
    public_url: Annotated[str, parse_public_url] | None = None
    cache: CacheSettings = field(default_factory=CacheSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)


def parse_config(data: Any, env: Mapping[str, str] | None = None) -> Config:
    """Validate a loaded YAML document into a ``Config``; raise ``ConfigError`` on the first fault."""
    data = expand_env(data if data is not None else {}, "config", os.environ if env is None else env)
    return build(Config, data, "config")


def check_cache_dir(path: Path) -> None:
    """Fail at start-up, not at the first request, if the cache directory is unusable."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"config.cache_dir: {str(path)!r} is not writable ({exc.strerror}); "
                          "create it or point cache_dir elsewhere") from None


CONFIG_ENV = "ARTIFACT_VAULT_CONFIG"


def config_path(path: Path | None) -> Path | None:
    """``--config`` when given, else the file $ARTIFACT_VAULT_CONFIG names (the container
    image sets it), else None: the embedded default. Every command finds its config alike."""
    if path is None and os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    return path


def load_config(path: Path | None) -> Config:
    """Read a YAML file (or the embedded default when ``path`` is None) into a ``Config``."""
    if path is None:
        text = (Path(__file__).parent / "default-config.yml").read_text()
        name = "embedded default config"
    else:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"--config: cannot read {str(path)!r}: {exc.strerror}") from None
        name = str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{name}{where}: not valid YAML ({getattr(exc, 'problem', exc)}); "
                          "check indentation and quoting") from None
    return parse_config(data)
