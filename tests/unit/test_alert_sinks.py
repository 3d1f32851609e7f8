"""Alert sinks against a real HTTP receiver on loopback: JSON body, retries, typed errors,
and delivery once per (alert, state) however often an alert is handed over."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import pytest
from aiohttp import web

from connectors.alert_sinks import (
    AlertDeliveryError,
    AlertSettings,
    DedupingSinks,
    LogSink,
    WebhookSink,
    build_sinks,
)
from schemas.network_events import AlertRaised
from tests.loopback import LoopbackServer, free_port

LOGGER = "connectors.alert_sinks"
STARTED = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
FIRING = AlertRaised(
    event_id="e-firing",
    request_id="alert-1",
    occurred_at=STARTED,
    alert_id="alert-1",
    rule="error_rate",
    severity="warning",
    subject="gpu-a",
    state="firing",
    value=0.25,
    threshold=0.1,
    message="gpu-a error_rate firing: error rate 25.0% (10 of 40 calls failed)",
    started_at=STARTED,
)
RESOLVED = FIRING.model_copy(update={"event_id": "e-resolved", "state": "resolved", "value": 0.0})


@dataclass(frozen=True)
class Received:
    body: dict[str, Any]
    headers: dict[str, str]


class Receiver:
    """An alert webhook on loopback answering with scripted statuses (the last repeats)."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses) or [200]
        self.received: list[Received] = []
        app = web.Application()
        app.router.add_post("/alerts", self._alert)
        self._server = LoopbackServer(app)
        self.url = ""

    async def __aenter__(self) -> Receiver:
        self.url = f"{await self._server.start()}/alerts"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._server.stop()

    async def _alert(self, request: web.Request) -> web.Response:
        self.received.append(Received(await request.json(), dict(request.headers)))
        status = self.statuses[min(len(self.received), len(self.statuses)) - 1]
        return web.json_response({"ok": status < 400}, status=status)


class Sleeps:
    """The retry waits, recorded instead of slept."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class Broken:
    """A sink whose dependency has a bug: it raises something that is not ours."""

    async def deliver(self, alert: AlertRaised) -> None:
        raise RuntimeError(f"cannot deliver {alert.alert_id}")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as running:
        yield running


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def webhook(url: str, sleeps: Sleeps, **options: Any) -> WebhookSink:
    return WebhookSink(url, timeout_s=5.0, sleep=sleeps, **options)


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}/alerts"


def sink_records(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    """The log sink's records (level, text), not the retries' or the deduper's."""
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.msg == LogSink.FORMAT]


async def test_webhook_posts_the_alert_as_json(receiver: Receiver, sleeps: Sleeps) -> None:
    async with webhook(receiver.url, sleeps, headers={"X-Token": "t0k"}) as sink:
        await sink.deliver(FIRING)
    [got] = receiver.received
    assert got.body == FIRING.model_dump(mode="json")
    assert got.body["alert_id"] == "alert-1"
    assert (got.body["state"], got.body["rule"], got.body["subject"]) == (
        "firing",
        "error_rate",
        "gpu-a",
    )
    assert (got.body["value"], got.body["threshold"]) == (0.25, 0.1)
    assert got.body["started_at"].startswith("2025-03-01T12:00:00")
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["X-Token"] == "t0k"
    assert sleeps.waits == []


async def test_a_server_error_is_retried_then_delivered_once(sleeps: Sleeps) -> None:
    async with Receiver(500, 200) as receiver, webhook(receiver.url, sleeps) as sink:
        await sink.deliver(FIRING)
    assert [r.body["event_id"] for r in receiver.received] == ["e-firing", "e-firing"]
    assert sleeps.waits == [0.5]


async def test_always_failing_raises_after_the_last_attempt(sleeps: Sleeps) -> None:
    async with Receiver(500) as receiver, webhook(receiver.url, sleeps, retries=3) as sink:
        with pytest.raises(AlertDeliveryError, match="answered 500") as caught:
            await sink.deliver(FIRING)
    assert len(receiver.received) == 3
    assert sleeps.waits == [0.5, 1.0]
    assert caught.value.retriable


async def test_a_refusal_is_not_retried(sleeps: Sleeps) -> None:
    async with Receiver(400) as receiver, webhook(receiver.url, sleeps) as sink:
        with pytest.raises(AlertDeliveryError, match="answered 400") as caught:
            await sink.deliver(FIRING)
    assert len(receiver.received) == 1
    assert not caught.value.retriable


