"""Helpers for the maintenance and bundle tests: the CLI as a subprocess, the cache on disk."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def write_config(config: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def cli(config_path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -m artifact_vault ARGS --config CONFIG`` in a process of its own."""
    result = subprocess.run([sys.executable, "-m", "artifact_vault", *args, "--config",
                             str(config_path)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    if check:
        assert result.returncode == 0, f"{args}: {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def cli_json(config_path: Path, *args: str) -> Any:
    return json.loads(cli(config_path, *args, "--json").stdout)


def rows(cache_dir: Path) -> dict[str, tuple]:
    """key -> (digest, size, fetched_at) of every index row, read from the file itself."""
    db = sqlite3.connect(cache_dir / "index.sqlite")
    try:
        return {r[0]: r[1:] for r in db.execute("SELECT key, digest, size, fetched_at FROM entries")}
    finally:
        db.close()


def blob_files(cache_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (cache_dir / "blobs" / "sha256").glob("*/*")}
