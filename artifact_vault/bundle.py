"""Air-gap bundles: the cache (or part of it) as one tar stream, and back.

A bundle is an uncompressed tar (blobs are mostly compressed already) written and read in
stream mode, so neither side holds more than one chunk of a blob in memory or needs to seek:

    manifest.json              {"format": "artifact-vault-bundle", "version": 1, "created": ...,
                                "entries": [index rows: key, backend, digest, size, headers,
                                            fetched_at, fresh_until]}
    blobs/sha256/<hex>         one member per distinct blob, in the order the manifest names them

Import trusts nothing in the bundle: every blob is streamed to a temp file and hashed, and only
when every blob has matched its name are the blobs renamed into place and the index rows
merged. A corrupt or truncated bundle therefore imports nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from .cache.blobs import HEX64, BlobStore  # HEX64: a row never names a path outside blobs/
from .cache.eviction import drop_if_unused
from .cache.index import Entry, Index
from .errors import VaultError

FORMAT = "artifact-vault-bundle"
VERSION = 1
_MANIFEST = "manifest.json"
_BLOB_DIR = "blobs/sha256/"
_CHUNK = 1024 * 1024
_FIELDS = ("key", "backend", "digest", "size", "headers", "fetched_at", "fresh_until")


class BundleError(VaultError):
    """The bundle cannot be written or is unfit to import; nothing was changed."""


Progress = Callable[[int, int], None]  # (items done, bytes done) since the last call


def select(index: Index, blobs: BlobStore, backends: Iterable[str] = (),
           since: float | None = None) -> list[Entry]:
    """The positive entries to export, whose blob is on disk: negative entries are not worth
    carrying, and an entry without its blob cannot be served on the other side anyway."""
    wanted = {b.strip("/") for b in backends}
    return [e for e in index.scan()
            if e.status == 200 and e.digest and (not wanted or e.backend in wanted)
            and (since is None or e.fetched_at >= since) and blobs.has(e.digest, e.size)]


def export(entries: list[Entry], blobs: BlobStore, out: BinaryIO,
           progress: Progress = lambda i, n: None) -> None:
    """Write the bundle of ``entries`` to ``out`` (a file opened for writing)."""
    doc = {"format": FORMAT, "version": VERSION,
           "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "entries": [{f: (dict(e.headers) if f == "headers" else getattr(e, f))
                        for f in _FIELDS} for e in entries]}
    body = json.dumps(doc, indent=0).encode()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(_MANIFEST)
        info.size, info.mtime, info.mode = len(body), int(time.time()), 0o644
        tar.addfile(info, io.BytesIO(body))
        seen: set[str] = set()
        for e in entries:
            assert e.digest is not None
            if e.digest in seen:
                continue
            seen.add(e.digest)
            info = tarfile.TarInfo(_BLOB_DIR + e.digest)
            info.size, info.mtime, info.mode = e.size, int(e.fetched_at), 0o644
            try:
                f = open(blobs.file(e.digest), "rb")
            except FileNotFoundError:
                raise BundleError(f"blob {e.digest} of {e.key} vanished during the export "
                                  "(evicted or purged); run the export again") from None
            with f:
                checked = _Checked(f, e.digest)
                try:
                    tar.addfile(info, checked)
                except OSError:  # tarfile's "unexpected end of data": the file shrank
                    checked.damaged = True
                if checked.damaged or not checked.ok():
                    raise BundleError(f"blob {e.digest} of {e.key} is corrupt in the cache; "
                                      "run 'artifact-vault verify', then export again")
            progress(1, e.size)


@dataclass
class ImportResult:
    entries: int = 0  # rows in the bundle
    added: int = 0  # rows written (new, or newer than ours)
    kept: int = 0  # rows skipped: ours was as new or newer
    blobs: int = 0  # blob files written (the rest were already here)
    bytes: int = 0
    backends: list[str] = field(default_factory=list)  # backend names the rows belong to


def import_bundle(src: BinaryIO, index: Index, blobs: BlobStore,
                  progress: Progress = lambda i, n: None) -> ImportResult:
    """Verify the whole bundle from ``src``, then merge it into the cache; all or nothing."""
    temps: dict[str, Path] = {}
    try:
        entries, sizes = _read(src, blobs, temps, progress)
        result = ImportResult(entries=len(entries), blobs=len(temps),
                              backends=sorted({e.backend for e in entries}))
        for digest, temp in temps.items():
            blobs.commit(temp, digest)  # blobs first: a row must never name a missing blob
            result.bytes += sizes[digest]
        temps.clear()
        now = time.time()
        for e in entries:
            ours = index.get(e.key)
            if ours is not None and ours.status == 200 and ours.fetched_at >= e.fetched_at:
                result.kept += 1
                continue
            index.put(Entry(e.key, e.backend, 200, e.digest, e.size, e.headers, e.fetched_at,
                            e.fresh_until, last_access=now))
            if ours is not None:
                drop_if_unused(index, blobs, ours.digest)
            result.added += 1
        return result
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)


def _read(src: BinaryIO, blobs: BlobStore, temps: dict[str, Path],
          progress: Progress) -> tuple[list[Entry], dict[str, int]]:
    """Read and check every member; verified new blobs are left in ``temps``."""
    try:
        with tarfile.open(fileobj=src, mode="r|") as tar:
            member = tar.next()
            if member is None or member.name != _MANIFEST or not member.isfile():
                raise BundleError(f"not an artifact-vault bundle: the first member is not "
                                  f"{_MANIFEST}")
            entries = _entries(tar.extractfile(member).read())  # type: ignore[union-attr]
            sizes = {e.digest: e.size for e in entries if e.digest}
            seen: set[str] = set()
            while (member := tar.next()) is not None:  # iter(tar) would start over
                digest = member.name.removeprefix(_BLOB_DIR)
                if not member.isfile() or digest not in sizes or digest in seen:
                    raise BundleError(f"unexpected member {member.name!r} in the bundle")
                if member.size != sizes[digest]:
                    raise BundleError(f"blob {digest} is {member.size} bytes in the bundle, "
                                      f"the manifest says {sizes[digest]}")
                seen.add(digest)
                _receive(tar.extractfile(member), digest, member.size, blobs, temps)  # type: ignore[arg-type]
                progress(1, member.size)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise BundleError(f"the bundle is truncated or damaged ({exc})") from None
    missing = sorted(set(sizes) - seen)
    if missing:
        raise BundleError(f"the bundle is truncated or incomplete: {len(missing)} of its "
                          f"{len(sizes)} blobs are missing (first: {missing[0]})")
    return entries, sizes


def _receive(f: BinaryIO, digest: str, size: int, blobs: BlobStore,
             temps: dict[str, Path]) -> None:
    """Hash one blob member; keep it in a temp file unless the cache already has it."""
    have = blobs.has(digest, size)
    temp = None if have else blobs.new_temp()
    sha, n = hashlib.sha256(), 0
    out = None
    try:
        if temp:
            temps[digest] = temp
            try:
                out = open(temp, "wb")
            except OSError as exc:
                raise BundleError(f"cannot write {temp}: {exc.strerror}") from None
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
            n += len(chunk)
            if out:
                _write(out, chunk, temp)
        if out:
            out.flush()
            os.fsync(out.fileno())
    finally:
        if out:
            out.close()
    if n != size:
        raise BundleError(f"the bundle is truncated: blob {digest} has {n} of {size} bytes")
    if sha.hexdigest() != digest:
        raise BundleError(f"blob {digest} in the bundle is corrupt (its sha256 is "
                          f"{sha.hexdigest()}); nothing was imported")


def _write(out: BinaryIO, chunk: bytes, temp: Path | None) -> None:
    try:
        out.write(chunk)
    except OSError as exc:  # the cache's disk, not the bundle: say so
        raise BundleError(f"cannot write {temp}: {exc.strerror}; nothing was imported") from None


def _entries(data: bytes) -> list[Entry]:
    try:
        doc = json.loads(data)
        if doc.get("format") != FORMAT:
            raise BundleError(f"not an artifact-vault bundle ({_MANIFEST} has no format "
                              f"{FORMAT!r})")
        if doc.get("version") != VERSION:
            raise BundleError(f"bundle format version {doc.get('version')!r} is not supported "
                              f"(this Vault reads version {VERSION})")
        entries = []
        for row in doc["entries"]:
            if not isinstance(row["digest"], str) or not HEX64.match(row["digest"]):
                raise BundleError(f"bundle row {row['key']!r} has no valid sha256 digest")
            entries.append(Entry(str(row["key"]), str(row["backend"]), 200, row["digest"],
                                 int(row["size"]), {str(k): str(v) for k, v in
                                                    dict(row["headers"]).items()},
                                 float(row["fetched_at"]),
                                 None if row["fresh_until"] is None else float(row["fresh_until"])))
        return entries
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BundleError(f"{_MANIFEST} in the bundle is malformed ({exc})") from None


class _Checked:
    """Reads a blob file for the tar writer and hashes what it reads: a blob damaged on disk
    must not leave in a bundle that the other side would then refuse whole."""

    def __init__(self, f: BinaryIO, digest: str) -> None:
        self._f, self._digest = f, digest
        self._sha = hashlib.sha256()
        self.damaged = False

    def read(self, n: int = -1) -> bytes:
        chunk = self._f.read(n)
        self._sha.update(chunk)
        return chunk

    def ok(self) -> bool:
        return self._sha.hexdigest() == self._digest
