"""Command line: ``artifact-vault serve`` (the default) and friends."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
from pathlib import Path

from . import __version__
from .config import Config, check_cache_dir, load_config
from .errors import ConfigError

log = logging.getLogger("artifact_vault")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="artifact-vault", description=(
        "A caching proxy for PyPI, container registries, apt and plain HTTP."))
    parser.add_argument("--version", action="version", version=f"artifact-vault {__version__}")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the server (the default command)")
    for p in (parser, serve):
        p.add_argument("--config", type=Path, default=None,
                       help="YAML config file (default: the embedded default config)")
        p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                       help="override log_level from the config")
        p.add_argument("--host", help="override http_host from the config")
        p.add_argument("--port", type=int, help="override http_port from the config (0: any free)")
    return parser


def load(path: Path | None, **overrides: object) -> Config:
    """The validated config with command-line overrides; exits with one line if it is bad."""
    try:
        config = load_config(path)
        check_cache_dir(config.cache_dir)
    except ConfigError as exc:
        print(f"artifact-vault: config error: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
    names = {"log_level": "log_level", "host": "http_host", "port": "http_port"}
    changes = {names[k]: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(config, **changes)


def serve(config: Config) -> None:
    from .app import build_app
    from .logs import setup_logging
    from .server import create_server

    setup_logging(config.log_level, config.log_format)
    try:
        app = build_app(config)
    except ConfigError as exc:  # found while opening the cache (a damaged index)
        print(f"artifact-vault: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
    server = create_server(app, config.http_host, config.http_port, config.threads)
    signal.signal(signal.SIGTERM, lambda *_: server.close())
    log.info("artifact-vault %s listening on http://%s:%s/ (cache %s, backends %s)",
             __version__, config.http_host, server.effective_port, config.cache_dir,
             ", ".join(b.prefix for b in config.backends))
    try:
        server.run()
    except (KeyboardInterrupt, OSError):
        pass  # OSError: the loop's sockets were closed by SIGTERM
    finally:
        app.close()
        log.info("stopped")


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    serve(load(args.config, log_level=args.log_level, host=args.host, port=args.port))
