"""How the ``guardian`` command fails: one line on stderr naming the cause, exit 1.

A :class:`GuardianError` is printed as it is; a Kafka client error that escaped
typing (a generic "unable to bootstrap") is first diagnosed by connecting once
more, so a refused password or an untrusted certificate is named as such.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

from aiokafka.errors import KafkaError
from confluent_kafka import KafkaException
from pydantic import ValidationError

from connectors import kafka_connect
from schemas.errors import GuardianError
from streams.settings import AppSettings

EXIT_FAILED = 1
Handler = Callable[[argparse.Namespace], int]


class PromptInputError(GuardianError):
    """The prompt could not be read (a missing file, bytes that are not UTF-8)."""

    retriable = False


def run_reporting(handler: Handler, args: argparse.Namespace) -> int:
    """Run a command; report any failure it meets as one line."""
    try:
        return handler(args)
    except GuardianError as exc:
        return _fail(exc)
    except (KafkaError, KafkaException) as exc:
        return _fail(_diagnosed(exc))
    except ValidationError as exc:
        problems = "; ".join(_problem(e["loc"], e["msg"]) for e in exc.errors())
        return _fail(f"invalid settings: {problems}")


def _problem(loc: tuple[int | str, ...], message: str) -> str:
    where = ".".join(map(str, loc)) or "settings"
    return f"{where}: {message.removeprefix('Value error, ')}"


def read_prompt(text: str | None, path: Path | None) -> str:
    """The prompt: ``text``, all of stdin when ``text`` is ``-``, or the file at ``path``."""
    if path is not None:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise PromptInputError(f"cannot read the prompt file {path}: {exc.strerror}") from None
        return _decode(raw, str(path))
    if text == "-":
        return _decode(sys.stdin.buffer.read(), "stdin")
    if text is None:
        raise PromptInputError("give a prompt, `-` to read it from stdin, or --prompt-file PATH")
    return text


def _decode(raw: bytes, source: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PromptInputError(
            f"the prompt from {source} is not UTF-8 (byte {exc.start})"
        ) from None


def _diagnosed(exc: BaseException) -> GuardianError | str:
    try:
        settings = AppSettings.load().kafka
    except ValidationError:
        return f"Kafka: {exc}"
    return asyncio.run(kafka_connect.diagnose(settings, exc))


def _fail(exc: BaseException | str) -> int:
    print(f"guardian: {exc}", file=sys.stderr)
    return EXIT_FAILED