async def test_no_connection_is_retried_then_raised(sleeps: Sleeps) -> None:
    async with webhook(closed_port_url(), sleeps, retries=2, backoff_s=0.1) as sink:
        with pytest.raises(AlertDeliveryError, match="unreachable") as caught:
            await sink.deliver(FIRING)
    assert sleeps.waits == [0.1]
    assert caught.value.retriable


def test_retries_count_attempts() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        WebhookSink("http://127.0.0.1:9/alerts", retries=0)


@pytest.mark.parametrize(("alert", "level"), [(FIRING, logging.WARNING), (RESOLVED, logging.INFO)])
async def test_log_sink_levels(
    caplog: pytest.LogCaptureFixture, alert: AlertRaised, level: int
) -> None:
    with caplog.at_level(logging.INFO, logger=LOGGER):
        await LogSink().deliver(alert)
    [(got_level, message)] = sink_records(caplog)
    assert got_level == level
    assert f"alert error_rate {alert.state} [warning]" in message
    assert "gpu-a" in message
    assert "threshold 0.1" in message
    assert "id alert-1" in message


async def test_a_duplicate_is_delivered_once(
    receiver: Receiver, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    async with webhook(receiver.url, sleeps) as hook:
        sinks = DedupingSinks([LogSink(), hook])
        with caplog.at_level(logging.INFO, logger=LOGGER):
            await sinks.deliver(FIRING)
            await sinks.deliver(FIRING.model_copy())  # the same event, replayed
            await asyncio.gather(sinks.deliver(RESOLVED), sinks.deliver(RESOLVED))
    assert [r.body["state"] for r in receiver.received] == ["firing", "resolved"]
    assert [level for level, _ in sink_records(caplog)] == [logging.WARNING, logging.INFO]


async def test_a_failing_sink_does_not_stop_the_others(
    sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    async with Receiver(503, 200) as receiver, webhook(receiver.url, sleeps, retries=1) as hook:
        sinks = DedupingSinks([hook, LogSink()])
        with caplog.at_level(logging.INFO, logger=LOGGER):
            await sinks.deliver(FIRING)
            assert [level for level, _ in sink_records(caplog)] == [logging.WARNING]
            errors = [r for r in caplog.records if r.levelno == logging.ERROR]
            assert len(errors) == 1
            assert "not delivered by WebhookSink (retriable: True)" in errors[0].getMessage()
            await sinks.deliver(FIRING)  # handed over again: only the webhook tries again
    assert len(receiver.received) == 2
    assert len(sink_records(caplog)) == 1


async def test_a_bug_in_one_sink_is_raised_after_the_others_delivered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sinks = DedupingSinks([Broken(), LogSink()])
    with caplog.at_level(logging.INFO, logger=LOGGER), pytest.raises(RuntimeError):
        await sinks.deliver(FIRING)
    assert [level for level, _ in sink_records(caplog)] == [logging.WARNING]


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDIAN_ALERT_WEBHOOK_URL", "https://alerts.example/hook")
    monkeypatch.setenv("GUARDIAN_ALERT_ERROR_RATE_THRESHOLD", "0.2")
    monkeypatch.setenv("GUARDIAN_ALERT_DOWNTIME_S", "120")
    monkeypatch.setenv("GUARDIAN_ALERT_MIN_CALLS", "4")
    settings = AlertSettings()
    rules = settings.rules()
    assert settings.webhook_url == "https://alerts.example/hook"
    assert settings.webhook_timeout_s == 5.0
    assert (rules.error_rate_threshold, rules.downtime_s, rules.min_calls) == (0.2, 120.0, 4)
    assert rules.error_rate_window_s == 300.0


def test_settings_reject_a_url_that_is_not_http() -> None:
    with pytest.raises(ValueError, match="http"):
        AlertSettings(webhook_url="alerts.example/hook")


async def test_build_sinks_delivers_to_log_and_webhook(
    receiver: Receiver, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    sinks = build_sinks(AlertSettings(webhook_url=receiver.url), sleep=sleeps)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        await sinks.deliver(FIRING)
    await sinks.aclose()
    assert len(receiver.received) == 1
    assert len(sink_records(caplog)) == 1
