"""Kafka connection settings, rendered once into each client's own config keys
(faust, aiokafka, confluent-kafka), and the murmur2 partitioner every producer of
the project shares."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from connectors.errors import KafkaConfigError

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
_TLS: frozenset[str] = frozenset({"SSL", "SASL_SSL"})
_SASL: frozenset[str] = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
_TLS_FIELDS = ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_key_password")


class KafkaSettings(BaseSettings):
    """Where the cluster is and how to reach it (``GUARDIAN_KAFKA_*``).

    ``KAFKA_BOOTSTRAP_SERVERS`` is honoured too, so the project and its tests
    point at the same cluster with one variable. Passwords are secrets: they leave
    this object only inside a rendered client config, never in a repr or an error.
    """

    model_config = SettingsConfigDict(env_prefix="GUARDIAN_KAFKA_", frozen=True)

    bootstrap_servers: str = Field(
        default="127.0.0.1:19092",
        validation_alias=AliasChoices(
            "GUARDIAN_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS", "bootstrap_servers"
        ),
    )
    security_protocol: Protocol = "PLAINTEXT"
    sasl_mechanism: Mechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    """PEM file of the CA(s) that signed the brokers' certificates; unset: the system's."""
    ssl_certfile: Path | None = None
    """PEM client certificate, for brokers that require one (mutual TLS)."""
    ssl_keyfile: Path | None = None
    ssl_key_password: SecretStr | None = None
    ssl_check_hostname: bool = True
    """Whether the broker's certificate must name the host connected to."""
    topic_namespace: str = ""
    replication_factor: int = Field(default=1, ge=1)
    partitions: int | None = Field(default=None, ge=1, description="override every topic's count")
    schema_registry_url: str | None = None
    max_payload_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024)
    """The producers' ``max_request_size``: the largest record a client may send."""
    client_id: str = "guardian-cluster"

    @field_validator(
        "sasl_mechanism", "sasl_username", "sasl_password", *_TLS_FIELDS, mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``GUARDIAN_KAFKA_SSL_CAFILE=`` unsets the CA file instead of naming ``.``."""
        return None if value == "" else value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        sasl = self.security_protocol in _SASL
        if sasl and not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs sasl_mechanism "
                "(PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512), sasl_username and sasl_password"
            )
        if not sasl and self.sasl_mechanism:
            raise ValueError(
                f"sasl_mechanism is set but security_protocol is {self.security_protocol}; "
                "use SASL_PLAINTEXT or SASL_SSL"
            )
        if self.security_protocol not in _TLS:
            given = [name for name in _TLS_FIELDS if getattr(self, name) is not None]
            if given:
                raise ValueError(
                    f"{', '.join(given)} set but security_protocol is "
                    f"{self.security_protocol}; use SSL or SASL_SSL"
                )
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ValueError("ssl_keyfile is set without ssl_certfile")
        return self

    @classmethod
    def of(cls, **values: Any) -> KafkaSettings:
        """Settings of ``values`` and the defaults only, whatever the environment holds
        (the local broker's own clients, tests)."""
        return _Given(**values)

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in _TLS

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in _SASL

    def describe(self) -> str:
        """Where and how this connects, for messages (no secrets)."""
        how: str = self.security_protocol
        if self.uses_sasl:
            how += f" {self.sasl_mechanism} as {self.sasl_username!r}"
        return f"{self.bootstrap_servers} ({how})"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of aiokafka and faust clients; None without TLS."""
        if not self.uses_tls:
            return None
        return build_ssl_context(self)

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka producers, consumers and admin clients."""
        cfg: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
            "client_id": self.client_id,
        }
        if self.uses_tls:
            cfg["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            cfg |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": _reveal(self.sasl_password),
            }
        return cfg

    def aiokafka_producer(self) -> dict[str, Any]:
        """:meth:`aiokafka` plus the producer's request size cap."""
        return self.aiokafka() | {"max_request_size": self.max_request_bytes}

    def confluent(self) -> dict[str, Any]:
        """librdkafka configuration for confluent-kafka clients."""
        cfg: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            "client.id": self.client_id,
            # The Java client's partitioner: a request lands where the stages expect it.
            "partitioner": "murmur2_random",
            "message.max.bytes": self.max_request_bytes,
        }
        if self.uses_tls:
            cfg["ssl.endpoint.identification.algorithm"] = (
                "https" if self.ssl_check_hostname else "none"
            )
            optional = {
                "ssl.ca.location": self.ssl_cafile,
                "ssl.certificate.location": self.ssl_certfile,
                "ssl.key.location": self.ssl_keyfile,
            }
            cfg |= {key: str(path) for key, path in optional.items() if path is not None}
            if self.ssl_key_password is not None:
                cfg["ssl.key.password"] = _reveal(self.ssl_key_password)
        if self.uses_sasl:
            cfg |= {
                "sasl.mechanism": self.sasl_mechanism,
                "sasl.username": self.sasl_username,
                "sasl.password": _reveal(self.sasl_password),
            }
        return cfg

    def faust_broker(self) -> str:
        return ";".join(f"kafka://{h.strip()}" for h in self.bootstrap_servers.split(","))

    def faust_credentials(self) -> CredentialsT | None:
        """faust's ``broker_credentials``: SASL (with the TLS context over SASL_SSL),
        TLS alone, or None for PLAINTEXT. faust's aiokafka driver turns them into the
        same keyword arguments :meth:`aiokafka` renders."""
        from faust.auth import SASLCredentials, SSLCredentials

        context = self.ssl_context()
        if self.uses_sasl:
            return SASLCredentials(
                username=self.sasl_username,
                password=_reveal(self.sasl_password),
                ssl_context=context,
                mechanism=self.sasl_mechanism,
            )
        return SSLCredentials(context) if context is not None else None


class _Given(KafkaSettings):
    """:class:`KafkaSettings` read from keyword arguments alone."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def build_ssl_context(settings: KafkaSettings) -> ssl.SSLContext:
    """A client TLS context: the CA file (else the system's), the client certificate
    when one is set, hostname checking as configured."""
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH,
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None,
        )
    except (OSError, ssl.SSLError) as exc:
        raise KafkaConfigError(
            f"cannot load the CA file GUARDIAN_KAFKA_SSL_CAFILE={settings.ssl_cafile}: {exc}"
        ) from None
    if settings.ssl_certfile is not None:
        try:
            context.load_cert_chain(
                str(settings.ssl_certfile),
                str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
                _reveal(settings.ssl_key_password),
            )
        except (OSError, ssl.SSLError) as exc:
            # The error names the files only: the key password stays out of it.
            raise KafkaConfigError(
                f"cannot load the client certificate {settings.ssl_certfile} "
                f"(key {settings.ssl_keyfile or 'in the same file'}): {exc.strerror or exc}"
            ) from None
    context.check_hostname = settings.ssl_check_hostname
    return context


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (the Java client's default partitioner)."""
    length = len(data)
    seed, m, r = 0x9747B28C, 0x5BD1E995, 24
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = data[length - length % 4 :]
    if len(tail) >= 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition the Java client (and aiokafka) picks for ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
