"""The maintenance subcommands: stats, prune, verify, purge, export and import.

Each opens the cache directory named by ``--config`` (the server may be running on it), calls
``maintenance`` or ``bundle``, and prints a table, or JSON with ``--json``. Exit status: 0 done,
1 the command found or hit a problem (corrupt blobs, a bad bundle), 2 bad config or arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import bundle, maintenance
from .cache.blobs import BlobStore
from .cache.index import Index
from .catalog import Catalog
from .config import Config
from .config_values import parse_duration, parse_size
from .errors import ConfigError
from .progress import Progress, human_bytes

NAMES = ("stats", "prune", "verify", "purge", "export", "import")


def add_parsers(sub: Any) -> None:
    """Add the subcommands to ``sub`` (the ``serve`` parser's subparsers)."""
    p = sub.add_parser("stats", help="per backend: entries, bytes, hit ratio, oldest/newest")
    p = sub.add_parser("prune", help="remove entries not used lately, or down to a size")
    p.add_argument("--older-than", help="remove entries not requested for this long (e.g. 30d)")
    p.add_argument("--max-size", help="then remove least recently used entries down to this")
    p.add_argument("--dry-run", action="store_true", help="list what would go; change nothing")
    p = sub.add_parser("verify", help="re-hash every blob; drop corrupt ones from the index")
    p.add_argument("--repair", action="store_true", help="refetch what was dropped")
    p = sub.add_parser("purge", help="remove entries by client path: PREFIX/PATH-GLOB")
    p.add_argument("pattern", help="e.g. 'pypi/files/six/*', 'debian/dists/*', 'hub/team/app/*'")
    p.add_argument("--dry-run", action="store_true", help="list what would go; change nothing")
    p = sub.add_parser("export", help="write cached artifacts to an air-gap bundle (tar)")
    p.add_argument("--output", "-o", type=Path, required=True, help="the bundle file to write")
    p.add_argument("--backend", action="append", default=[], metavar="PREFIX",
                   help="only this backend (repeatable; default: all)")
    p.add_argument("--since", help="only entries fetched since: a date (2026-11-01, ISO 8601, "
                                   "UTC if no zone) or a duration back from now (7d)")
    p = sub.add_parser("import", help="verify a bundle and merge it into the cache")
    p.add_argument("bundle", type=Path)
    for name in NAMES:
        # SUPPRESS: a --config given before the command name is not reset to the default.
        sub.choices[name].add_argument("--config", type=Path, default=argparse.SUPPRESS,
                                       help="YAML config file, as for serve")
        sub.choices[name].add_argument("--json", action="store_true",
                                       help="print JSON instead of a table")


def run(args: argparse.Namespace, config: Config) -> int:
    index = Index(config.cache_dir / "index.sqlite")
    blobs = BlobStore(config.cache_dir)
    try:
        command = {"stats": _stats, "prune": _prune, "verify": _verify, "purge": _purge,
                   "export": _export, "import": _import}[args.command]
        return command(args, config, index, blobs)
    except bundle.BundleError as exc:
        print(f"artifact-vault {args.command}: {exc.message}", file=sys.stderr)
        return 1
    finally:
        index.close()


def _stats(args: argparse.Namespace, config: Config, index: Index, blobs: BlobStore) -> int:
    if args.json:
        return _print_json(maintenance.stats_json(index))
    rows = maintenance.stats(index)
    _table(["backend", "entries", "negative", "size", "hits", "hit ratio", "oldest", "newest"],
           [[r.backend, r.entries, r.negative, human_bytes(r.bytes), r.hits,
             "-" if r.hit_ratio is None else f"{r.hit_ratio:.1%}", _when(r.oldest),
             _when(r.newest)] for r in rows])
    return 0


def _prune(args: argparse.Namespace, config: Config, index: Index, blobs: BlobStore) -> int:
    if args.older_than is None and args.max_size is None:
        return _usage("prune: give --older-than, --max-size or both")
    older = _parsed(parse_duration, args.older_than, "--older-than")
    size = _parsed(parse_size, args.max_size, "--max-size")
    chosen = maintenance.select_prune(index, time.time(), older, size)
    freed = 0 if args.dry_run else maintenance.remove(index, blobs, chosen)
    return _report_removed(args, [(e, e.key) for e in chosen], freed, "pruned")


def _purge(args: argparse.Namespace, config: Config, index: Index, blobs: BlobStore) -> int:
    if not args.pattern.strip("/"):
        return _usage("purge: give a pattern, PREFIX/PATH-GLOB, e.g. 'pypi/files/six/*'")
    catalog = Catalog(config.backends, index, blobs)
    found, freed = maintenance.purge(index, blobs, catalog, args.pattern, args.dry_run)
    return _report_removed(args, found, freed, "purged")


def _report_removed(args: argparse.Namespace, found: Sequence[tuple[Any, str]], freed: int,
                    verb: str) -> int:
    if args.json:
        return _print_json({"dry_run": args.dry_run, "freed_bytes": freed, "removed": [
            {"key": e.key, "name": name, "size": e.size} for e, name in found]})
    for entry, name in found:
        print(f"{'would remove' if args.dry_run else 'removed'}  {name}  "
              f"({human_bytes(entry.size)})")
    total = sum(e.size for e, _ in found)
    print(f"{len(found)} entries ({human_bytes(total)}) "
          f"{'would be ' + verb if args.dry_run else verb}; {human_bytes(freed)} of blobs freed")
    return 0


def _verify(args: argparse.Namespace, config: Config, index: Index, blobs: BlobStore) -> int:
    catalog = Catalog(config.backends, index, blobs)
    if args.repair:
        catalog.prepare()
    with Progress("verify", enabled=not args.json) as bar:
        report = maintenance.verify(index, blobs, lambda n: bar.advance(1, n))
    repaired = []
    if args.repair and report.removed:
        from .app import build_app
        from .repair import repair
        app = build_app(config)
        try:
            repaired = repair(app, catalog, report.removed)
        finally:
            app.close()
    unrepaired = [r for r in repaired if not r.ok] if args.repair else report.removed
    if args.json:
        _print_json({"blobs": report.blobs, "bytes": report.bytes, "bad": report.bad,
                     "removed": [e.key for e in report.removed],
                     "repaired": [{"key": r.key, "path": r.path, "status": r.status}
                                  for r in repaired]})
    else:
        for digest, why in report.bad.items():
            print(f"bad blob {digest}: {why}")
        for e in report.removed:
            print(f"removed  {e.key}")
        for r in repaired:
            print(f"{'repaired' if r.ok else 'NOT repaired'}  {r.path or r.key}"
                  + ("" if r.ok else f"  ({'no client path' if r.path is None else r.status})"))
        print(f"{report.blobs} blobs ({human_bytes(report.bytes)}) checked, {len(report.bad)} "
              f"bad, {len(report.removed)} entries removed"
              + (f", {sum(r.ok for r in repaired)} repaired" if args.repair else ""))
    return 1 if unrepaired else 0


def _export(args: argparse.Namespace, config: Config, index: Index, blobs: BlobStore) -> int:
    since = _since(args.since) if args.since else None
    known = {b.prefix.strip("/") for b in config.backends}
    for name in args.backend:
        if name.strip("/") not in known:
            return _usage(f"export: --backend {name}: no such backend; configured: "
                          f"{', '.join(sorted(known))}")
    entries = bundle.select(index, blobs, args.backend, since)
    total = sum(size for size in {e.digest: e.size for e in entries}.values())
    distinct = len({e.digest for e in entries})
    temp = args.output.with_name(f".{args.output.name}.{os.getpid()}.part")
    try:
        with Progress("export", items=distinct, total_bytes=total, enabled=not args.json) as bar:
            with open(temp, "wb") as out:
                bundle.export(entries, blobs, out, bar.advance)
            os.replace(temp, args.output)
    finally:
        temp.unlink(missing_ok=True)
    if args.json:
        return _print_json({"output": str(args.output), "entries": len(entries),
                            "blobs": distinct, "bytes": total})
    print(f"wrote {args.output}: {len(entries)} entries, {distinct} blobs, "
          f"{human_bytes(total)}")
    return 0


def _import(args: argparse.Namespace, config: Config, index: Index, blobs: BlobStore) -> int:
    try:
        src = open(args.bundle, "rb")
    except OSError as exc:
        raise bundle.BundleError(f"cannot read {args.bundle}: {exc.strerror}") from None
    with src, Progress("import", total_bytes=os.fstat(src.fileno()).st_size,
                       enabled=not args.json) as bar:
        read = [0]

        def advance(items: int, _: int) -> None:  # bytes of the file read, headers included
            bar.advance(items, src.tell() - read[0])
            read[0] = src.tell()

        result = bundle.import_bundle(src, index, blobs, advance)
        advance(0, 0)
    unknown = sorted(set(result.backends) - {b.prefix.strip("/") for b in config.backends})
    if unknown:  # imported all the same: the config may gain them later
        print(f"artifact-vault import: warning: this config has no backend {', '.join(unknown)}"
              "; give it the same backends (prefixes and upstream URLs) as the exporting "
              "Vault, or those entries are never served", file=sys.stderr)
    if args.json:
        return _print_json(vars(result))
    print(f"imported {args.bundle}: {result.entries} entries ({result.added} added, "
          f"{result.kept} already here), {result.blobs} new blobs ({human_bytes(result.bytes)})")
    return 0


def _since(text: str) -> float:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return time.time() - _parsed(parse_duration, text, "--since")  # type: ignore[operator]
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def _parsed(parse: Callable[[Any, str], Any], value: str | None, option: str) -> Any:
    if value is None:
        return None
    try:
        return parse(value, option)
    except ConfigError as exc:
        print(f"artifact-vault: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None


def _usage(message: str) -> int:
    print(f"artifact-vault {message}", file=sys.stderr)
    return 2


def _when(t: float | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t, timezone.utc).strftime(
        "%Y-%m-%d %H:%M")


def _print_json(doc: Any) -> int:
    print(json.dumps(doc, indent=2))
    return 0


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [list(headers)] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths))).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
