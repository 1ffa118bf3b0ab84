"""The ``prefetch`` subcommand's arguments, and turning them into a run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ConfigError
from .job import Job, load_manifest, split_platforms


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pypi-requirements", action="append", default=[], type=Path,
                   metavar="FILE", help="requirements to resolve with pip, or a lock file "
                   "(requirements.txt with hashes, uv.lock, pylock.toml) to fetch as written; "
                   "repeatable")
    p.add_argument("--python-version", action="append", default=[], metavar="X.Y",
                   help="resolve requirements for this Python too (repeatable)")
    p.add_argument("--platform", action="append", default=[], metavar="PLATFORM",
                   help="os/arch of image children (comma-separated, or 'all', the default), "
                   "or a pip platform tag such as manylinux2014_x86_64 for resolution "
                   "(repeatable)")
    p.add_argument("--image", action="append", default=[], metavar="REF",
                   help="an image as pulled through Vault, e.g. dockerhub/library/alpine:3.20 "
                   "(repeatable)")
    p.add_argument("--url", action="append", default=[], metavar="PATH",
                   help="a Vault path to fetch, e.g. /debian/dists/bookworm/InRelease "
                   "(repeatable)")
    p.add_argument("--manifest", type=Path, metavar="FILE",
                   help="a YAML file listing requirements, images and urls (offline.yml)")
    p.add_argument("--pypi-prefix", help="the pypi backend to use (default: the first one)")


def job_from(args: argparse.Namespace) -> Job:
    """The job the command line asks for; exits 2 with one line if the manifest is bad."""
    image_platforms, pip_platforms = split_platforms(args.platform)
    job = Job(requirements=tuple(args.pypi_requirements),
              python_versions=tuple(args.python_version), pip_platforms=pip_platforms,
              images=tuple(args.image), image_platforms=image_platforms, urls=tuple(args.url),
              pypi_prefix=args.pypi_prefix)
    try:
        if args.manifest is not None:
            job = load_manifest(args.manifest) + job
    except ConfigError as exc:
        print(f"artifact-vault: manifest error: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
    if job.empty():
        print("artifact-vault prefetch: nothing to fetch; give --manifest, "
              "--pypi-requirements, --image or --url", file=sys.stderr)
        raise SystemExit(2)
    return job
