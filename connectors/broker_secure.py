"""The local broker's secured mode: a private CA, a broker certificate, SASL users.

``guardian broker start --secure`` serves SASL_SSL (PLAIN, SCRAM-SHA-256 and
SCRAM-SHA-512) with a certificate for ``IP:127.0.0.1`` and ``DNS:localhost`` signed by
a CA made for this run folder, and, with a mutual-TLS port, an SSL listener that
requires a client certificate signed by the same CA. Keys, certificates and passwords
are made once with ``openssl`` into ``<run dir>/tls`` (owner-only) and kept; SCRAM
credentials are written into the KRaft metadata when the storage is formatted.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, SecretStr

from connectors.errors import BrokerError, ToolNotFoundError
from connectors.kafka import KafkaSettings, Mechanism

SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
_DAYS = "825"
_PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
_SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"


class SecureUsers(BaseModel):
    """The broker's SASL users: one PLAIN, one SCRAM (both SHA-256 and SHA-512), and
    the broker's own inter-broker login."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    plain_user: str = "guardian"
    plain_password: SecretStr
    scram_user: str = "guardian-scram"
    scram_password: SecretStr
    broker_user: str = "broker"
    broker_password: SecretStr

    @classmethod
    def generate(cls) -> SecureUsers:
        return cls(
            plain_password=SecretStr(secrets.token_hex(16)),
            scram_password=SecretStr(secrets.token_hex(16)),
            broker_password=SecretStr(secrets.token_hex(16)),
        )


class SecureFiles:
    """The files of ``<run dir>/tls``."""

    def __init__(self, run_root: Path) -> None:
        self.root = run_root / "tls"
        self.ca_key = self.root / "ca.key"
        self.ca = self.root / "ca.pem"
        self.broker_key = self.root / "broker.key"
        self.broker_cert = self.root / "broker.crt"
        self.keystore = self.root / "broker.pem"
        self.client_key = self.root / "client.key"
        self.client_cert = self.root / "client.crt"
        self.users = self.root / "users.json"
        self.scram_formatted = self.root / "scram.formatted"

    def complete(self) -> bool:
        made = (self.ca, self.keystore, self.client_cert, self.client_key, self.users)
        return all(path.exists() for path in made)


Material = tuple["SecureFiles", SecureUsers]
"""The TLS files and the users of one run folder."""


def ensure_material(run_root: Path) -> Material:
    """The CA, certificates and users of ``run_root``, made on first use."""
    files = SecureFiles(run_root)
    if not files.complete():
        _make(files)
    raw = json.loads(files.users.read_text())
    return files, SecureUsers(**raw)


def _make(files: SecureFiles) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ToolNotFoundError("openssl", "make the secured broker's certificates")
    files.root.mkdir(parents=True, exist_ok=True)
    files.root.chmod(0o700)
    tool = _OpenSsl(openssl, files.root)
    tool.run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", files.ca_key.name,
             "-out", files.ca.name, "-days", _DAYS, "-subj", "/CN=Guardian Cluster dev CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    tool.sign("broker", "/CN=localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
              "extendedKeyUsage=serverAuth,clientAuth\n")  # fmt: skip
    tool.sign("client", "/CN=guardian-client", "extendedKeyUsage=clientAuth\n")
    # Kafka's PEM key store: the private key (PKCS#8) followed by its certificate chain.
    files.keystore.write_text(
        files.broker_key.read_text() + files.broker_cert.read_text() + files.ca.read_text()
    )
    users = SecureUsers.generate()
    plain = {
        name: value.get_secret_value() if isinstance(value, SecretStr) else value
        for name, value in users
    }
    files.users.write_text(json.dumps(plain, indent=2) + "\n")
    for path in files.root.iterdir():
        path.chmod(0o600)


