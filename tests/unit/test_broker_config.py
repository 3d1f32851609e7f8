"""The local broker's settings, server.properties, JVM and Maven commands (no network)."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from pydantic import ValidationError

from connectors import broker, broker_secure
from connectors.broker import BrokerSettings, bootstrap, new_cluster_id, render_properties
from connectors.broker_fetch import (
    MARKER,
    fetch,
    is_complete,
    java_command,
    libs_dir,
    mvn_command,
)
from connectors.errors import BrokerError, BrokerPortInUseError

DATA = Path("/srv/broker/data")


@pytest.fixture(autouse=True)
def _no_broker_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see the documented defaults whatever the shell exports."""
    for name in BrokerSettings.model_fields:
        monkeypatch.delenv(f"GUARDIAN_BROKER_{name.upper()}", raising=False)


def _properties(settings: BrokerSettings) -> dict[str, str]:
    text = render_properties(settings, DATA)
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_defaults() -> None:
    settings = BrokerSettings()
    assert settings.kafka_version == "4.1.1"
    assert (settings.port, settings.controller_port) == (19092, 19093)
    assert settings.run_dir == Path(".run/broker")
    assert settings.home == Path.home() / ".cache/guardian-cluster/kafka"
    assert settings.heap == "512m"
    assert settings.start_timeout_s == 60
    assert bootstrap(settings) == "127.0.0.1:19092"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDIAN_BROKER_PORT", "29092")
    monkeypatch.setenv("GUARDIAN_BROKER_KAFKA_VERSION", "3.9.1")
    settings = BrokerSettings()
    assert settings.port == 29092
    assert settings.kafka_version == "3.9.1"


def test_settings_are_frozen() -> None:
    settings = BrokerSettings()
    with pytest.raises(ValidationError):
        settings.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "overrides",
    [
        {"kafka_version": "3.8.1"},
        {"kafka_version": "latest"},
        {"port": 19093},
        {"port": 0},
        {"heap": "lots"},
        {"start_timeout_s": 0},
    ],
)
def test_invalid_settings_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        BrokerSettings.model_validate(overrides)


def test_single_kraft_node_on_loopback() -> None:
    props = _properties(BrokerSettings(port=29092, controller_port=29093))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["log.dirs"] == str(DATA)


def test_one_node_replication_and_fast_groups() -> None:
    props = _properties(BrokerSettings())
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "num.partitions",
    ):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "false"
    assert _properties(BrokerSettings(auto_create_topics=True))["auto.create.topics.enable"] == (
        "true"
    )


def test_share_coordinator_settings_only_on_kafka_4() -> None:
    key = "share.coordinator.state.topic.replication.factor"
    assert _properties(BrokerSettings())[key] == "1"
    assert key not in _properties(BrokerSettings(kafka_version="3.9.1"))


@pytest.mark.parametrize(
    ("version", "option", "config"),
    [
        ("4.1.1", "-Dlog4j2.configurationFile=", "log4j2.properties"),
        ("3.9.1", "-Dlog4j.configuration=file:", "log4j.properties"),
    ],
)
def test_java_command_picks_the_logging_backend(version: str, option: str, config: str) -> None:
    settings = BrokerSettings(kafka_version=version, heap="256m")
    command = java_command(settings, "java", Path("/libs"), Path("/run/logs"), ["kafka.Kafka"])
    assert command[0] == "java"
    assert command[-1] == "kafka.Kafka"
    assert command[command.index("-cp") + 1] == "/libs/*"
    assert {"-Xms256m", "-Xmx256m", "-Dkafka.logs.dir=/run/logs"} <= set(command)
    logging_option = next(arg for arg in command if arg.startswith(option))
    assert Path(logging_option.removeprefix(option)).name == config
    assert Path(logging_option.removeprefix(option)).is_file()


def test_mvn_command_selects_the_legacy_profile_for_3_9(tmp_path: Path) -> None:
    modern = mvn_command(BrokerSettings(), "mvn", tmp_path)
    legacy = mvn_command(BrokerSettings(kafka_version="3.9.1"), "mvn", tmp_path)
    assert "-Dkafka.version=4.1.1" in modern
    assert f"-Dlibs.dir={tmp_path}" in modern
    assert not any(arg.startswith("-P") for arg in modern)
    assert "-Dkafka.version=3.9.1" in legacy
    assert "-Pkafka-3.9" in legacy
    pom = Path(modern[modern.index("-f") + 1])
    assert pom.is_file()
    assert "<id>kafka-3.9</id>" in pom.read_text()


def test_cluster_ids_are_kraft_uuids() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cluster_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id)
        assert not cluster_id.startswith("-")


def test_cache_is_per_version_and_complete_only_with_marker(tmp_path: Path) -> None:
    settings = BrokerSettings(home=tmp_path, kafka_version="3.9.1")
    libs = libs_dir(settings)
    assert libs == tmp_path / "3.9.1" / "libs"
    libs.mkdir(parents=True)
    (libs / "kafka_2.13-3.9.1.jar").write_bytes(b"")
    assert not is_complete(libs)
    (libs / MARKER).write_text("kafka_version=3.9.1\n")
    assert is_complete(libs)


