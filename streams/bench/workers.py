"""Pipeline workers for benchmarks: a scripted model with no latency by default and a
``slow`` key with a fixed latency, no cache, no PII model; the command that runs one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from streams.settings import AppSettings

SLOW_KEY = "slow"
"""Prompts carrying ``[[script:slow]]`` get the script's fixed model latency."""


def write_script(out: Path, slow_latency_ms: float, name: str = "script") -> Path:
    """The model script: instant answers, and ``slow_latency_ms`` ones under ``SLOW_KEY``."""
    path = out / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    # An answer that passes the guardians in round one: the scripted model's own default
    # echoes the prompt, which the completeness guardian sends back for more rounds.
    answer = "Its capital is the largest city of that country, home to its government."
    script = {
        "default": {"answer": answer, "latency_ms": 0.0},
        "entries": {SLOW_KEY: {"answer": answer, "latency_ms": slow_latency_ms}},
    }
    path.write_text(json.dumps(script))
    return path


def worker_env(script: Path | None, partitions: int, **extra: str) -> dict[str, str]:
    """The environment of a benchmark worker: the scripted model of ``script`` (None: the
    model ``extra`` names); ``extra`` adds or overrides settings."""
    scripted = (
        {"GUARDIAN_MODEL_BACKEND": "scripted", "GUARDIAN_MODEL_SCRIPT_PATH": str(script)}
        if script is not None
        else {}
    )
    return scripted | {
        "GUARDIAN_GUARD_EMBEDDER": "hashing",
        "GUARDIAN_GUARD_PII_CHECK": "false",
        # Every request must reach the model: the cache would answer repeats at once.
        "GUARDIAN_CACHE_BACKEND": "off",
        "GUARDIAN_WORKER_METRICS_PORT": "0",
        "GUARDIAN_WORKER_SPECIALIST_CONCURRENCY": "64",
        "GUARDIAN_KAFKA_PARTITIONS": str(partitions),
        # One configuration for the whole run: the system optimizer would otherwise
        # resize slots partway through a saturation run.
        "GUARDIAN_NETWORK_APPLY_CHANGES": "false",
        **extra,
    }


def worker_cmd(settings: AppSettings) -> list[str]:
    """The command running one worker in the settings' namespace."""
    return [
        sys.executable,
        "-m",
        "streams.cli",
        "worker",
        "--namespace",
        settings.kafka.topic_namespace,
    ]