class _OpenSsl:
    """``openssl`` run in the TLS folder."""

    def __init__(self, openssl: str, root: Path) -> None:
        self.openssl = openssl
        self.root = root

    def run(self, *args: str) -> None:
        done = subprocess.run(
            [self.openssl, *args], cwd=self.root, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise BrokerError(f"openssl {args[0]} failed: {done.stderr.strip()[-500:]}")

    def sign(self, name: str, subject: str, extensions: str) -> None:
        """A key and a certificate for ``name``, signed by the folder's CA."""
        (self.root / f"{name}.ext").write_text(extensions)
        self.run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", "-subj", subject)  # fmt: skip
        self.run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", _DAYS,
                 "-extfile", f"{name}.ext")  # fmt: skip


def server_properties(
    files: SecureFiles, users: SecureUsers, port_listener: str, mtls_listener: str | None
) -> dict[str, str]:
    """The listener, TLS and SASL properties of a secured broker (``port_listener`` and
    ``mtls_listener`` are ``host:port``)."""
    listeners = {"SASL_SSL": port_listener} | ({"SSL": mtls_listener} if mtls_listener else {})
    plain_users = {users.broker_user: users.broker_password, users.plain_user: users.plain_password}
    logins = " ".join(f'user_{name}="{pw.get_secret_value()}"' for name, pw in plain_users.items())
    props = {
        "advertised.listeners": ",".join(f"{name}://{a}" for name, a in listeners.items()),
        "inter.broker.listener.name": "SASL_SSL",
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,SSL:SSL,CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms": ",".join(("PLAIN", *SCRAM_MECHANISMS)),
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        "listener.name.sasl_ssl.plain.sasl.jaas.config": f"{_PLAIN_MODULE} required "
        f'username="{users.broker_user}" '
        f'password="{users.broker_password.get_secret_value()}" {logins};',
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(files.keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(files.ca),
        "listener.name.ssl.ssl.client.auth": "required",
    }
    for mechanism in SCRAM_MECHANISMS:
        props[f"listener.name.sasl_ssl.{mechanism.lower()}.sasl.jaas.config"] = (
            f"{_SCRAM_MODULE} required;"
        )
    return props


def listeners(port_listener: str, mtls_listener: str | None) -> list[str]:
    """The secured client listeners (the controller's is added by the caller)."""
    found = [f"SASL_SSL://{port_listener}"]
    return found + ([f"SSL://{mtls_listener}"] if mtls_listener else [])


def scram_format_args(users: SecureUsers) -> list[str]:
    """StorageTool arguments writing the SCRAM credentials into the new metadata."""
    args: list[str] = []
    secret = users.scram_password.get_secret_value()
    for mechanism in SCRAM_MECHANISMS:
        args += ["--add-scram", f"{mechanism}=[name={users.scram_user},password={secret}]"]
    return args


ClientKind = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "mTLS"]


def client_settings(
    files: SecureFiles, users: SecureUsers, bootstrap: str, kind: ClientKind
) -> KafkaSettings:
    """The connection settings of a client of the secured broker (``bootstrap`` is the
    SASL_SSL address, or the mutual-TLS one for ``mTLS``)."""
    if kind == "mTLS":
        return KafkaSettings.of(
            bootstrap_servers=bootstrap,
            security_protocol="SSL",
            ssl_cafile=files.ca,
            ssl_certfile=files.client_cert,
            ssl_keyfile=files.client_key,
        )
    mechanism: Mechanism = kind
    user, password = (
        (users.plain_user, users.plain_password)
        if mechanism == "PLAIN"
        else (users.scram_user, users.scram_password)
    )
    return KafkaSettings.of(
        bootstrap_servers=bootstrap,
        security_protocol="SASL_SSL",
        sasl_mechanism=mechanism,
        sasl_username=user,
        sasl_password=password,
        ssl_cafile=files.ca,
    )


def exports(settings: KafkaSettings) -> list[str]:
    """``export`` lines that give a shell (and every guardian command) ``settings``."""
    env = {"KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers}
    for field in (
        "security_protocol",
        "sasl_mechanism",
        "sasl_username",
        "sasl_password",
        "ssl_cafile",
        "ssl_certfile",
        "ssl_keyfile",
    ):
        value = getattr(settings, field)
        if value is not None:
            shown = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
            env[f"GUARDIAN_KAFKA_{field.upper()}"] = shown
    return [f"export {name}={value}" for name, value in env.items()]
