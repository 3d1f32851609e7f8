"""Alerts: an evaluator turns deployment health into firing/resolved ``AlertRaised``
events (once per incident), and a delivery stage hands each alert on the topic to
the sinks (log, webhook)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from agents.alerts import AlertBook, evaluate, restore
from connectors.alert_sinks import DedupingSinks, build_sinks
from connectors.topic_reader import read_records
from schemas import topics
from schemas.network_events import AlertRaised, SpecialistHealth
from streams import background
from streams.runtime import Runtime
from streams.stage import Record, run

_log = logging.getLogger(__name__)


@dataclass
class AlertState:
    """The evaluator's open incidents (rebuilt from the alerts topic at start-up)."""

    sinks: DedupingSinks
    book: AlertBook = field(default_factory=AlertBook)
    restored: asyncio.Event = field(default_factory=asyncio.Event)


def register(rt: Runtime) -> None:
    state = AlertState(sinks=build_sinks(rt.settings.alerts))
    health = rt.topic(topics.SPECIALIST_HEALTH)

    @background.task(rt, "restore_incidents")
    async def restore_incidents() -> None:
        await _restore(rt, state)

    @rt.app.agent(health, name="alert_evaluator")
    async def alert_evaluator(stream: object) -> None:
        await run(rt, "alerts", stream, lambda r: on_health(rt, state, r))

    @background.timer(rt, rt.settings.alerts.evaluate_interval_s, "alert_clock")
    async def alert_clock() -> None:
        # Time passing alone can fire (downtime) or resolve an alert; only the worker
        # that owns the health partition keeps the incidents.
        if any(tp.topic == health.get_topic_name() for tp in rt.app.consumer.assignment()):
            await _evaluate(rt, state, [])

    @rt.app.agent(rt.topic(topics.ALERTS), name="alert_delivery")
    async def alert_delivery(stream: object) -> None:
        await run(rt, "alert_delivery", stream, lambda r: deliver(rt, state, r))


async def _restore(rt: Runtime, state: AlertState) -> None:
    alerts = await read_records(rt.settings.kafka, topics.ALERTS, AlertRaised, rt.codec)
    state.book = restore(state.book, alerts)
    state.restored.set()


async def on_health(rt: Runtime, state: AlertState, record: Record) -> None:
    snapshot = rt.codec.decode(record.value, SpecialistHealth)
    await state.restored.wait()
    await _evaluate(rt, state, [snapshot])


async def _evaluate(rt: Runtime, state: AlertState, health: Sequence[SpecialistHealth]) -> None:
    state.book, alerts = evaluate(state.book, health, rt.clock(), rt.settings.alerts.rules())
    for alert in alerts:
        await rt.emit(alert)


async def deliver(rt: Runtime, state: AlertState, record: Record) -> None:
    await state.sinks.deliver(rt.codec.decode(record.value, AlertRaised))
