"""What one prefetch must bring into the cache: from the command line or an ``offline.yml``.

The manifest file lets a team version what its offline cache must hold::

    pypi:
      requirements: [requirements.txt, uv.lock]   # resolved by pip, or lock files as written
      python_versions: ["3.11", "3.12"]            # pip resolution only
      platforms: [manylinux2014_x86_64]            # pip platform tags; pip resolution only
    images:
      platforms: [linux/amd64, linux/arm64]        # or [all], the default
      refs: [dockerhub/library/alpine:3.20]
    urls:
      - /debian/dists/bookworm/InRelease

File paths are relative to the manifest's directory. Keys are checked like the config's:
an unknown or mistyped key is an error that names it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..config_values import build
from ..errors import ConfigError


@dataclass(frozen=True)
class PypiPart:
    requirements: tuple[str, ...] = ()
    python_versions: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    prefix: str | None = None  # which pypi backend; default: the first one configured


@dataclass(frozen=True)
class ImagesPart:
    refs: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()


@dataclass(frozen=True)
class ManifestFile:
    pypi: PypiPart = dataclasses.field(default_factory=PypiPart)
    images: ImagesPart = dataclasses.field(default_factory=ImagesPart)
    urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class Job:
    requirements: tuple[Path, ...] = ()
    python_versions: tuple[str, ...] = ()
    pip_platforms: tuple[str, ...] = ()  # pip tags, e.g. manylinux2014_x86_64
    images: tuple[str, ...] = ()
    image_platforms: tuple[str, ...] = ()  # os/arch[/variant]; empty or "all": every child
    urls: tuple[str, ...] = ()
    pypi_prefix: str | None = None

    def __add__(self, other: Job) -> Job:
        return Job(*(getattr(self, f.name) + getattr(other, f.name)
                     for f in dataclasses.fields(self) if f.name != "pypi_prefix"),
                   pypi_prefix=other.pypi_prefix or self.pypi_prefix)

    def empty(self) -> bool:
        return not (self.requirements or self.images or self.urls)


def split_platforms(values: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``--platform`` serves both kinds: ``os/arch`` and ``all`` are image platforms, anything
    else (``manylinux2014_x86_64``, ``win_amd64``) is a pip platform tag. Values may be
    comma-separated."""
    image: list[str] = []
    pip: list[str] = []
    for value in values:
        for part in filter(None, (p.strip() for p in value.split(","))):
            (image if "/" in part or part == "all" else pip).append(part)
    return tuple(image), tuple(pip)


def load_manifest(path: Path) -> Job:
    """The job an ``offline.yml`` describes; ConfigError names the bad key."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read it as YAML: {exc}") from None
    spec: ManifestFile = build(ManifestFile, data, str(path))
    base = path.resolve().parent
    image_platforms, wrong = split_platforms(list(spec.images.platforms))
    if wrong:
        raise ConfigError(f"{path}.images.platforms: {wrong[0]!r} is not os/arch; write e.g. "
                          "linux/amd64, or all")
    return Job(requirements=tuple(base / r for r in spec.pypi.requirements),
               python_versions=spec.pypi.python_versions, pip_platforms=spec.pypi.platforms,
               images=spec.images.refs, image_platforms=image_platforms, urls=spec.urls,
               pypi_prefix=spec.pypi.prefix)