def test_fetch_of_a_complete_cache_does_nothing(tmp_path: Path) -> None:
    settings = BrokerSettings(home=tmp_path)
    libs = libs_dir(settings)
    libs.mkdir(parents=True)
    (libs / MARKER).write_text("")
    said: list[str] = []
    assert fetch(settings, said.append) == libs
    assert said == []


def test_start_refuses_a_port_taken_by_another_process(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        settings = BrokerSettings(run_dir=tmp_path, home=tmp_path / "cache", port=port)
        with pytest.raises(BrokerPortInUseError, match=re.escape(f"127.0.0.1:{port} is in use")):
            broker.start(settings)
    assert not (tmp_path / "cache").exists()  # refused before fetching anything


def test_start_refuses_data_formatted_by_a_newer_kafka(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "meta.properties").write_text("version=1\n")
    (tmp_path / "formatted-by.version").write_text("4.1.1\n")
    with socket.socket() as first, socket.socket() as second:
        first.bind(("127.0.0.1", 0))
        second.bind(("127.0.0.1", 0))
        ports = first.getsockname()[1], second.getsockname()[1]
    settings = BrokerSettings(
        run_dir=tmp_path, kafka_version="3.9.1", port=ports[0], controller_port=ports[1]
    )
    with pytest.raises(BrokerError, match=re.escape("formatted by Kafka 4.1.1")):
        broker.start(settings)


def test_status_of_a_broker_never_started(tmp_path: Path) -> None:
    state = broker.status(BrokerSettings(run_dir=tmp_path, port=1, controller_port=2))
    assert (state.running, state.pid, state.answering) == (False, None, False)
    assert state.bootstrap == "127.0.0.1:1"


def _secure_properties(settings: BrokerSettings) -> dict[str, str]:
    material = broker_secure.ensure_material(settings.run_dir)
    text = render_properties(settings, DATA, material)
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_a_secured_broker_serves_sasl_ssl_only(tmp_path: Path) -> None:
    settings = BrokerSettings(run_dir=tmp_path, secure=True, mtls_port=19094)
    props = _secure_properties(settings)
    assert props["listeners"] == (
        "SASL_SSL://127.0.0.1:19092,SSL://127.0.0.1:19094,CONTROLLER://127.0.0.1:19093"
    )
    assert props["advertised.listeners"] == "SASL_SSL://127.0.0.1:19092,SSL://127.0.0.1:19094"
    assert "PLAINTEXT://" not in props["listeners"]
    assert props["inter.broker.listener.name"] == "SASL_SSL"
    assert props["sasl.enabled.mechanisms"] == "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
    assert props["listener.name.ssl.ssl.client.auth"] == "required"
    assert props["ssl.keystore.type"] == props["ssl.truststore.type"] == "PEM"
    users = broker_secure.ensure_material(tmp_path)[1]
    plain = props["listener.name.sasl_ssl.plain.sasl.jaas.config"]
    assert f'user_guardian="{users.plain_password.get_secret_value()}"' in plain
    scram = broker_secure.scram_format_args(users)
    assert scram[0::2] == ["--add-scram", "--add-scram"]
    assert scram[3].startswith("SCRAM-SHA-512=[name=guardian-scram,password=")


def test_the_broker_certificate_names_loopback(tmp_path: Path) -> None:
    from cryptography import x509

    files, _ = broker_secure.ensure_material(tmp_path)
    cert = x509.load_pem_x509_certificate(files.broker_cert.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert oct(files.users.stat().st_mode & 0o777) == "0o600"


def test_material_is_made_once_and_kept(tmp_path: Path) -> None:
    first = broker_secure.ensure_material(tmp_path)
    again = broker_secure.ensure_material(tmp_path)
    assert first[1] == again[1]
    assert first[0].ca.read_bytes() == again[0].ca.read_bytes()


def test_clients_of_a_secured_broker_log_in_with_its_users(tmp_path: Path) -> None:
    settings = BrokerSettings(run_dir=tmp_path, secure=True, mtls_port=19094)
    scram = broker.client_settings(settings, "SCRAM-SHA-512")
    assert (scram.security_protocol, scram.sasl_username) == ("SASL_SSL", "guardian-scram")
    assert scram.ssl_cafile == tmp_path.resolve() / "tls" / "ca.pem"
    mtls = broker.client_settings(settings, "mTLS")
    assert (mtls.bootstrap_servers, mtls.security_protocol) == ("127.0.0.1:19094", "SSL")
    assert mtls.ssl_certfile is not None
    plain = broker.client_settings(BrokerSettings(run_dir=tmp_path))
    assert plain.security_protocol == "PLAINTEXT"


def test_a_mutual_tls_port_needs_a_secured_broker() -> None:
    with pytest.raises(ValidationError, match="mtls_port needs secure"):
        BrokerSettings(mtls_port=19094)
