"""``guardian config show|set|history``: the live configuration as events."""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from datetime import UTC, datetime

from agents.config import PipelineConfig
from agents.config_values import ConfigValueError, apply_change, config_changed, config_of
from agents.config_values import to_values as config_values
from connectors.config_log import publish_config, read_config_history
from schemas.network_events import ConfigChanged
from streams.settings import AppSettings


def add_config_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = sub.add_parser("config", help="show, change or list the live configuration")
    commands = config.add_subparsers(dest="config_command", required=True)
    show = commands.add_parser("show", help="the live configuration, key by key")
    show.set_defaults(handler=_show)
    change = commands.add_parser("set", help="publish a new version with one key changed")
    change.add_argument("key", help="e.g. guardian.pass_threshold")
    change.add_argument("value", help="a JSON value, e.g. 0.75 or '\"text\"'")
    change.add_argument("--reason", required=True, help="why (kept on the event)")
    change.add_argument("--by", default="operator", help="who is changing it")
    change.set_defaults(handler=_set)
    history = commands.add_parser("history", help="every version still on the topic")
    history.set_defaults(handler=_history)
    for command in (show, change, history):
        command.add_argument("--namespace", help="topic namespace (overrides the setting)")


def _settings(args: argparse.Namespace) -> AppSettings:
    settings = AppSettings.load()
    return settings.with_namespace(args.namespace) if args.namespace else settings


def _live(settings: AppSettings, history: list[ConfigChanged]) -> PipelineConfig:
    return config_of(history[-1]) if history else settings.pipeline_config()


def _show(args: argparse.Namespace) -> int:
    settings = _settings(args)
    config = _live(settings, asyncio.run(read_config_history(settings.kafka)))
    print(f"version {config.version}")
    for key, value in sorted(config_values(config).items()):
        print(f"{key} = {value}")
    return 0


def _set(args: argparse.Namespace) -> int:
    settings = _settings(args)
    previous = _live(settings, asyncio.run(read_config_history(settings.kafka)))
    try:
        new = apply_change(previous, args.key, args.value)
    except ConfigValueError as exc:
        print(f"refused: {exc}")
        return 1
    event = config_changed(
        previous,
        new,
        changed_by=args.by,
        reason=args.reason,
        now=datetime.now(UTC),
        event_id=uuid.uuid4().hex,
    )
    asyncio.run(publish_config(settings.kafka, event))
    print(f"published version {event.version}: {', '.join(event.changed_keys)}")
    return 0


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
