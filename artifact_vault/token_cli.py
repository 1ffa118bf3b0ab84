"""``artifact-vault token create|list|revoke``: manage client tokens in the tokens file.

The token is printed once, by ``create``, and never stored: the file keeps its hash. A running
server re-reads the file when it changes, so no restart is needed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .auth import hash_token, new_token, read_tokens_file, write_tokens_file
from .config import AUTH_SCOPES, TokenSpec, config_path, load_config
from .config_values import build
from .errors import ConfigError


def add_token_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    token = sub.add_parser("token", help="create, list or revoke client tokens")
    token.add_argument("--config", type=Path, default=None,
                       help="YAML config whose auth.tokens_file to use (default: "
                            "$ARTIFACT_VAULT_CONFIG)")
    token.add_argument("--tokens-file", type=Path, default=None,
                       help="the tokens file (default: auth.tokens_file from --config)")
    actions = token.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a token; it is printed once")
    create.add_argument("--name", required=True, help="who or what uses it, e.g. ci")
    create.add_argument("--scope", action="append", choices=AUTH_SCOPES, default=None,
                        help="read (the default) or admin; repeat for both")
    create.add_argument("--prefix", action="append", default=[],
                        help="limit read to this backend prefix, e.g. /pypi/; repeatable")
    actions.add_parser("list", help="list token names and scopes (never the tokens)")
    revoke = actions.add_parser("revoke", help="remove a token by name")
    revoke.add_argument("name")


def run_token_command(args: argparse.Namespace) -> None:
    try:
        path = _tokens_file(args)
        tokens = read_tokens_file(path)
        if args.action == "create":
            _create(path, tokens, args)
        elif args.action == "list":
            for t in tokens:
                where = ", ".join(t.prefixes) if t.prefixes else "all prefixes"
                print(f"{t.name}\t{','.join(t.scopes)}\t{where}\t{t.created or '-'}")
        else:
            kept = tuple(t for t in tokens if t.name != args.name)
            if len(kept) == len(tokens):
                _fail(f"no token named {args.name!r} in {path}", 1)
            write_tokens_file(path, kept)
            print(f"revoked {args.name!r}", file=sys.stderr)
    except ConfigError as exc:
        _fail(exc.message, 2)


def _create(path: Path, tokens: tuple[TokenSpec, ...], args: argparse.Namespace) -> None:
    if any(t.name == args.name for t in tokens):
        _fail(f"a token named {args.name!r} exists; revoke it first or pick another name", 1)
    secret = new_token()
    doc = {"name": args.name, "hash": hash_token(secret), "scopes": args.scope or ["read"],
           "prefixes": args.prefix,
           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    spec = build(TokenSpec, doc, "--prefix/--scope")  # the same checks as the config's
    write_tokens_file(path, (*tokens, spec))
    print(secret)
    print(f"token {args.name!r} saved (hash only) to {path}; it is shown only this once",
          file=sys.stderr)


def _tokens_file(args: argparse.Namespace) -> Path:
    if args.tokens_file is not None:
        return args.tokens_file
    config = config_path(args.config)
    if config is not None:
        path = load_config(config).auth.tokens_file
        if path is not None:
            return path
    raise ConfigError("token: no tokens file; pass --tokens-file PATH, or --config with "
                      "auth.tokens_file set")


def _fail(message: str, code: int) -> None:
    print(f"artifact-vault: {message}", file=sys.stderr)
    raise SystemExit(code)
