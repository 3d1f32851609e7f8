"""The processes a chaos run owns: its workers (spawned, killed with SIGKILL, restarted)
and, when it started one, its broker (SIGKILL and restart, SIGSTOP and SIGCONT). Nothing
else is ever signalled."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from connectors import broker
from connectors.broker import BrokerSettings
from connectors.broker_fetch import wait_exit
from streams.app import app_id
from streams.bench.procs import kill, spawn, stop, wait_for_group
from streams.settings import AppSettings

_JOIN_TIMEOUT_S = 180.0


def namespace_env(settings: AppSettings) -> dict[str, str]:
    """What a worker of this run needs to serve ``settings``' namespace: its broker and
    partition count, no metrics port and no shared answer cache."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "GUARDIAN_KAFKA_PARTITIONS": str(settings.kafka.partitions),
        "GUARDIAN_WORKER_METRICS_PORT": "0",
        "GUARDIAN_CACHE_BACKEND": "off",
    }


@dataclass
class Workers:
    """``count`` pipeline workers in the settings' namespace, each with its own log."""

    settings: AppSettings
    env: dict[str, str]
    out: Path
    count: int
    static_membership: bool = False
    """Each slot keeps one group instance id across restarts: a replacement that joins
    within the session timeout takes its slot's partitions back with no rebalance."""
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started: int = 0
    exited_by_themselves: int = 0

    def start_all(self) -> None:
        self.procs = [self._spawn(slot) for slot in range(self.count)]

    def _spawn(self, slot: int) -> subprocess.Popen[bytes]:
        self.started += 1
        n = self.started
        env = self.env | {"GUARDIAN_WORKER_DATA_DIR": str(self.out / f"worker-data-{n}")}
        if self.static_membership:
            namespace = self.settings.kafka.topic_namespace
            env["GUARDIAN_WORKER_INSTANCE_ID"] = f"{namespace}-worker-{slot}"
        cmd = [sys.executable, "-m", "streams.cli", "worker", "--loglevel", "warning"]
        cmd += ["--namespace", self.settings.kafka.topic_namespace]
        return spawn(cmd, self.out / f"worker-{n}.log", env)

    def kill_one(self, index: int) -> None:
        """SIGKILL worker ``index`` and start its replacement at once."""
        kill(self.procs[index])
        self.procs[index] = self._spawn(index)

    def replace_exited(self) -> int:
        """Restart the workers that exited without being killed; how many there were."""
        exited = [i for i, p in enumerate(self.procs) if p.poll() is not None]
        for i in exited:
            self.procs[i] = self._spawn(i)
        self.exited_by_themselves += len(exited)
        return len(exited)

    async def joined(self, before: frozenset[str] = frozenset()) -> None:
        """Until every worker holds partitions in one stable group whose members are not
        all from ``before`` (a killed worker's replacement has joined)."""
        deadline = time.monotonic() + _JOIN_TIMEOUT_S
        while True:
            try:
                await wait_for_group(self.settings, self.count, self.procs)
            except TimeoutError:  # the coordinator did not answer in time: ask again
                if time.monotonic() > deadline:
                    raise
                continue
            if not before or not before >= await self.members():
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the group never took in the restarted worker")
            await asyncio.sleep(0.5)  # polling the group inside a deadline loop

    async def members(self) -> frozenset[str]:
        """Member ids of the workers' consumer group now."""
        admin = AdminClient(self.settings.kafka.confluent())
        group = app_id(self.settings)
        future = admin.describe_consumer_groups([group])[group]
        try:
            described = await asyncio.to_thread(future.result, 10)
        except (KafkaException, TimeoutError):
            return frozenset()
        return frozenset(m.member_id for m in described.members)

    def stop_all(self) -> None:
        for p in self.procs:
            stop(p)


@dataclass(frozen=True)
class OwnBroker:
    """A broker this run started (its own run dir and ports): the only one it faults."""

    settings: BrokerSettings

    def pid(self) -> int:
        pid = broker.status(self.settings).pid
        if pid is None:
            raise RuntimeError("the run's broker is not running")
        return pid

    async def kill_and_restart(self) -> None:
        pid = self.pid()
        os.kill(pid, signal.SIGKILL)
        await asyncio.to_thread(wait_exit, pid, 30.0)
        await asyncio.to_thread(broker.start, self.settings)

    async def pause(self, seconds: float) -> None:
        pid = self.pid()
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(seconds)  # the fault itself: the broker frozen this long
        finally:
            os.kill(pid, signal.SIGCONT)
