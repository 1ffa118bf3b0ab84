"""How one YAML value becomes a typed Python value: durations, sizes, secrets, timeouts,
URLs and ports, and the generic binding (``build``, ``convert``) that turns a mapping into a
frozen dataclass by its type hints. The config (``config``) and every backend's settings are
declared with these; every error names the key and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import SplitResult, urlsplit

from .errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_FOREVER = 100 * 365 * 86400.0  # longer durations are typos, and would overflow time arithmetic
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


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
        return types.MappingProxyType({str(k): convert(vtype, v, f"{key}.{k}")
                                       for k, v in value.items()})
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


def one_of(*choices: str) -> Any:
    def parse(value: Any, key: str) -> str:
        if not isinstance(value, str) or value.upper() not in (c.upper() for c in choices):
            raise ConfigError(f"{key}: {value!r}; use one of: {', '.join(choices)}")
        return next(c for c in choices if c.upper() == value.upper())
    return parse


def parse_port(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigError(f"{key}: {value!r} is not a TCP port; use 1-65535")
    return value


def parse_positive(value: Any, key: str) -> int:
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


def parse_public_url(value: Any, key: str) -> str:
    """The URL clients reach Vault at."""
    parts = _http_parts(value, key, "https://vault.example.com")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError(f"{key}: {value!r} is not the URL clients reach Vault at; write e.g. "
                          "https://vault.example.com (a path is allowed, no query)")
    return value.rstrip("/")


HttpUrl = Annotated[str, parse_http_url]
PositiveInt = Annotated[int, parse_positive]
