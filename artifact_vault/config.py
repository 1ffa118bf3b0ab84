"""YAML config -> frozen dataclasses; every error names the key and the fix.

The config is validated once, at start-up, and then passed explicitly to whatever needs it.
Validation is generic: a dataclass's type hints say what each key accepts, so a backend adds
its settings by declaring a dataclass and nothing here changes. Unknown keys are errors,
because a silently ignored typo (``max_szie``) is the commonest config bug there is.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import SplitResult, urlsplit

import yaml

from .errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_FOREVER = 100 * 365 * 86400.0  # longer durations are typos, and would overflow time arithmetic
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
RESERVED_PREFIXES = ("/health", "/ready", "/metrics", "/-")  # "/-/...": admin endpoints


def parse_duration(value: Any, key: str) -> float:
    """Seconds from ``30s``, ``10m``, ``1h``, ``7d``, ``1w``, ``250ms`` or a plain number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        seconds = float(value) if value <= _FOREVER else math.inf
    else:
        match = _DURATION.match(value) if isinstance(value, str) else None
        if not match:
            raise ConfigError(f"{key}: {value!r} is not a duration; write e.g. 30s, 10m, 1h or 7d")
        seconds = float(match[1]) * _DURATION_UNITS[match[2] or "s"]
    if not math.isfinite(seconds) or seconds > _FOREVER:
        # YAML's .inf, or hundreds of digits (float() gives inf, int-to-float overflows)
        raise ConfigError(f"{key}: {str(value)[:20]!r}... is too long a duration; write e.g. 52w")
    return seconds


def parse_size(value: Any, key: str) -> int:
    """Bytes from ``500MB``, ``50GB``, ``1.5TB`` (powers of 1024, as nginx) or a plain number."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if not match:
        raise ConfigError(f"{key}: {value!r} is not a size; write e.g. 500MB or 50GB")
    unit = (match[2] or "").lower()[:1]
    size = float(match[1]) * _SIZE_UNITS[unit]
    if not math.isfinite(size):  # hundreds of digits: float() gives inf, int(inf) raises
        raise ConfigError(f"{key}: {value[:20]!r}... is too large a size; write e.g. 500GB")
    return int(size)


class Secret(str):
    """A string that never shows itself in a repr, a log line or an error body."""

    def __repr__(self) -> str:
        return "Secret('***')"


def _parse_secret(value: Any, key: str) -> Secret:
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise ConfigError(f"{key}: expected a string; quote it, or use ${{ENV_VAR}}")
    return Secret(str(value))


Duration = Annotated[float, parse_duration]
Size = Annotated[int, parse_size]
SecretStr = Annotated[Secret, _parse_secret]


@dataclass(frozen=True)
class Timeout:
    connect: Duration = 10.0
    read: Duration = 60.0


def _parse_timeout(value: Any, key: str) -> Timeout:
    if isinstance(value, Mapping):
        return build(Timeout, value, key)
    seconds = parse_duration(value, key)
    return Timeout(connect=seconds, read=seconds)


TimeoutSpec = Annotated[Timeout, _parse_timeout]


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


def build(cls: type, data: Any, key: str) -> Any:
    """Build dataclass ``cls`` from a mapping, checking each value against its type hint."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{key}: expected a mapping of keys to values, got {type(data).__name__}")
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for name in data:
        if name not in fields:
            close = difflib.get_close_matches(str(name), fields, n=1)
            fix = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(fields)}"
            raise ConfigError(f"{key}.{name}: unknown key; {fix}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = convert(hints[name], data[name], f"{key}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}.{name}: required key is missing; add it")
    return cls(**kwargs)


