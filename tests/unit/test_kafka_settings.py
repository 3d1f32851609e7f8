"""The one connection model, rendered for each client (faust, aiokafka, confluent-kafka)
under each security protocol; secrets stay out of reprs and errors (no network)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from faust.auth import SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import SecretStr, ValidationError

from connectors import broker_secure
from connectors.errors import KafkaConfigError
from connectors.kafka import KafkaSettings

PASSWORD = "s3cret-pw-0123"
KEY_PASSWORD = "key-pw-4567"
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> broker_secure.SecureFiles:
    """A CA and a client certificate, made by the secured broker's own recipe."""
    files, _ = broker_secure.ensure_material(tmp_path_factory.mktemp("tls"))
    return files


def settings(protocol: str, tls: broker_secure.SecureFiles, **extra: Any) -> KafkaSettings:
    fields: dict[str, Any] = {"bootstrap_servers": "b1:9093,b2:9093", "security_protocol": protocol}
    if "SASL" in protocol:
        fields |= {
            "sasl_mechanism": extra.pop("mechanism", "SCRAM-SHA-512"),
            "sasl_username": "alice",
            "sasl_password": SecretStr(PASSWORD),
        }
    if "SSL" in protocol:
        fields["ssl_cafile"] = tls.ca
    return KafkaSettings.of(**(fields | extra))


def test_plaintext_renders_no_tls_and_no_login(tls_files: broker_secure.SecureFiles) -> None:
    s = settings("PLAINTEXT", tls_files)
    assert s.aiokafka() == {
        "bootstrap_servers": "b1:9093,b2:9093",
        "security_protocol": "PLAINTEXT",
        "client_id": "guardian-cluster",
    }
    assert s.faust_credentials() is None
    assert s.ssl_context() is None
    conf = s.confluent()
    assert conf["security.protocol"] == "PLAINTEXT"
    assert not [key for key in conf if key.startswith(("ssl.", "sasl."))]


def test_ssl_renders_a_context_trusting_the_ca(tls_files: broker_secure.SecureFiles) -> None:
    s = settings("SSL", tls_files)
    cfg = s.aiokafka()
    context = cfg["ssl_context"]
    assert cfg["security_protocol"] == "SSL"
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert "Guardian Cluster dev CA" in str(context.get_ca_certs())
    assert not [key for key in cfg if key.startswith("sasl")]
    credentials = s.faust_credentials()
    assert isinstance(credentials, SSLCredentials)
    assert credentials_to_aiokafka_auth(credentials)["security_protocol"] == "SSL"
    conf = s.confluent()
    assert conf["security.protocol"] == "SSL"
    assert conf["ssl.ca.location"] == str(tls_files.ca)
    assert conf["ssl.endpoint.identification.algorithm"] == "https"
    assert not [key for key in conf if key.startswith("sasl.")]


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_sasl_renders_the_login_for_every_client(
    protocol: str, mechanism: str, tls_files: broker_secure.SecureFiles
) -> None:
    s = settings(protocol, tls_files, mechanism=mechanism)
    cfg = s.aiokafka()
    assert cfg["security_protocol"] == protocol
    assert cfg["sasl_mechanism"] == mechanism
    assert (cfg["sasl_plain_username"], cfg["sasl_plain_password"]) == ("alice", PASSWORD)
    assert isinstance(cfg.get("ssl_context"), ssl.SSLContext) == (protocol == "SASL_SSL")

    credentials = s.faust_credentials()
    assert isinstance(credentials, SASLCredentials)
    faust_cfg = credentials_to_aiokafka_auth(credentials)
    # faust's driver hands aiokafka the same protocol, mechanism and login.
    for key in ("security_protocol", "sasl_mechanism", "sasl_plain_username"):
        assert faust_cfg[key] == cfg[key]
    assert faust_cfg["sasl_plain_password"] == PASSWORD
    assert (faust_cfg["ssl_context"] is None) == (protocol == "SASL_PLAINTEXT")

    conf = s.confluent()
    assert conf["security.protocol"] == protocol
    assert conf["sasl.mechanism"] == mechanism
    assert (conf["sasl.username"], conf["sasl.password"]) == ("alice", PASSWORD)
    assert ("ssl.ca.location" in conf) == (protocol == "SASL_SSL")


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])
async def test_aiokafka_accepts_every_rendering(
    protocol: str, tls_files: broker_secure.SecureFiles
) -> None:
    # aiokafka checks protocol, context and mechanism when a client is built.
    producer = AIOKafkaProducer(**settings(protocol, tls_files).aiokafka_producer())
    await producer.stop()


def test_mutual_tls_loads_the_client_certificate(tls_files: broker_secure.SecureFiles) -> None:
    s = settings(
        "SSL", tls_files, ssl_certfile=tls_files.client_cert, ssl_keyfile=tls_files.client_key
    )
    assert isinstance(s.ssl_context(), ssl.SSLContext)
    conf = s.confluent()
    assert conf["ssl.certificate.location"] == str(tls_files.client_cert)
    assert conf["ssl.key.location"] == str(tls_files.client_key)
    assert "ssl.key.password" not in conf


