"""Kafka connection settings, rendered once into each client's own config keys,
and the murmur2 partitioner every producer of the project shares."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    """Where the cluster is and how to reach it (``GUARDIAN_KAFKA_*``).

    ``KAFKA_BOOTSTRAP_SERVERS`` is honoured too, so the project and its tests
    point at the same cluster with one variable.
    """

    model_config = SettingsConfigDict(env_prefix="GUARDIAN_KAFKA_", frozen=True)

    bootstrap_servers: str = Field(
        default="127.0.0.1:19092",
        validation_alias=AliasChoices(
            "GUARDIAN_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS", "bootstrap_servers"
        ),
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    topic_namespace: str = ""
    replication_factor: int = Field(default=1, ge=1)
    partitions: int | None = Field(default=None, ge=1, description="override every topic's count")
    schema_registry_url: str | None = None
    max_payload_bytes: int = Field(default=1024 * 1024, ge=1024)
    client_id: str = "guardian-cluster"

    def _sasl(self) -> tuple[str | None, str | None]:
        secret = self.sasl_password.get_secret_value() if self.sasl_password else None
        return self.sasl_username, secret

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka producers, consumers and admin clients."""
        user, secret = self._sasl()
        cfg: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
            "client_id": self.client_id,
        }
        if self.sasl_mechanism:
            cfg |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": user,
                "sasl_plain_password": secret,
            }
        return cfg

    def confluent(self) -> dict[str, Any]:
        """librdkafka configuration for confluent-kafka clients."""
        user, secret = self._sasl()
        cfg: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            "client.id": self.client_id,
            # The Java client's partitioner: a request lands where the stages expect it.
            "partitioner": "murmur2_random",
        }
        if self.sasl_mechanism:
            cfg |= {"sasl.mechanism": self.sasl_mechanism, "sasl.username": user}
            cfg["sasl.password"] = secret
        if self.ssl_cafile:
            cfg["ssl.ca.location"] = self.ssl_cafile
        return cfg

    def faust_broker(self) -> str:
        hosts = ";".join(f"kafka://{h.strip()}" for h in self.bootstrap_servers.split(","))
        return hosts


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
