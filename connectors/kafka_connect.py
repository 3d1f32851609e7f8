"""Building and starting Kafka clients from :class:`KafkaSettings`, with honest errors.

aiokafka logs why it could not reach a broker and then raises a generic "unable to
bootstrap". Here a failed start is diagnosed by connecting once more, the same way,
and becomes a typed error naming the cause: credentials refused
(:class:`KafkaAuthenticationError`), a certificate not trusted or TLS spoken to a
listener that does not speak it (:class:`KafkaTlsError`), or no broker answering
(:class:`KafkaUnavailableError`, the only retriable one).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.protocol.metadata import MetadataRequest

from connectors.errors import (
    KafkaAuthenticationError,
    KafkaConfigError,
    KafkaConnectError,
    KafkaTlsError,
    KafkaUnavailableError,
)
from connectors.kafka import KafkaSettings

_log = logging.getLogger(__name__)
_AUTH_FAILURES = (
    SaslAuthenticationFailed,
    AuthenticationFailedError,
    UnsupportedSaslMechanismError,
)
_PROBE_TIMEOUT_MS = 10_000
_CLOSE_WAIT_S = 10.0
_SETTLE_PAUSE_S = 0.05
"""How long a probe waits for its connection to close: a TLS session ends only once the
broker answered the close, which a busy broker can take a while to do."""
_CLOSE_STEPS = 3
_WAIT_S = (1.0, 15.0)
"""First and longest pause between tries while waiting for a broker to come up."""


class _Startable(Protocol):
    async def start(self) -> None: ...


def producer(settings: KafkaSettings, **options: Any) -> AIOKafkaProducer:
    """An aiokafka producer with the connection and size settings of ``settings``."""
    return AIOKafkaProducer(**settings.aiokafka_producer(), **options)


def consumer(settings: KafkaSettings, *topics: str, **options: Any) -> AIOKafkaConsumer:
    """An aiokafka consumer (no group unless ``group_id`` is given, no auto-commit)."""
    options.setdefault("enable_auto_commit", False)
    return AIOKafkaConsumer(*topics, **settings.aiokafka(), **options)


def admin(settings: KafkaSettings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**settings.aiokafka())


async def start(client: _Startable, settings: KafkaSettings) -> None:
    """Start ``client``; on failure close it and raise the diagnosed cause."""
    try:
        await client.start()
    except (KafkaError, OSError, TimeoutError) as exc:
        await stop(client)
        raise await diagnose(settings, exc) from exc


async def stop(client: object) -> None:
    """Stop or close ``client`` and let the loop release its sockets: a TLS connection
    closes in steps (the session, then the socket), and a loop that ends right after
    would leave the last step undone."""
    await _close(client)
    await _settle()


async def _settle() -> None:
    """Let the loop run the transport closes already scheduled: a few turns, then a short
    pause, since a failed TLS handshake may close its socket only after its own I/O
    callbacks have run (a socket left to the garbage collector warns in a later test)."""
    for _ in range(_CLOSE_STEPS):
        await asyncio.sleep(0)
    await asyncio.sleep(_SETTLE_PAUSE_S)


async def diagnose(settings: KafkaSettings, failure: BaseException) -> KafkaConnectError:
    """Why a client of ``settings`` could not connect: each bootstrap host is tried once
    more with the same protocol, TLS context and credentials."""
    if isinstance(failure, _AUTH_FAILURES):
        return _refused(settings, settings.bootstrap_servers, failure)
    last: BaseException = failure
    async for found in _probes(settings):
        if found is not None and not found.retriable:
            return found
        # Reachable now (None): the first failure is the one to report.
        last = found if found is not None else failure
    return KafkaUnavailableError(f"no Kafka broker answered at {settings.describe()}: {last}")


async def probe(settings: KafkaSettings, host: str, port: int) -> None:
    """Connect to one broker as a client would (TLS handshake, SASL login); raise a
    typed error naming why it failed."""
    cfg = settings.aiokafka()
    cfg.pop("bootstrap_servers")
    where = f"{host}:{port}"
    try:
        conn = await _connect(host, port, cfg)
    except ssl.SSLCertVerificationError as exc:
        raise _untrusted(where, exc) from None
    except ssl.SSLError as exc:
        raise KafkaTlsError(
            f"TLS handshake with the broker at {where} failed ({exc.reason or exc}); "
            f"does that listener speak {settings.security_protocol}?"
        ) from None
    except _AUTH_FAILURES as exc:
        raise _refused(settings, where, exc) from None
    except (OSError, TimeoutError, KafkaError) as exc:
        tls = _tls_cause(exc)
        if tls is not None:
            raise _tls_closed(settings, where, tls) from None
        raise KafkaUnavailableError(f"cannot reach the broker at {where}: {exc}") from None
    try:
        # Brokers answer ApiVersions before a login: only a real request shows whether
        # this listener serves the connection as it was made.
        await conn.send(MetadataRequest([]))
    except (KafkaError, TimeoutError) as exc:
        raise KafkaConfigError(
            f"the broker at {where} accepted the connection but closed it on the first "
            f"request ({exc}); does that listener expect another security protocol than "
            f"{settings.security_protocol} (GUARDIAN_KAFKA_SECURITY_PROTOCOL)?"
        ) from None
    finally:
        # The socket is released once the loop has run the transport's close.
        await asyncio.wait([conn.close()], timeout=_CLOSE_WAIT_S)


async def _connect(host: str, port: int, cfg: dict[str, Any]) -> Any:
    try:
        return await create_conn(host, port, request_timeout_ms=_PROBE_TIMEOUT_MS, **cfg)
    except BaseException:
        await _settle()  # a failed handshake closes its socket on a later turn of the loop
        raise


def _tls_cause(exc: BaseException) -> ssl.SSLError | None:
    """The TLS alert behind a connection the broker closed, if that is what happened."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__
    return None