def test_an_encrypted_client_key_takes_its_password(
    tls_files: broker_secure.SecureFiles, tmp_path: Path
) -> None:
    key = tmp_path / "client-encrypted.key"
    _encrypt(tls_files.client_key, key, KEY_PASSWORD)
    s = settings(
        "SSL",
        tls_files,
        ssl_certfile=tls_files.client_cert,
        ssl_keyfile=key,
        ssl_key_password=SecretStr(KEY_PASSWORD),
    )
    assert isinstance(s.ssl_context(), ssl.SSLContext)
    assert s.confluent()["ssl.key.password"] == KEY_PASSWORD
    wrong = s.model_copy(update={"ssl_key_password": SecretStr("not-it")})
    with pytest.raises(KafkaConfigError) as caught:
        wrong.ssl_context()
    assert "not-it" not in str(caught.value)
    assert str(key) in str(caught.value)


def _encrypt(plain: Path, out: Path, password: str) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(plain.read_bytes(), password=None)
    out.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password.encode()),
        )
    )


def test_hostname_checking_can_be_turned_off(tls_files: broker_secure.SecureFiles) -> None:
    s = settings("SASL_SSL", tls_files, ssl_check_hostname=False)
    context = s.aiokafka()["ssl_context"]
    assert not context.check_hostname
    assert context.verify_mode is ssl.CERT_REQUIRED  # the chain is still verified
    assert s.confluent()["ssl.endpoint.identification.algorithm"] == "none"


def test_a_missing_ca_file_is_a_typed_error_naming_it(tls_files: broker_secure.SecureFiles) -> None:
    s = settings("SASL_SSL", tls_files, ssl_cafile=Path("/nowhere/ca.pem"))
    with pytest.raises(KafkaConfigError, match=r"/nowhere/ca\.pem") as caught:
        s.aiokafka()
    assert not caught.value.retriable
    assert PASSWORD not in str(caught.value)


def test_secrets_stay_out_of_reprs(tls_files: broker_secure.SecureFiles) -> None:
    s = settings("SASL_SSL", tls_files)
    for shown in (repr(s), str(s), s.describe(), repr(s.faust_credentials())):
        assert PASSWORD not in shown
    assert s.describe() == "b1:9093,b2:9093 (SASL_SSL SCRAM-SHA-512 as 'alice')"


INVALID = [
    pytest.param(
        {"security_protocol": "SASL_SSL"}, "needs sasl_mechanism", id="sasl-without-login"
    ),
    pytest.param(
        {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "a"},
        "needs sasl_mechanism",
        id="sasl-without-password",
    ),
    pytest.param(
        {"sasl_mechanism": "PLAIN", "sasl_username": "a", "sasl_password": "b"},
        "use SASL_PLAINTEXT or SASL_SSL",
        id="mechanism-over-plaintext",
    ),
    pytest.param({"ssl_cafile": "/ca.pem"}, "use SSL or SASL_SSL", id="ca-over-plaintext"),
    pytest.param(
        {"security_protocol": "SSL", "ssl_keyfile": "/k.pem"},
        "without ssl_certfile",
        id="key-alone",
    ),
    pytest.param({"sasl_mechanism": "GSSAPI"}, "sasl_mechanism", id="unsupported-mechanism"),
]


@pytest.mark.parametrize(("fields", "message"), INVALID)
def test_inconsistent_settings_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        KafkaSettings.of(**fields)


def test_the_environment_configures_the_connection(
    monkeypatch: pytest.MonkeyPatch, tls_files: broker_secure.SecureFiles
) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "k:9094",
        "GUARDIAN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "GUARDIAN_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "GUARDIAN_KAFKA_SASL_USERNAME": "bob",
        "GUARDIAN_KAFKA_SASL_PASSWORD": PASSWORD,
        "GUARDIAN_KAFKA_SSL_CAFILE": str(tls_files.ca),
        "GUARDIAN_KAFKA_SSL_CHECK_HOSTNAME": "false",
    }
    monkeypatch.delenv("GUARDIAN_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = KafkaSettings()
    assert (s.bootstrap_servers, s.sasl_mechanism, s.sasl_username) == (
        "k:9094",
        "SCRAM-SHA-256",
        "bob",
    )
    assert s.ssl_cafile == tls_files.ca
    assert not s.ssl_check_hostname
    assert isinstance(s.sasl_password, SecretStr)
    # Settings given in code ignore the environment.
    assert KafkaSettings.of().security_protocol == "PLAINTEXT"


def test_exports_reproduce_the_settings(
    monkeypatch: pytest.MonkeyPatch, tls_files: broker_secure.SecureFiles
) -> None:
    s = settings("SASL_SSL", tls_files)
    for line in broker_secure.exports(s):
        name, _, value = line.removeprefix("export ").partition("=")
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GUARDIAN_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    loaded = KafkaSettings()
    assert loaded.aiokafka().keys() == s.aiokafka().keys()
    assert loaded.confluent() == s.confluent()


def test_an_empty_variable_unsets_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDIAN_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    monkeypatch.setenv("GUARDIAN_KAFKA_SSL_CAFILE", "")
    monkeypatch.setenv("GUARDIAN_KAFKA_SASL_MECHANISM", "")
    s = KafkaSettings()
    assert (s.ssl_cafile, s.sasl_mechanism) == (None, None)
