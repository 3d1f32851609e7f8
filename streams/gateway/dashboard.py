"""The live dashboard at ``/dashboard``: a static page (uPlot vendored from npm, no
build step) polling ``/dashboard/state``, which the gateway folds from the topics
themselves: responses (from its shared reader), verdicts from now on, and alerts,
config and experiments from their beginning. Operators' keys only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from aiokafka import TopicPartition

from agents.gateway import ApiError
from connectors import kafka_connect
from schemas import topics
from schemas.errors import DecodeError
from schemas.network_events import AlertRaised, ConfigChanged, ExperimentConcluded
from schemas.request_events import VerdictIssued
from schemas.topics import TopicSpec, qualified
from streams.gateway.server import Gateway

_log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
FROM_NOW = (topics.VERDICTS,)
FROM_START = (topics.ALERTS, topics.CONFIG, topics.EXPERIMENTS)


def add_routes(app: web.Application, gw: Gateway) -> None:
    async def page(_: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "dashboard.html")

    async def state(request: web.Request) -> web.Response:
        operator(gw, request)
        return web.json_response(gw.board.snapshot(time.time()))

    app.router.add_get("/dashboard", page)
    app.router.add_get("/dashboard/state", state)
    app.router.add_static("/dashboard/static", STATIC)


def operator(gw: Gateway, request: web.Request) -> str:
    """The caller's tenant, which must be an operators' one (403 otherwise)."""
    tenant = gw.tenant(request)
    if tenant not in gw.settings.gateway.operator_tenants():
        raise ApiError(
            403, f"tenant {tenant} is not an operator", "forbidden", type="permission_error"
        )
    return tenant


@contextlib.asynccontextmanager
async def feeding(gw: Gateway) -> AsyncIterator[None]:
    """Fold the topics into the gateway's board while the gateway runs."""
    task = asyncio.create_task(_feed(gw))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _feed(gw: Gateway) -> None:
    settings = gw.settings.kafka
    consumer = kafka_connect.consumer(settings)
    await kafka_connect.start(consumer, settings)
    try:
        now = await _partitions(gw, FROM_NOW)
        start = await _partitions(gw, FROM_START)
        consumer.assign(now + start)
        if now:
            await consumer.seek_to_end(*now)
        if start:
            await consumer.seek_to_beginning(*start)
        async for record in consumer:
            _fold(gw, record.topic, record.value)
    finally:
        await kafka_connect.stop(consumer)


async def _partitions(gw: Gateway, specs: tuple[TopicSpec, ...]) -> list[TopicPartition]:
    found = []
    for spec in specs:
        name = qualified(spec, gw.settings.kafka.topic_namespace)
        found += [TopicPartition(name, p) for p in sorted(await gw.client.partitions(name))]
    return found


def _fold(gw: Gateway, topic: str, value: bytes) -> None:
    try:
        event = gw.client.codec.decode_any(value)
    except DecodeError as exc:
        _log.debug("dashboard skips an unreadable record on %s: %s", topic, exc)
        return
    board = gw.board
    if isinstance(event, VerdictIssued):
        board.verdict(event)
    elif isinstance(event, AlertRaised):
        board.alert(event)
    elif isinstance(event, ConfigChanged):
        board.config_changed(event)
    elif isinstance(event, ExperimentConcluded):
        board.experiment(event)
