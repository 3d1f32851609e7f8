"""``guardian config show|set|history``: the live configuration as events.

``set`` publishes on top of the latest version; when another writer takes that version
first, the change is applied again on top of the winner and retried, and after a few
lost races the command exits non-zero saying so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from datetime import UTC, datetime

from agents.config_history import UnknownConfigVersionError, config_at, genesis
from agents.config_values import ConfigValueError, apply_change, config_changed, config_of
from agents.config_values import to_values as config_values
from connectors.config_log import (
    ConfigConflictError,
    publish_change,
    read_config_history,
    read_config_versions,
    read_latest,
)
from schemas.network_events import ConfigChanged
from streams.settings import AppSettings


def add_config_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = sub.add_parser("config", help="show, change or list the live configuration")
    commands = config.add_subparsers(dest="config_command", required=True)
    show = commands.add_parser("show", help="the live configuration (or any version), key by key")
    show.add_argument("--version", type=int, help="a past version instead of the latest")
    show.set_defaults(handler=_show)
    change = commands.add_parser("set", help="publish a new version with one key changed")
    change.add_argument("key", help="e.g. guardian.pass_threshold")
    change.add_argument("value", help="a JSON value, e.g. 0.75 or '\"text\"'")
    change.add_argument("--reason", required=True, help="why (kept on the event)")
    change.add_argument("--by", default="operator", help="who is changing it")
    change.set_defaults(handler=_set)
    history = commands.add_parser("history", help="every version ever published, oldest first")
    history.set_defaults(handler=_history)
    for command in (show, change, history):
        command.add_argument("--namespace", help="topic namespace (overrides the setting)")


def _settings(args: argparse.Namespace) -> AppSettings:
    settings = AppSettings.load()
    return settings.with_namespace(args.namespace) if args.namespace else settings


def _show(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        if args.version is None:
            latest = asyncio.run(read_latest(settings.kafka))
            config = config_of(latest) if latest else settings.pipeline_config()
        else:
            config = config_at(asyncio.run(read_config_versions(settings.kafka)), args.version)
    except (UnknownConfigVersionError, ConfigValueError) as exc:
        print(f"guardian config: {exc}", file=sys.stderr)
        return 1
    print(f"version {config.version}")
    for key, value in sorted(config_values(config).items()):
        print(f"{key} = {value}")
    return 0


def _set(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        first = genesis(
            settings.pipeline_config(),
            now=datetime.now(UTC),
            event_id=uuid.uuid4().hex,
            changed_by=args.by,
        )
        event = asyncio.run(
            publish_change(settings.kafka, lambda latest: change_on_top(args, latest), first)
        )
    except (ConfigValueError, ConfigConflictError) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    assert event is not None
    print(f"published version {event.version}: {', '.join(event.changed_keys)}")
    return 0


def change_on_top(args: argparse.Namespace, latest: ConfigChanged) -> ConfigChanged:
    """The change of ``args`` on top of ``latest`` (again after a lost race)."""
    previous = config_of(latest)
    return config_changed(
        previous,
        apply_change(previous, args.key, args.value),
        changed_by=args.by,
        reason=args.reason,
        now=datetime.now(UTC),
        event_id=uuid.uuid4().hex,
    )


def _history(args: argparse.Namespace) -> int:
    settings = _settings(args)
    for event in asyncio.run(read_config_history(settings.kafka)):
        line = {
            "version": event.version,
            "at": event.occurred_at.isoformat(),
            "by": event.changed_by,
            "reason": event.reason,
            "changed": {k: event.values.get(k) for k in event.changed_keys},
        }
        print(json.dumps(line))
    return 0
