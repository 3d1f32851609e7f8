"""Processes of a benchmark run: spawn with a log, wait for a log line or a stable
consumer group, wait for workers to answer, stop (SIGTERM, then SIGKILL) or kill."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from confluent_kafka import ConsumerGroupState, KafkaException
from confluent_kafka.admin import AdminClient

from connectors.client import GuardianClient
from schemas import topics
from streams.app import app_id
from streams.bench.loadgen import Target
from streams.settings import AppSettings


def spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    full_env = None if env is None else {**os.environ, **env}
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
        )


async def wait_for_line(log: Path, line: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while line not in (text := await asyncio.to_thread(log.read_text, errors="replace")):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{log} never said {line!r}:\n{text[-2000:]}")
        await asyncio.sleep(0.1)  # polling a log file inside a deadline loop


async def wait_for_group(
    settings: AppSettings, members: int, procs: list[subprocess.Popen[bytes]]
) -> None:
    """Until every worker holds partitions: a worker joining later would rebalance mid-run."""
    admin = AdminClient(settings.kafka.confluent())
    group = app_id(settings)
    deadline = time.monotonic() + 180
    while True:
        future = admin.describe_consumer_groups([group])[group]
        with contextlib.suppress(KafkaException):  # the group does not exist yet
            described = await asyncio.to_thread(future.result, 10)
            if described.state == ConsumerGroupState.STABLE and len(described.members) == members:
                return
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            raise RuntimeError(f"consumer group {group} never had {members} stable members")
        await asyncio.sleep(0.5)  # polling the group inside a deadline loop


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL, as a crash would: no commit, no clean leave of the consumer group."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


async def ready_target(
    settings: AppSettings, procs: list[subprocess.Popen[bytes]], partitions: int
) -> Target:
    """Once every worker has joined and one request was answered end to end: where the
    load generator sends requests and reads responses."""
    await wait_for_group(settings, len(procs), procs)
    async with GuardianClient(settings.kafka) as client:
        await client.ask("warm up", timeout_s=180)
    ns = settings.kafka.topic_namespace
    return Target(
        settings.kafka,
        topics.qualified(topics.REQUESTS, ns),
        topics.qualified(topics.RESPONSES, ns),
        partitions,
    )
