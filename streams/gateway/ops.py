"""The gateway's other endpoints: models, health, readiness, metrics and a request's
decision trail (the caller's own tenant only, rate-limited, read from the stretch of
the request's partitions its index entry names)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web
from aiokafka.errors import KafkaError
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agents.gateway import ApiError
from connectors.trail import describe, read_trail
from schemas import topics
from schemas.topics import qualified
from streams.app import app_id
from streams.gateway.server import Gateway

READY_TIMEOUT_S = 5.0


def add_routes(app: web.Application, gw: Gateway) -> None:
    async def models(request: web.Request) -> web.Response:
        gw.tenant(request)
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "guardian-cluster"}
            for name in gw.settings.gateway.model_names()
        ]
        return web.json_response({"object": "list", "data": data})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "uptime_s": round(time.monotonic() - gw.started)})

    async def readyz(_: web.Request) -> web.Response:
        report = await readiness(gw)
        return web.json_response(report, status=200 if report["ready"] else 503)

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(gw.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def trail(request: web.Request) -> web.Response:
        tenant = gw.tenant(request)
        gw.throttle(tenant)
        return web.json_response(await trail_of(gw, request.match_info["request_id"], tenant))

    app.router.add_get("/v1/models", models)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/guardian/requests/{request_id}", trail)


async def readiness(gw: Gateway) -> dict[str, Any]:
    """Ready when the broker answers and the request and response topics exist; the
    number of workers is reported, never required (workers may scale to zero)."""
    names = [
        qualified(spec, gw.settings.kafka.topic_namespace)
        for spec in (topics.REQUESTS, topics.RESPONSES)
    ]
    missing = []
    try:
        for name in names:
            parts = await asyncio.wait_for(gw.client.partitions(name), READY_TIMEOUT_S)
            if not parts:
                missing.append(name)
    except (KafkaError, TimeoutError) as exc:
        return {"ready": False, "broker": f"unreachable: {exc or type(exc).__name__}"}
    workers = await asyncio.to_thread(_workers, gw)
    return {"ready": not missing, "broker": "ok", "missing_topics": missing, "workers": workers}


def _workers(gw: Gateway) -> int | None:
    """Members of the workers' consumer group (None when the broker would not say)."""
    group = app_id(gw.settings)
    admin = AdminClient(gw.settings.kafka.confluent())
    try:
        described = admin.describe_consumer_groups([group])[group].result(READY_TIMEOUT_S)
    except KafkaException:
        return None
    return len(described.members)


async def trail_of(gw: Gateway, request_id: str, tenant: str) -> dict[str, Any]:
    seen = gw.index.get(request_id)
    operator = tenant in gw.settings.gateway.operator_tenants()
    if seen is None or (seen.tenant != tenant and not operator):
        # Another tenant's request is as unknown to the caller as one never made.
        raise ApiError(
            404,
            f"no recent request {request_id} of this tenant (the gateway finds the last "
            f"{gw.settings.gateway.index_entries} requests; `guardian trail` reads older ones)",
            "request_not_found",
        )
    requests = qualified(topics.REQUESTS, gw.settings.kafka.topic_namespace)
    events = await read_trail(
        gw.settings.kafka,
        request_id,
        len(await gw.client.partitions(requests)),
        window_ms=seen.window(int(time.time() * 1000)),
        codec=gw.client.codec,
    )
    return {
        "request_id": request_id,
        "events": [
            {
                "record": e.record_name,
                "occurred_at": e.occurred_at.isoformat(),
                "summary": describe(e),
                "event": e.model_dump(mode="json", exclude={"payload"}),
            }
            for e in events
        ],
    }
