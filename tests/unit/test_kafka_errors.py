"""How connection failures are named, and how the guardian command reports them and
reads prompts (no network)."""

from __future__ import annotations

import argparse
import io
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed
from pydantic import SecretStr

from connectors import kafka_connect
from connectors.errors import KafkaAuthenticationError, KafkaUnavailableError
from connectors.kafka import KafkaSettings
from streams import cli_errors
from streams.cli_errors import PromptInputError, read_prompt, run_reporting

SCRAM = KafkaSettings.of(
    bootstrap_servers="k1:9094, [::1]:9095",
    security_protocol="SASL_SSL",
    sasl_mechanism="SCRAM-SHA-512",
    sasl_username="alice",
    sasl_password=SecretStr("pw-123456"),
)


def test_bootstrap_hosts_are_parsed() -> None:
    assert kafka_connect._hosts(SCRAM) == [("k1", 9094), ("::1", 9095)]


async def test_an_authentication_failure_names_the_login_not_the_password() -> None:
    failure = SaslAuthenticationFailed("Authentication failed: Invalid username or password")
    error = await kafka_connect.diagnose(SCRAM, failure)
    assert isinstance(error, KafkaAuthenticationError)
    assert not error.retriable
    assert "refused SCRAM-SHA-512 authentication as 'alice'" in str(error)
    assert "Invalid username or password" in str(error)
    assert "pw-123456" not in str(error)


def test_an_untrusted_certificate_points_at_the_ca_setting() -> None:
    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_message = "self-signed certificate in certificate chain"
    error = kafka_connect._untrusted("k1:9094", exc)
    assert "not trusted (self-signed certificate in certificate chain)" in str(error)
    assert "GUARDIAN_KAFKA_SSL_CAFILE" in str(error)
    exc.verify_message = "Hostname mismatch, certificate is not valid for 'k1'."
    assert "GUARDIAN_KAFKA_SSL_CHECK_HOSTNAME" in str(kafka_connect._untrusted("k1:9094", exc))


def failing(exc: BaseException) -> cli_errors.Handler:
    def handler(_: argparse.Namespace) -> int:
        raise exc

    return handler


def test_a_typed_error_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    code = run_reporting(
        failing(KafkaUnavailableError("no Kafka broker answered")), argparse.Namespace()
    )
    assert code == 1
    assert capsys.readouterr().err == "guardian: no Kafka broker answered\n"


def test_an_untyped_kafka_error_is_diagnosed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def diagnose(settings: KafkaSettings, exc: BaseException) -> Any:
        return KafkaAuthenticationError(f"diagnosed {type(exc).__name__}")

    monkeypatch.setattr(kafka_connect, "diagnose", diagnose)
    code = run_reporting(failing(KafkaConnectionError("Unable to bootstrap")), argparse.Namespace())
    assert code == 1
    assert capsys.readouterr().err == "guardian: diagnosed KafkaConnectionError\n"


def test_invalid_settings_are_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GUARDIAN_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")

    def handler(_: argparse.Namespace) -> int:
        KafkaSettings()
        return 0

    assert run_reporting(handler, argparse.Namespace()) == 1
    err = capsys.readouterr().err
    assert err.startswith("guardian: invalid settings: ")
    assert err.count("\n") == 1
    assert "needs sasl_mechanism" in err


def test_prompts_come_from_the_argument_stdin_or_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert read_prompt("hello", None) == "hello"
    big = "é" * (512 * 1024)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(big.encode())))
    assert read_prompt("-", None) == big
    path = tmp_path / "p.txt"
    path.write_text("from a file ❤️")
    assert read_prompt(None, path) == "from a file ❤️"


@pytest.mark.parametrize(
    ("text", "content", "message"),
    [
        (None, None, "give a prompt"),
        (None, b"\xff\xfe", "is not UTF-8"),
    ],
)
def test_unreadable_prompts_are_typed_errors(
    tmp_path: Path, text: str | None, content: bytes | None, message: str
) -> None:
    path = None
    if content is not None:
        path = tmp_path / "bad.txt"
        path.write_bytes(content)
    with pytest.raises(PromptInputError, match=message):
        read_prompt(text, path)
    with pytest.raises(PromptInputError, match="cannot read the prompt file"):
        read_prompt(None, tmp_path / "missing.txt")
