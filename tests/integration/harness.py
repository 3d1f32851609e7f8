"""A pipeline under test: its own topic namespace, a scripted model, worker processes
started and killed for real, and readers of what the pipeline wrote. Every topic and
consumer group of the namespace is deleted once its workers have stopped."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import TopicPartition

from connectors import kafka_connect
from connectors.admin import delete_namespace, delete_namespace_groups, ensure_topics
from connectors.kafka import KafkaSettings
from schemas import topics
from schemas.codec import Codec
from schemas.envelope import Event
from schemas.request_events import ResponseDelivered, TaskAssigned
from schemas.topics import TopicSpec, qualified
from tests.fake_model_service import MODEL

_log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
E = TypeVar("E", bound=Event)
ADMIN_TIMEOUT_S = 30.0


@dataclass
class Pipeline:
    bootstrap: str
    tmp: Path
    namespace: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:12]}")
    partitions: int = 3
    env: dict[str, str] = field(default_factory=dict)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def kafka(self) -> KafkaSettings:
        return KafkaSettings(
            bootstrap_servers=self.bootstrap,
            topic_namespace=self.namespace,
            partitions=self.partitions,
        )

    def topic(self, spec: TopicSpec) -> str:
        return qualified(spec, self.namespace)

    def provision(self) -> None:
        ensure_topics(self.kafka, topics.ALL, partitions=self.partitions)

    def delete_topics(self) -> list[str]:
        """Delete every topic of the namespace, faust's own included."""
        return delete_namespace(self.kafka, ADMIN_TIMEOUT_S)

    def delete_groups(self) -> list[str]:
        """Delete the namespace's consumer groups (the workers')."""
        return delete_namespace_groups(self.kafka, ADMIN_TIMEOUT_S)

    def worker_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDIAN_")}
        env |= {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "GUARDIAN_KAFKA_TOPIC_NAMESPACE": self.namespace,
            "GUARDIAN_KAFKA_PARTITIONS": str(self.partitions),
            "GUARDIAN_WORKER_DATA_DIR": str(self.tmp / "worker-data"),
            "GUARDIAN_WORKER_SESSION_TIMEOUT_S": "6",
            "GUARDIAN_WORKER_HEARTBEAT_S": "1",
            "GUARDIAN_WORKER_METRICS_PORT": "0",
            # Tests that ask one question many times mean to reach the model each time.
            "GUARDIAN_CACHE_BACKEND": "off",
        }
        return env | self.env | extra

    def start_worker(self, **extra: str) -> subprocess.Popen[bytes]:
        index = len(self.workers)
        with (self.tmp / f"worker-{index}.log").open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker", "--loglevel", "warning"],
                cwd=ROOT,
                env=self.worker_env(**extra),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.workers.append(proc)
        return proc

    def log(self, index: int = -1) -> str:
        n = index if index >= 0 else len(self.workers) + index
        return (self.tmp / f"worker-{n}.log").read_text(errors="replace")

    def kill9(self, proc: subprocess.Popen[bytes]) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def start_fixed_answer_worker(self, answer: str, **extra: str) -> subprocess.Popen[bytes]:
        """A worker whose model always gives ``answer``, scored by the cheap hashing
        embedder without PII checks: the score depends on the words alone."""
        return self.start_scripted_worker({"default": {"answer": answer}}, **extra)

    def start_scripted_worker(
        self, script: dict[str, Any] | Path, **extra: str
    ) -> subprocess.Popen[bytes]:
        """A worker whose model follows ``script`` (a dict is written to a file first),
        scored by the cheap hashing embedder without PII checks."""
        if isinstance(script, dict):
            path = self.tmp / f"script-{uuid.uuid4().hex[:6]}.json"
            path.write_text(json.dumps(script))
            script = path
        return self.start_worker(
            GUARDIAN_MODEL_BACKEND="scripted",
            GUARDIAN_MODEL_SCRIPT_PATH=str(script),
            GUARDIAN_GUARD_EMBEDDER="hashing",
            GUARDIAN_GUARD_PII_CHECK="false",
            **extra,
        )

    def start_served_worker(self, base_url: str, **extra: str) -> subprocess.Popen[bytes]:
        """A worker whose model is the OpenAI-compatible service at ``base_url`` (a fake
        on loopback), scored by the hashing embedder without PII checks."""
        return self.start_worker(
            GUARDIAN_MODEL_BACKEND="openai",
            GUARDIAN_OPENAI_BASE_URL=base_url,
            GUARDIAN_OPENAI_MODEL=MODEL,
            GUARDIAN_GUARD_EMBEDDER="hashing",
            GUARDIAN_GUARD_PII_CHECK="false",
            **extra,
        )

    def write_script(self, entries: dict[str, list[dict[str, Any]]]) -> Path:
        path = self.tmp / f"script-{uuid.uuid4().hex[:6]}.json"
        path.write_text(json.dumps({"entries": entries}))
        return path


