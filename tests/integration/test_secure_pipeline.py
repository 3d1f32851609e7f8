"""The whole path over SASL_SSL with a private CA, once logged in with PLAIN and once
with SCRAM-SHA-512: topics, a worker answering ``guardian ask``, ``replay
--request-id`` and ``--verify``, ``config set/show/history``, and the client library
(emoji pass intake; hidden selectors and filler-only prompts are rejected)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors import broker
from connectors.broker import BrokerSettings
from connectors.client import GuardianClient
from connectors.kafka import KafkaSettings
from tests.integration.harness import Pipeline, pipeline
from tests.integration.secured import guardian, login_env, secured_broker

pytestmark = pytest.mark.timeout(400)
QUESTION = "What is the capital city of France?"
ANSWER = "The capital city of France is Paris."


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerSettings]:
    with secured_broker(tmp_path_factory.mktemp("secured") / "broker") as settings:
        yield settings


@pytest.fixture(params=["PLAIN", "SCRAM-SHA-512"])
def login(
    request: pytest.FixtureRequest, secured: BrokerSettings, monkeypatch: pytest.MonkeyPatch
) -> KafkaSettings:
    """The login of this run; the test process connects with it too (the harness reads
    its Kafka settings from the environment)."""
    kafka = broker.client_settings(secured, request.param)
    monkeypatch.delenv("GUARDIAN_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    for name, value in login_env(kafka).items():
        monkeypatch.setenv(name, value)
    return kafka


def cli_env(p: Pipeline, kafka: KafkaSettings) -> dict[str, str]:
    return login_env(
        kafka,
        GUARDIAN_KAFKA_TOPIC_NAMESPACE=p.namespace,
        GUARDIAN_KAFKA_PARTITIONS=str(p.partitions),
    )


def ok(env: dict[str, str], *args: str) -> str:
    done = guardian(env, *args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


async def test_the_whole_path_over_sasl_ssl(login: KafkaSettings, tmp_path: Path) -> None:
    env = login_env(login)
    with pipeline(login.bootstrap_servers, tmp_path, partitions=2, **env) as p:
        assert p.kafka.security_protocol == "SASL_SSL"
        cli = cli_env(p, login)
        assert "created 0 topics" in ok(cli, "topics")  # the pipeline provisioned them
        p.start_fixed_answer_worker(ANSWER)

        response = json.loads(ok(cli, "ask", QUESTION, "--json", "--timeout", "180"))
        assert (response["status"], response["content"]) == ("passed", ANSWER)
        rid = response["request_id"]

        assert "ResponseDelivered  passed" in ok(cli, "replay", "--request-id", rid)
        ok(cli, "replay", "--request-id", rid, "--verify")

        ok(cli, "config", "set", "guardian.pass_threshold", "0.65", "--reason", "secured test")
        assert "0.65" in ok(cli, "config", "show")
        assert "secured test" in ok(cli, "config", "history")

        await library_and_intake(p)


async def library_and_intake(p: Pipeline) -> None:
    async with GuardianClient(p.kafka, max_prompt_chars=8000) as client:
        emoji = await client.ask(
            f"{QUESTION} I \u2764\ufe0f France \U0001f1eb\U0001f1f7", timeout_s=120
        )
        assert emoji.status == "passed", emoji.reason
        smuggled = await client.ask(f"{QUESTION} \U0001f600" + "\ufe0f\ufe0e" * 16, timeout_s=60)
        assert (smuggled.status, "variation selectors" in (smuggled.reason or "")) == (
            "rejected",
            True,
        )
        filler = await client.ask("\u3164 \u2800 \u115f", timeout_s=60)
        assert filler.status == "rejected"
        assert "empty" in (filler.reason or "")
        assert client.pending == 0
