"""``guardian serve`` (the OpenAI-compatible gateway) and ``guardian keys`` (its API keys)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
from pathlib import Path

from agents.gateway_access import key_digest, read_keys
from connectors import kafka_connect
from streams.settings import AppSettings


def add_gateway_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help="run the OpenAI-compatible HTTP gateway")
    serve.add_argument("--host", help="listen address (GUARDIAN_GATEWAY_HOST)")
    serve.add_argument("--port", type=int, help="listen port (GUARDIAN_GATEWAY_PORT)")
    serve.add_argument("--namespace", help="topic namespace (overrides the setting)")
    serve.set_defaults(handler=_serve)
    keys = sub.add_parser("keys", help="manage the gateway's API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    add = keys_sub.add_parser("add", help="make a key for a tenant; prints it once")
    add.add_argument("tenant")
    add.add_argument("--file", type=Path, help="the key file (GUARDIAN_GATEWAY_KEYS_FILE)")
    add.set_defaults(handler=_keys_add)


def _serve(args: argparse.Namespace) -> int:
    from streams.gateway.server import serve

    settings = AppSettings.load()
    if args.namespace is not None:
        settings = settings.with_namespace(args.namespace)
    given = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if given:
        gateway = settings.gateway.model_copy(update=given)
        settings = settings.model_copy(update={"gateway": gateway})
    asyncio.run(kafka_connect.wait_until_reachable(settings.kafka))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings))
    return 0


def _keys_add(args: argparse.Namespace) -> int:
    path: Path = args.file or AppSettings.load().gateway.keys_file
    existing = path.read_text() if path.exists() else ""
    key = "sk-guardian-" + secrets.token_urlsafe(32)
    line = f"{key_digest(key)} {args.tenant}\n"
    try:
        read_keys(existing + line)
    except ValueError as exc:
        raise SystemExit(f"guardian keys add: {exc}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(line)
    path.chmod(0o600)
    print(f"key for tenant {args.tenant} (shown once; {path} keeps only its digest):")
    print(key)
    return 0