@contextmanager
def pipeline(bootstrap: str, tmp: Path, *, partitions: int = 3, **env: str) -> Iterator[Pipeline]:
    """A provisioned namespace; on leaving, its workers are stopped and its topics deleted."""
    p = Pipeline(bootstrap=bootstrap, tmp=tmp, env=env, partitions=partitions)
    try:
        p.provision()
        yield p
    finally:
        try:
            p.stop_all()
        finally:
            p.delete_topics()
            p.delete_groups()


def _partitions(p: Pipeline, spec: TopicSpec) -> int:
    return p.partitions if spec.scales_with_workers else spec.partitions


async def read_until(
    p: Pipeline,
    spec: TopicSpec,
    model: type[E],
    done: Callable[[list[E]], bool],
    *,
    timeout_s: float,
) -> list[E]:
    """Events of ``spec`` from the beginning until ``done(events)`` or the deadline;
    then on to the end offsets of that moment, so late duplicates are seen too."""
    codec = Codec()
    name = p.topic(spec)
    consumer = kafka_connect.consumer(p.kafka)
    await kafka_connect.start(consumer, p.kafka)
    try:
        parts = [TopicPartition(name, i) for i in range(_partitions(p, spec))]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        found: list[E] = []
        deadline = time.monotonic() + timeout_s
        while not done(found) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            found += [codec.decode(r.value, model) for rs in batch.values() for r in rs]
        ends = await consumer.end_offsets(parts)
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            batch = await consumer.getmany(timeout_ms=500)
            found += [codec.decode(r.value, model) for rs in batch.values() for r in rs]
        return found
    finally:
        await consumer.stop()


async def until_logged(p: Pipeline, text: str, *, timeout_s: float) -> None:
    """Wait until the worker logs ``text``; fail with the log's tail at the deadline."""
    deadline = time.monotonic() + timeout_s
    while text not in p.log():
        assert time.monotonic() < deadline, p.log()[-2000:]
        await asyncio.sleep(0.2)  # polling the worker's log inside a deadline


def covers(ids: set[str]) -> Callable[[list[E]], bool]:
    """A ``done`` predicate: every id in ``ids`` has at least one event (a response only
    when it is the request's final answer)."""
    return lambda events: ids <= {e.request_id for e in events if _of_request(e)}


def by_request(events: Iterable[E]) -> dict[str, list[E]]:
    """Events by request id, leaving out replies to other submissions of a request id
    (a conflicting resend's rejection): never a request's answer."""
    grouped: dict[str, list[E]] = {}
    for e in events:
        if _of_request(e):
            grouped.setdefault(e.request_id, []).append(e)
    return grouped


def _of_request(event: Event) -> bool:
    return not isinstance(event, ResponseDelivered) or event.is_final


def answered_without_gaps(
    ids: set[str], responses: Iterable[ResponseDelivered], tasks: Iterable[TaskAssigned]
) -> tuple[dict[str, list[ResponseDelivered]], dict[str, set[int]]]:
    """The final responses of ``ids`` and the task rounds, by request; fails unless every
    request got a final answer and no request skipped a round."""
    answers = {rid: rs for rid, rs in by_request(responses).items() if rid in ids}
    assert set(answers) == ids, "every request got a final answer"
    rounds = {rid: {t.round for t in ts} for rid, ts in by_request(tasks).items()}
    for rid in answers:
        got = rounds[rid]
        assert got == set(range(1, max(got) + 1)), f"{rid} skipped a round: {got}"
    return answers, rounds


async def run_cli(args: list[str], env: dict[str, str], timeout_s: float = 120) -> str:
    """``guardian <args>`` as a process; its output, once it exited 0."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streams.cli",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode == 0, out.decode()
    return out.decode()
