"""The client side against a secured broker (SASL_SSL, private CA): honest one-line
errors for a wrong password and an unknown CA, workers that exit on refused credentials
but wait for a broker, prompt size checks before anything is produced, and mutual TLS."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import certifi
import pytest
from aiokafka import TopicPartition

from connectors import broker, kafka_connect
from connectors.admin import ensure_topics
from connectors.broker import BrokerSettings
from connectors.client import GuardianClient
from connectors.errors import (
    KafkaAuthenticationError,
    KafkaTlsError,
    PromptTooLargeError,
)
from connectors.kafka import KafkaSettings
from schemas import topics
from tests.integration.secured import (
    ROOT,
    guardian,
    login_env,
    secured_broker,
    wrong_password,
)
from tests.loopback import free_port

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerSettings]:
    with secured_broker(tmp_path_factory.mktemp("secured") / "broker") as settings:
        yield settings


@pytest.fixture(scope="module")
def scram(secured: BrokerSettings) -> KafkaSettings:
    return broker.client_settings(secured, "SCRAM-SHA-512")


@pytest.fixture
def namespace(scram: KafkaSettings) -> Iterator[KafkaSettings]:
    """``scram`` under a fresh namespace with the request and response topics."""
    kafka = scram.model_copy(update={"topic_namespace": f"t{uuid.uuid4().hex[:12]}"})
    ensure_topics(kafka, [topics.REQUESTS, topics.RESPONSES], partitions=1)
    yield kafka
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(kafka.confluent())
    names = [
        topics.qualified(s, kafka.topic_namespace) for s in (topics.REQUESTS, topics.RESPONSES)
    ]
    for future in admin.delete_topics(names, operation_timeout=30).values():
        future.result(timeout=30)


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The failed command's stderr, which must be one line and no traceback."""
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


# --- logins ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_each_mechanism_logs_in(secured: BrokerSettings, kind: str) -> None:
    kafka = broker.client_settings(secured, kind)  # type: ignore[arg-type]
    await kafka_connect.wait_until_reachable(kafka, deadline_s=0)


async def test_a_wrong_password_is_a_typed_permanent_error(scram: KafkaSettings) -> None:
    with pytest.raises(KafkaAuthenticationError) as caught:
        await kafka_connect.wait_until_reachable(wrong_password(scram), deadline_s=30)
    assert not caught.value.retriable
    assert "not-the-password" not in str(caught.value)


@pytest.mark.parametrize("command", [["ask", "hello"], ["config", "show"], ["topics"]])
def test_a_wrong_password_is_one_line_naming_the_cause(
    scram: KafkaSettings, command: list[str]
) -> None:
    line = one_line(guardian(login_env(wrong_password(scram)), *command, timeout_s=90))
    assert "refused SCRAM-SHA-512 authentication as 'guardian-scram'" in line
    assert "not-the-password" not in line


@pytest.mark.parametrize("command", [["ask", "hello"], ["replay", "--request-id", "r-1"]])
def test_an_unknown_ca_is_one_line_naming_the_cause(
    scram: KafkaSettings, command: list[str]
) -> None:
    untrusting = scram.model_copy(update={"ssl_cafile": Path(certifi.where())})
    line = one_line(guardian(login_env(untrusting), *command, timeout_s=90))
    assert "is not trusted" in line
    assert "GUARDIAN_KAFKA_SSL_CAFILE" in line


async def test_a_client_trusting_another_ca_gets_a_typed_error(scram: KafkaSettings) -> None:
    untrusting = scram.model_copy(update={"ssl_cafile": Path(certifi.where())})
    with pytest.raises(KafkaTlsError):
        async with GuardianClient(untrusting):
            pass


