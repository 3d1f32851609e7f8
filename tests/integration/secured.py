"""A secured local broker for a test module: SASL_SSL with a private CA, PLAIN and
SCRAM users, and a mutual-TLS port; and the guardian command run as one of its
clients."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydantic import SecretStr

from connectors import broker
from connectors.broker import BrokerSettings
from connectors.broker_secure import exports
from connectors.kafka import KafkaSettings
from tests.loopback import free_port

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"


def _distinct_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


@contextmanager
def secured_broker(run_dir: Path) -> Iterator[BrokerSettings]:
    """A secured broker of its own run dir and ports, stopped on leaving. Skipped where
    the project does not run its own brokers; failed in CI without Java or openssl."""
    if os.environ.get(BOOTSTRAP_ENV) and os.environ[BOOTSTRAP_ENV] != "127.0.0.1:19092":
        pytest.skip(f"{BOOTSTRAP_ENV} names another broker; this test runs its own process")
    missing = [tool for tool in ("java", "mvn", "openssl") if shutil.which(tool) is None]
    if missing:
        message = f"{', '.join(missing)} not installed (run `make deps`)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    port, controller, mtls = _distinct_ports(3)
    settings = BrokerSettings(
        run_dir=run_dir, port=port, controller_port=controller, mtls_port=mtls, secure=True
    )
    try:
        broker.start(settings)
        yield settings
    finally:
        broker.stop(settings)


def login_env(kafka: KafkaSettings, **extra: str) -> dict[str, str]:
    """The environment of a guardian process connecting as ``kafka`` says (secrets too)."""
    env = {}
    for line in exports(kafka):
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value
    return env | extra


def wrong_password(kafka: KafkaSettings) -> KafkaSettings:
    return kafka.model_copy(update={"sasl_password": SecretStr("not-the-password")})


def guardian(
    env: dict[str, str], *args: str, stdin: bytes | None = None, timeout_s: float = 150
) -> subprocess.CompletedProcess[str]:
    """Run ``guardian <args>`` with only ``env``'s Kafka settings (none of the shell's)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GUARDIAN_", "KAFKA_"))}
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        cwd=ROOT,
        env=base | env,
        input=stdin,
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    return subprocess.CompletedProcess(
        done.args,
        done.returncode,
        done.stdout.decode(errors="replace"),
        done.stderr.decode(errors="replace"),
    )
