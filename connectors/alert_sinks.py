"""Where alerts go: the log and an HTTP webhook, each given every (alert, state) once per
process however often the alerts topic hands it over."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Final, Protocol, runtime_checkable

import httpx
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.alerts import AlertRules
from schemas.errors import GuardianError
from schemas.network_events import AlertRaised

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
_RETRIED_4XX: Final = frozenset({408, 429})
_DETAIL_CHARS: Final = 200


class AlertDeliveryError(GuardianError):
    """A sink could not deliver an alert. ``retriable``: a later try may succeed
    (server errors, no connection); not when the receiver refused the alert (4xx)."""

    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


class AlertSink(Protocol):
    """Delivers one alert; a failure is raised as a ``GuardianError``."""

    async def deliver(self, alert: AlertRaised) -> None: ...


@runtime_checkable
class _Closable(Protocol):
    async def aclose(self) -> None: ...


class AlertSettings(BaseSettings):
    """Alert thresholds and where alerts are delivered."""

    model_config = SettingsConfigDict(env_prefix="GUARDIAN_ALERT_", frozen=True)

    webhook_url: str | None = None
    """Alerts are POSTed here as JSON; only the log gets them when unset."""
    webhook_timeout_s: float = Field(default=5.0, gt=0.0)
    error_rate_threshold: float = Field(default=0.10, ge=0.0, lt=1.0)
    error_rate_window_s: float = Field(default=300.0, gt=0.0)
    downtime_s: float = Field(default=300.0, gt=0.0)
    min_calls: int = Field(default=10, ge=1)
    evaluate_interval_s: float = Field(default=15.0, gt=0.0)
    """How often time alone is checked (downtime fires, quiet deployments resolve)."""

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"webhook_url must be an http(s) URL, got {value!r}")
        return value

    def rules(self) -> AlertRules:
        return AlertRules(
            error_rate_threshold=self.error_rate_threshold,
            error_rate_window_s=self.error_rate_window_s,
            min_calls=self.min_calls,
            downtime_s=self.downtime_s,
        )


class LogSink:
    """Logs a firing alert at WARNING and a resolved one at INFO."""

    FORMAT: Final = "alert %s %s [%s] %s (value %.4g, threshold %.4g, since %s, id %s)"

    def __init__(self, log: logging.Logger | None = None) -> None:
        self._log = log or logger

    async def deliver(self, alert: AlertRaised) -> None:
        level = logging.WARNING if alert.state == "firing" else logging.INFO
        self._log.log(
            level,
            self.FORMAT,
            alert.rule, alert.state, alert.severity, alert.message, alert.value,
            alert.threshold, alert.started_at.isoformat(), alert.alert_id,
        )  # fmt: skip


class WebhookSink:
    """POSTs each alert as JSON to ``url``; retries server errors and lost connections
    ``retries`` attempts in all, waiting ``backoff_s``, then twice that, and so on."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        headers: Mapping[str, str] | None = None,
        retries: int = 3,
        backoff_s: float = 0.5,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if retries < 1:
            raise ValueError(f"retries counts attempts and must be at least 1, got {retries}")
        self._url = url
        self._retries = retries
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._client = httpx.AsyncClient(timeout=timeout_s, headers=dict(headers or {}))

    async def __aenter__(self) -> WebhookSink:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def deliver(self, alert: AlertRaised) -> None:
        """Raises ``AlertDeliveryError`` on a refusal or after the last failed attempt."""
        for attempt in range(1, self._retries + 1):
            error = await self._post(alert)
            if error is None:
                return
            if not error.retriable or attempt == self._retries:
                raise error
            delay_s = self._backoff_s * 2 ** (attempt - 1)
            logger.warning(
                "alert %s webhook attempt %d of %d failed (%s); retrying in %.2fs",
                alert.alert_id, attempt, self._retries, error, delay_s,
            )  # fmt: skip
            await self._sleep(delay_s)

    async def _post(self, alert: AlertRaised) -> AlertDeliveryError | None:
        """One POST: ``None`` when accepted, else the error it ended with."""
        try:
            response = await self._client.post(self._url, json=alert.model_dump(mode="json"))
        except httpx.HTTPError as exc:
            return AlertDeliveryError(
                f"webhook {self._url} unreachable: {type(exc).__name__}: {exc}", retriable=True
            )
        if response.is_success:
            return None
        status = response.status_code
        return AlertDeliveryError(
            f"webhook {self._url} answered {status}: {response.text[:_DETAIL_CHARS]}",
            retriable=status >= 500 or status in _RETRIED_4XX,
        )


class DedupingSinks:
    """Hands each (alert_id, state) to every sink at most once per process. A sink that
    fails is logged and skipped, the others still get the alert, and the same event
    handed over again later is retried on that sink only."""

    def __init__(self, sinks: Sequence[AlertSink], *, remember: int = 10_000) -> None:
        self._sinks = tuple(sinks)
        self._remember = remember
        self._claimed: OrderedDict[tuple[int, str, str], None] = OrderedDict()

    async def deliver(self, alert: AlertRaised) -> None:
        """Every sink gets its turn; a sink's ``GuardianError`` is logged, anything else
        (a bug) is raised once all sinks are done."""
        outcomes = await asyncio.gather(
            *(self._deliver(i, sink, alert) for i, sink in enumerate(self._sinks)),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _deliver(self, index: int, sink: AlertSink, alert: AlertRaised) -> None:
        key = (index, alert.alert_id, alert.state)
        if key in self._claimed:
            logger.debug(
                "alert %s %s already handed to sink %d", alert.alert_id, alert.state, index
            )
            return
        self._claim(key)
        delivered = False
        try:
            await sink.deliver(alert)
            delivered = True
        except GuardianError as exc:
            logger.error(
                "alert %s %s not delivered by %s (retriable: %s): %s",
                alert.alert_id, alert.state, type(sink).__name__, exc.retriable, exc,
            )  # fmt: skip
        finally:
            if not delivered:
                self._claimed.pop(key, None)  # handed over again, it is tried again

    async def aclose(self) -> None:
        """Close every sink that holds a connection."""
        for sink in self._sinks:
            if isinstance(sink, _Closable):
                await sink.aclose()

    def _claim(self, key: tuple[int, str, str]) -> None:
        # Claimed before awaiting, so a duplicate handed over meanwhile is not delivered too.
        self._claimed[key] = None
        while len(self._claimed) > self._remember:
            self._claimed.popitem(last=False)


def build_sinks(settings: AlertSettings, *, sleep: Sleep = asyncio.sleep) -> DedupingSinks:
    """The log sink, and the webhook sink when a URL is set, behind one deduper
    (``aclose`` it on shutdown)."""
    sinks: list[AlertSink] = [LogSink()]
    if settings.webhook_url is not None:
        sinks.append(
            WebhookSink(settings.webhook_url, timeout_s=settings.webhook_timeout_s, sleep=sleep)
        )
    return DedupingSinks(sinks)
