"""Command line: ``artifact-vault serve`` (the default) and friends."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__, commands
from .auth import load_tokens
from .config import CONFIG_ENV, Config, check_cache_dir, config_path, load_config
from .errors import ConfigError
from .token_cli import add_token_commands, run_token_command

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger("artifact_vault")
_CONFIG_HELP = f"YAML config file (default: ${CONFIG_ENV}, else the embedded default config)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="artifact-vault", description=(
        "A caching proxy for PyPI, container registries, apt and plain HTTP."))
    parser.add_argument("--version", action="version", version=f"artifact-vault {__version__}")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the server (the default command)")
    commands.add_parsers(sub)
    for p in (parser, serve):
        p.add_argument("--config", type=Path, default=None, help=_CONFIG_HELP)
        p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                       help="override log_level from the config")
        p.add_argument("--host", help="override http_host from the config")
        p.add_argument("--port", type=int, help="override http_port from the config (0: any free)")
    prefetch = sub.add_parser("prefetch", help="fetch packages, images and files into the cache")
    prefetch.add_argument("--config", type=Path, default=None, help=_CONFIG_HELP)
    prefetch.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                          default="WARNING", help="log level of the Vault it runs (WARNING)")
    from .prefetch.command import add_arguments
    add_arguments(prefetch)
    add_token_commands(sub)
    return parser


def load(path: Path | None, **overrides: object) -> Config:
    """The validated config with command-line overrides; exits with one line if it is bad.

    Without ``--config``, the file named by $ARTIFACT_VAULT_CONFIG (the container image sets
    it), else the embedded default."""
    try:
        config = load_config(config_path(path))
        check_cache_dir(config.cache_dir)
        load_tokens(config.auth)  # a bad tokens file stops start-up here, in one line
    except ConfigError as exc:
        print(f"artifact-vault: config error: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
    names = {"log_level": "log_level", "host": "http_host", "port": "http_port"}
    changes = {names[k]: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(config, **changes)


def serve(config: Config) -> None:
    from waitress import wasyncore

    from .app import build_app
    from .heap import start_trimming
    from .logs import setup_logging
    from .server import create_server

    setup_logging(config.log_level, config.log_format)
    trimming = threading.Event()
    start_trimming(trimming)  # before build_app starts threads
    try:
        app = build_app(config)
    except ConfigError as exc:  # found while opening the cache (a damaged index)
        print(f"artifact-vault: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
    server = create_server(app, config.http_host, config.http_port, config.threads)

    def end_loop() -> None:
        # Run in the loop's own thread (the trigger): closing every channel empties the map,
        # and the loop returns. Not a simulated Ctrl-C: a server started in the background
        # ignores SIGINT and would never stop.
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))

    def stop(*_: object) -> None:
        server.accepting = False  # no new connections; the ones open finish their responses
        threading.Thread(target=_drain, args=(app, config.stop_timeout, end_loop),
                         daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    log.info("artifact-vault %s listening on http://%s:%s/ (cache %s, backends %s)",
             __version__, config.http_host, server.effective_port, config.cache_dir,
             ", ".join(b.prefix for b in config.backends))
    try:
        server.run()  # returns when _drain ends the loop, or on Ctrl-C
    except KeyboardInterrupt:
        pass
    finally:
        trimming.set()
        server.task_dispatcher.shutdown(timeout=1)
        app.close()
        log.info("stopped")


def prefetch(args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .logs import setup_logging
    from .prefetch import run
    from .prefetch.command import job_from

    job = job_from(args)
    config = load(args.config, log_level=args.log_level)
    setup_logging(config.log_level, config.log_format)
    try:
        return run(config, job)
    except ConfigError as exc:
        print(f"artifact-vault: config error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("artifact-vault prefetch: interrupted; what was fetched is cached", file=sys.stderr)
        return 130


def _drain(app: App, timeout: float, end_loop: Callable[[], None]) -> None:
    """After SIGTERM: wait (at most ``timeout``) for responses being sent and downloads
    running, then end the server loop. A download cut short leaves nothing behind: only
    committed blobs are in the cache, and ``app.close`` removes this process's temp files."""
    app.stop_background()
    log.info("stopping: waiting up to %.0fs for %d responses/downloads", timeout, app.busy())
    deadline = time.monotonic() + timeout
    while app.busy() and time.monotonic() < deadline:
        time.sleep(0.1)
    if app.busy():
        log.warning("stop_timeout reached: cutting %d responses/downloads short", app.busy())
    end_loop()


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "token":
        return run_token_command(args)
    if args.command == "prefetch":
        raise SystemExit(prefetch(args))
    if args.command in commands.NAMES:
        raise SystemExit(commands.run(args, load(args.config)))
    serve(load(args.config, log_level=args.log_level, host=args.host, port=args.port))
