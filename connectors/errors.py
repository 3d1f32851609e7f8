"""Errors of the connectors layer; each says whether trying again can help."""

from __future__ import annotations

from schemas.errors import GuardianError

# --- Local dev broker (connectors.broker, connectors.broker_fetch) -----------


class BrokerError(GuardianError):
    """The local dev broker could not be fetched, started, queried or stopped."""

    retriable = False


class ToolNotFoundError(BrokerError):
    """A program the local broker needs is not on PATH; ``make deps`` installs it."""

    retriable = False

    def __init__(self, tool: str, purpose: str) -> None:
        super().__init__(
            f"`{tool}` was not found on PATH; it is needed to {purpose}. "
            "Run `make deps` (installs default-jdk-headless and maven) and try again."
        )
        self.tool = tool


class JavaNotFoundError(ToolNotFoundError):
    """No ``java`` to run the broker with."""

    def __init__(self) -> None:
        super().__init__("java", "run the Apache Kafka broker (Java 17 or newer)")


class MavenNotFoundError(ToolNotFoundError):
    """No ``mvn`` to fetch the broker's jars with."""

    def __init__(self) -> None:
        super().__init__("mvn", "fetch the Apache Kafka broker jars from Maven Central")


class BrokerFetchError(BrokerError):
    """Maven could not fetch the jars (often the network): another try may work."""

    retriable = True


class BrokerPortInUseError(BrokerError):
    """Another process listens on a port the broker needs."""

    retriable = False


class BrokerExitedError(BrokerError):
    """The broker process died while starting; the message carries its last log lines."""

    retriable = False


class BrokerStartTimeoutError(BrokerError):
    """The broker did not answer a metadata request before the deadline."""

    retriable = True


# --- Kafka clients and provisioning (connectors.admin, connectors.client) ----


class TopicProvisioningError(GuardianError):
    """Topics could not be listed or created (often a broker not yet up)."""

    retriable = True


class ResponseTimeoutError(GuardianError):
    """No final response arrived before the client's timeout."""

    retriable = True


# --- Connecting to Kafka (connectors.kafka, connectors.kafka_connect) ---------


class KafkaConnectError(GuardianError):
    """A Kafka client could not connect; the message names the cause."""

    retriable = False


class KafkaConfigError(KafkaConnectError):
    """The connection settings cannot work as given (a missing CA or key file)."""

    retriable = False


class KafkaAuthenticationError(KafkaConnectError):
    """The broker refused the credentials (or the mechanism): retrying cannot help."""

    retriable = False


class KafkaTlsError(KafkaConnectError):
    """The TLS handshake failed: an untrusted certificate, a name mismatch, or TLS
    spoken to a listener that does not speak it."""

    retriable = False


class KafkaUnavailableError(KafkaConnectError):
    """No broker answered (refused, unreachable, timed out): it may come back."""

    retriable = True


# --- The client library (connectors.client) ------------------------------------


class PromptTooLargeError(GuardianError):
    """A prompt exceeds intake's limit or the producer's request size; nothing was sent."""

    retriable = False