def _tls_closed(settings: KafkaSettings, where: str, exc: ssl.SSLError) -> KafkaTlsError:
    reason = exc.reason or str(exc)
    about_certificate = "CERTIFICATE" in reason.upper()
    if about_certificate and settings.ssl_certfile is None:
        hint = "it requires a client certificate (GUARDIAN_KAFKA_SSL_CERTFILE, _KEYFILE)"
    elif about_certificate:
        hint = f"it does not accept the client certificate {settings.ssl_certfile}"
    else:
        hint = "check the client certificate and the broker's TLS settings"
    return KafkaTlsError(f"the broker at {where} ended the TLS session ({reason}); {hint}")


async def wait_until_reachable(settings: KafkaSettings, deadline_s: float | None = None) -> None:
    """Return once a bootstrap broker accepts this client; a permanent cause (credentials,
    certificates) is raised at once, an absent broker is waited for (up to
    ``deadline_s`` if given)."""
    loop = asyncio.get_running_loop()
    give_up = None if deadline_s is None else loop.time() + deadline_s
    pause = _WAIT_S[0]
    while True:
        error = await _first_reachable(settings)
        if error is None:
            return
        if not error.retriable or (give_up is not None and loop.time() + pause > give_up):
            raise error
        _log.warning("%s; trying again in %.0fs", error, pause)
        await asyncio.sleep(pause)
        pause = min(pause * 2, _WAIT_S[1])


async def _first_reachable(settings: KafkaSettings) -> KafkaConnectError | None:
    last: KafkaConnectError | None = None
    async for found in _probes(settings):
        if found is None:
            return None
        if not found.retriable:
            return found
        last = found
    return last


async def _probes(settings: KafkaSettings) -> AsyncIterator[KafkaConnectError | None]:
    """Each bootstrap host probed in turn: the typed error, or None when it answered."""
    for host, port in _hosts(settings):
        try:
            await probe(settings, host, port)
        except KafkaConnectError as exc:
            yield exc
        else:
            yield None


def _hosts(settings: KafkaSettings) -> list[tuple[str, int]]:
    hosts = []
    for item in settings.bootstrap_servers.split(","):
        host, _, port = item.strip().rpartition(":")
        hosts.append((host.strip("[]") or item.strip(), int(port or 9092)))
    return hosts


def _untrusted(where: str, exc: ssl.SSLCertVerificationError) -> KafkaTlsError:
    reason = exc.verify_message or str(exc)
    if "hostname" in reason.lower() or "ip address mismatch" in reason.lower():
        hint = "connect by a name the certificate holds (or GUARDIAN_KAFKA_SSL_CHECK_HOSTNAME)"
    else:
        hint = "set GUARDIAN_KAFKA_SSL_CAFILE to the CA that signed it"
    return KafkaTlsError(
        f"the certificate of the broker at {where} is not trusted ({reason}); {hint}"
    )


def _refused(settings: KafkaSettings, where: str, exc: BaseException) -> KafkaAuthenticationError:
    detail = (exc.args and exc.args[0]) or type(exc).__name__
    return KafkaAuthenticationError(
        f"the broker at {where} refused {settings.sasl_mechanism} authentication as "
        f"{settings.sasl_username!r} ({detail}); check GUARDIAN_KAFKA_SASL_USERNAME, "
        "GUARDIAN_KAFKA_SASL_PASSWORD and GUARDIAN_KAFKA_SASL_MECHANISM"
    )


async def _close(client: object) -> None:
    closer = getattr(client, "stop", None) or getattr(client, "close", None)
    if closer is None:
        return
    try:
        await closer()
    except (KafkaError, OSError, RuntimeError) as exc:  # closing a half-started client
        _log.debug("closing a client that failed to start: %r", exc)