# --- workers -----------------------------------------------------------------------------


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GUARDIAN_", "KAFKA_"))}
    env = base | env | {"GUARDIAN_WORKER_METRICS_PORT": "0", "GUARDIAN_MODEL_BACKEND": "scripted"}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--loglevel", "warning"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def test_a_worker_exits_at_once_on_refused_credentials(
    scram: KafkaSettings, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    proc = start_worker(login_env(wrong_password(scram)), log)
    assert proc.wait(timeout=60) == 1
    text = log.read_text()
    assert "refused SCRAM-SHA-512 authentication" in text
    assert "Traceback" not in text


def test_a_worker_waits_for_a_broker_that_is_not_there(
    scram: KafkaSettings, tmp_path: Path
) -> None:
    absent = scram.model_copy(update={"bootstrap_servers": f"127.0.0.1:{free_port()}"})
    log = tmp_path / "worker.log"
    proc = start_worker(login_env(absent), log)
    try:
        deadline = time.monotonic() + 60
        while "trying again" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
        assert "cannot reach the broker at" in log.read_text()
        assert proc.poll() is None  # still waiting: a broker that is away may come back
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


# --- prompts -----------------------------------------------------------------------------


async def end_offset(kafka: KafkaSettings) -> int:
    consumer = kafka_connect.consumer(kafka)
    await kafka_connect.start(consumer, kafka)
    try:
        tp = TopicPartition(topics.qualified(topics.REQUESTS, kafka.topic_namespace), 0)
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await kafka_connect.stop(consumer)


async def test_an_oversized_prompt_is_refused_and_nothing_is_produced(
    namespace: KafkaSettings,
) -> None:
    async with GuardianClient(namespace, max_prompt_chars=1000) as client:
        with pytest.raises(
            PromptTooLargeError, match="1001 characters; intake accepts at most 1000"
        ):
            await client.ask("x" * 1001, timeout_s=5)
        assert client.pending == 0
    small_requests = namespace.model_copy(update={"max_request_bytes": 4096})
    async with GuardianClient(small_requests) as client:
        with pytest.raises(PromptTooLargeError, match="the producer sends at most 4096"):
            await client.ask("y" * 5000, timeout_s=5)
        assert client.pending == 0
    assert await end_offset(namespace) == 0


def test_ask_reads_a_one_mebibyte_prompt_from_stdin(namespace: KafkaSettings) -> None:
    prompt = ("a" * 1023 + "\n") * 1024
    env = login_env(namespace, GUARDIAN_KAFKA_TOPIC_NAMESPACE=namespace.topic_namespace)
    line = one_line(guardian(env, "ask", "-", stdin=prompt.encode()))
    assert "the prompt has 1048576 characters; intake accepts at most 8000" in line
    assert asyncio.run(end_offset(namespace)) == 0


def test_ask_reads_a_prompt_file(namespace: KafkaSettings, tmp_path: Path) -> None:
    path = tmp_path / "prompt.txt"
    path.write_text("b" * 9000)
    env = login_env(namespace, GUARDIAN_KAFKA_TOPIC_NAMESPACE=namespace.topic_namespace)
    line = one_line(guardian(env, "ask", "--prompt-file", str(path)))
    assert "the prompt has 9000 characters" in line
    missing = one_line(guardian(env, "ask", "--prompt-file", str(tmp_path / "nope.txt")))
    assert "cannot read the prompt file" in missing


# --- mutual TLS --------------------------------------------------------------------------


async def test_mutual_tls_provisions_and_produces(secured: BrokerSettings) -> None:
    mtls = broker.client_settings(secured, "mTLS").model_copy(
        update={"topic_namespace": f"t{uuid.uuid4().hex[:12]}"}
    )
    ensure_topics(mtls, [topics.REQUESTS, topics.RESPONSES], partitions=1)
    async with GuardianClient(mtls) as client:
        await client.submit("Over mutual TLS.")
    assert await end_offset(mtls) == 1
    no_certificate = mtls.model_copy(update={"ssl_certfile": None, "ssl_keyfile": None})
    with pytest.raises(KafkaTlsError, match="requires a client certificate") as caught:
        await kafka_connect.wait_until_reachable(no_certificate, deadline_s=0)
    assert not caught.value.retriable
