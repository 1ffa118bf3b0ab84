"""Content-addressed blob files under ``cache_dir``, and the temp files that become them.

A blob's name is its sha256, so identical content fetched through two URLs (or two backends)
is stored once, and a file can be checked against its own name. Temp files live in the same
filesystem as the blobs so the final ``os.replace`` is atomic: a reader sees the whole file or
none of it.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

HEX64 = re.compile(r"^[0-9a-f]{64}$")  # a sha256 digest as blob files are named


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blob_dir = root / "blobs" / "sha256"
        self.tmp_dir = root / "tmp"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._prefix = f"{self.blob_dir}{os.sep}"

    def path(self, digest: str) -> Path:
        return Path(self.file(digest))

    def file(self, digest: str) -> str:
        # Plain strings, not pathlib: this runs twice per cache hit. The digest comes from our
        # own hashing or the index; the check keeps a corrupted row from naming another path.
        if not HEX64.match(digest):
            raise ValueError(f"not a sha256 hex digest: {digest!r}")
        return f"{self._prefix}{digest[:2]}{os.sep}{digest}"

    def has(self, digest: str, size: int) -> bool:
        """True if the blob is on disk with the expected size (a cheap guard against loss)."""
        return self.present(digest, size) is not None

    def present(self, digest: str, size: int) -> str | None:
        """The blob's path if it is on disk with the expected size, else None."""
        try:
            path = self.file(digest)
            return path if os.stat(path).st_size == size else None
        except (OSError, ValueError):
            return None

    def new_temp(self) -> Path:
        # The pid in the name lets start-up clean-up tell leftovers of a dead process from the
        # live fills of another process (the CLI) sharing this cache.
        return self.tmp_dir / f"{os.getpid()}.{uuid.uuid4().hex}"

    def commit(self, temp: Path, digest: str) -> Path:
        """Move a finished, verified temp file into place.

        It always replaces an existing file of that name: that one may be damaged (we only
        refetch when it is), and readers of the old file keep their open descriptor."""
        dest = self.path(digest)
        dest.parent.mkdir(exist_ok=True)
        os.replace(temp, dest)
        return dest

    def remove(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def clean_temp(self) -> int:
        """Delete temp files left by crashed processes; returns how many went."""
        removed = 0
        for temp in self.tmp_dir.iterdir():
            pid = int(temp.name.split(".", 1)[0]) if temp.name.split(".", 1)[0].isdigit() else 0
            if pid == os.getpid() or not _alive(pid):
                temp.unlink(missing_ok=True)
                removed += 1
        return removed

    def temp_bytes(self) -> int:
        total = 0
        for temp in self.tmp_dir.iterdir():
            try:
                total += temp.stat().st_size
            except OSError:
                pass
        return total

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
