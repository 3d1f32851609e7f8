"""Integration fixtures: a real Kafka broker, and uuid-named topics and consumer groups.

The broker is, in order: ``KAFKA_BOOTSTRAP_SERVERS``; the project's local broker
if one answers at its default port (``make test`` starts it); a local broker
started here for the session (``.run/test-broker``, ports 19192/19193); a
testcontainers broker when a Docker engine answers. Without any of them the
tests skip, or fail when ``CI`` is set.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import NoReturn, Protocol

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from connectors import broker
from connectors.broker import BrokerSettings
from connectors.errors import BrokerError
from connectors.kafka import KafkaSettings
from tests.loopback import free_port

_log = logging.getLogger(__name__)

BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"
TEST_BROKER_RUN_DIR = Path(".run/test-broker")
TEST_BROKER_PORTS = (19192, 19193)
ADMIN_TIMEOUT_S = 30.0


class TopicFactory(Protocol):
    """``new_topic(partitions=1) -> name``: a fresh uuid-named topic, deleted after the test."""

    def __call__(self, partitions: int = 1) -> str: ...


def _external_bootstrap() -> str | None:
    return os.environ.get(BOOTSTRAP_ENV) or None


def _unavailable(reasons: list[str]) -> NoReturn:
    """No broker: skip on a laptop, fail in CI."""
    message = "no Kafka broker for integration tests: " + "; ".join(reasons)
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _local_broker(stack: ExitStack, reasons: list[str]) -> str | None:
    """The default local broker if it answers, else one started for this session."""
    default = BrokerSettings()
    if broker.status(default).answering:
        return broker.bootstrap(default)
    port, controller_port = TEST_BROKER_PORTS
    own = BrokerSettings(run_dir=TEST_BROKER_RUN_DIR, port=port, controller_port=controller_port)
    try:
        state = broker.start(own)
    except BrokerError as exc:
        reasons.append(f"local broker: {exc}")
        return None
    stack.callback(broker.stop, own)
    return state.bootstrap


def _docker_answers() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        done = subprocess.run([docker, "info"], capture_output=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def _container_broker(stack: ExitStack, reasons: list[str]) -> str | None:
    """A testcontainers Kafka, when both a Docker engine and testcontainers are here."""
    if not _docker_answers():
        reasons.append("no Docker engine for testcontainers")
        return None
    try:
        kafka = importlib.import_module("testcontainers.kafka")
    except ImportError:
        reasons.append("testcontainers is not installed")
        return None
    container = stack.enter_context(kafka.KafkaContainer())
    return str(container.get_bootstrap_server())


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The bootstrap address of a real Kafka broker for the whole session."""
    with ExitStack() as stack:
        reasons: list[str] = []
        address = (
            _external_bootstrap()
            or _local_broker(stack, reasons)
            or _container_broker(stack, reasons)
        )
        if address is None:
            _unavailable(reasons)
        _log.info("integration tests use the Kafka broker at %s", address)
        yield address


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    """An admin client of the session's broker."""
    return AdminClient(KafkaSettings(bootstrap_servers=kafka_bootstrap).confluent())


@pytest.fixture
def new_topic(kafka_admin: AdminClient) -> Iterator[TopicFactory]:
    """A factory of uuid-named topics; every topic it made is deleted after the test."""
    created: list[str] = []

    def create(partitions: int = 1) -> str:
        name = f"test-{uuid.uuid4().hex}"
        spec = NewTopic(name, num_partitions=partitions)
        futures = kafka_admin.create_topics([spec], operation_timeout=ADMIN_TIMEOUT_S)
        futures[name].result(timeout=ADMIN_TIMEOUT_S)
        created.append(name)
        return name

    yield create
    if created:
        futures = kafka_admin.delete_topics(created, operation_timeout=ADMIN_TIMEOUT_S)
        for future in futures.values():
            future.result(timeout=ADMIN_TIMEOUT_S)


@pytest.fixture
def unique_group() -> Callable[[], str]:
    """A factory of uuid consumer group ids: ``group_id=unique_group()``."""
    return lambda: f"test-{uuid.uuid4().hex}"


def _is_running_local_broker(address: str) -> bool:
    default = BrokerSettings()
    return address == broker.bootstrap(default) and broker.status(default).running


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[BrokerSettings]:
    """Settings of a broker of the test's own (run dir, ports), stopped afterwards.

    Only where the project runs its own brokers: skipped when ``KAFKA_BOOTSTRAP_SERVERS``
    names a broker other than the running local one, failed in CI without Java or Maven.
    """
    external = _external_bootstrap()
    if external is not None and not _is_running_local_broker(external):
        pytest.skip(f"{BOOTSTRAP_ENV} names another broker; this test runs its own process")
    if shutil.which("java") is None or shutil.which("mvn") is None:
        _unavailable(["java or mvn is not installed (run `make deps`)"])
    port = free_port()
    controller_port = free_port()
    while controller_port == port:
        controller_port = free_port()
    settings = BrokerSettings(
        run_dir=tmp_path / "broker", port=port, controller_port=controller_port
    )
    try:
        yield settings
    finally:
        broker.stop(settings)