def convert(tp: Any, value: Any, key: str) -> Any:
    """Check and convert one value to type ``tp``; ``key`` names it in errors."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return typing.get_args(tp)[1](value, key)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else convert(args[0], value, key)
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, e.g. [a, b]")
        return tuple(convert(typing.get_args(tp)[0], v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping of names to values")
        vtype = typing.get_args(tp)[1]
        return types.MappingProxyType({str(k): convert(vtype, v, f"{key}.{k}") for k, v in value.items()})
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if tp is Any:
        return value
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int and (not isinstance(value, int) or isinstance(value, bool)):
        raise ConfigError(f"{key}: expected a whole number, got {value!r}")
    if tp is str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    if tp is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}: expected a directory path")
        return Path(value)
    return value


def expand_env(value: Any, key: str, env: Mapping[str, str]) -> Any:
    """Replace ``${VAR}`` in every string, so secrets can stay out of the file."""
    if isinstance(value, Mapping):
        return {k: expand_env(v, f"{key}.{k}", env) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, f"{key}[{i}]", env) for i, v in enumerate(value)]
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            if m[1] not in env:
                raise ConfigError(f"{key}: environment variable {m[1]} is not set; export it or "
                                  "remove the reference")
            return env[m[1]]
        return _ENV.sub(sub, value)
    return value


def normalize_prefix(prefix: str, key: str) -> str:
    if not prefix.startswith("/") or prefix.strip("/") == "" or "//" in prefix or ".." in prefix:
        raise ConfigError(f"{key}: {prefix!r} is not a usable prefix; write e.g. /debian/")
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    if any(prefix.rstrip("/") == r for r in RESERVED_PREFIXES) or prefix.startswith("/-/"):
        raise ConfigError(f"{key}: {prefix!r} is reserved for Vault's own endpoints; pick another")
    return prefix


def _backend(raw: Any, key: str) -> BackendSpec:
    from .backends import SETTINGS  # late: backends import the helpers above

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


def _one_of(*choices: str) -> Any:
    def parse(value: Any, key: str) -> str:
        if not isinstance(value, str) or value.upper() not in (c.upper() for c in choices):
            raise ConfigError(f"{key}: {value!r}; use one of: {', '.join(choices)}")
        return next(c for c in choices if c.upper() == value.upper())
    return parse


def _port(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigError(f"{key}: {value!r} is not a TCP port; use 1-65535")
    return value


def _positive(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}: must be a whole number of at least 1")
    return value


def _http_parts(value: Any, key: str, example: str) -> SplitResult:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{key}: {value!r} is not an http(s) URL; write e.g. {example}")
    return parts


def parse_http_url(value: Any, key: str) -> str:
    """An upstream's URL."""
    parts = _http_parts(value, key, "https://deb.debian.org/debian")
    if parts.username or parts.password:
        raise ConfigError(f"{key}: credentials in the URL would leak into logs; use the "
                          "username and password keys instead")
    return value.rstrip("/")


def _public_url(value: Any, key: str) -> str:
    """The URL clients reach Vault at."""
    parts = _http_parts(value, key, "https://vault.example.com")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError(f"{key}: {value!r} is not the URL clients reach Vault at; write e.g. "
                          "https://vault.example.com (a path is allowed, no query)")
    return value.rstrip("/")


HttpUrl = Annotated[str, parse_http_url]
Backends = Annotated[tuple[BackendSpec, ...], _parse_backends]
PositiveInt = Annotated[int, _positive]


@dataclass(frozen=True)
class Config:
    backends: Backends
    http_host: str = "0.0.0.0"
    http_port: Annotated[int, _port] = 8080
    cache_dir: Path = Path("./vault-cache")
    log_level: Annotated[str, _one_of("DEBUG", "INFO", "WARNING", "ERROR")] = "INFO"
    log_format: Annotated[str, _one_of("text", "json")] = "text"
    threads: PositiveInt = 32
    stop_timeout: Duration = 20.0  # SIGTERM waits this long for responses and downloads
    offline: bool = False
    # The URL clients reach Vault at (through any proxy): pages then link files by absolute
    # URL, which pip parses in a third less time. None: relative links, right behind any
    # proxy that forwards Vault's paths.
    public_url: Annotated[str, _public_url] | None = None
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
