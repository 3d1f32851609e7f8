"""The gateway's aiohttp application: one shared pipeline client (one producer, one
response reader) per process, API keys, the in-flight bound, errors in OpenAI's shape.

aiohttp rather than Starlette/uvicorn: it is already a dependency (faust and the
model servers use it), it serves HTTP/1.1 and server-sent events on the same event
loop as aiokafka with no extra server process, and its ``client_max_size`` bounds
request bodies before they are read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from agents.dashboard import Board
from agents.gateway import ApiError
from agents.gateway_access import Bucket, read_keys, take, tenant_for
from connectors.client import GuardianClient
from schemas.request_events import ResponseDelivered
from streams.gateway.index import RequestIndex
from streams.settings import AppSettings

_log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "guardian_gateway_requests_total",
            "Chat completion requests, by outcome (a response status or an HTTP refusal).",
            ["outcome"],
            registry=r,
        )
        self.seconds = Histogram(
            "guardian_gateway_request_duration_seconds",
            "Time from a chat completion request to its answer, by mode.",
            ["mode"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "guardian_gateway_in_flight", "Requests waiting for their answer.", registry=r
        )


@dataclass
class Gateway:
    """What every handler shares."""

    settings: AppSettings
    keys: dict[str, str]
    client: GuardianClient
    index: RequestIndex
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    board: Board = field(default_factory=Board)
    in_flight: int = 0
    buckets: dict[str, Bucket] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def tenant(self, request: web.Request) -> str:
        return tenant_for(self.keys, request.headers.get("Authorization"))

    def admit(self) -> None:
        """Count a request in, or refuse it with 429 past the in-flight bound."""
        if self.in_flight >= self.settings.gateway.max_in_flight:
            self.metrics.requests.labels("over_capacity").inc()
            raise ApiError(
                429,
                f"{self.in_flight} requests are in flight, the most this gateway holds; "
                "retry shortly",
                "over_capacity",
                type="rate_limit_error",
                headers={"Retry-After": "1"},
            )
        self.in_flight += 1
        self.metrics.in_flight.set(self.in_flight)

    def release(self) -> None:
        self.in_flight -= 1
        self.metrics.in_flight.set(self.in_flight)

    def throttle(self, tenant: str) -> None:
        """The trail endpoint's rate limit per tenant: 429 with Retry-After past it."""
        g = self.settings.gateway
        bucket, wait = take(
            self.buckets.get(tenant), time.monotonic(), rate=g.trail_rate, burst=g.trail_burst
        )
        self.buckets[tenant] = bucket
        if wait > 0:
            raise ApiError(
                429,
                f"more than {g.trail_rate:g} trail lookups per second",
                "rate_limit_exceeded",
                type="rate_limit_error",
                headers={"Retry-After": str(max(1, round(wait + 0.5)))},
            )


def load_keys(settings: AppSettings) -> dict[str, str]:
    """The key file, or a clear error on how to make one."""
    path = settings.gateway.keys_file
    if not path.exists():
        raise SystemExit(
            f"no API key file at {path}: create a key with `guardian keys add <tenant>` "
            "(or point GUARDIAN_GATEWAY_KEYS_FILE at a file of '<sha256 hex> <tenant>' lines)"
        )
    try:
        keys = read_keys(path.read_text())
    except ValueError as exc:
        raise SystemExit(f"{path}: {exc}") from None
    if not keys:
        raise SystemExit(f"{path} holds no key: add one with `guardian keys add <tenant>`")
    return keys


@web.middleware
async def openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal in OpenAI's error shape, whatever raised it."""
    try:
        return await handler(request)
    except ApiError as refused:
        return web.json_response(
            refused.body(), status=refused.status, headers=dict(refused.headers)
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        shaped = ApiError(exc.status, exc.reason, _HTTP_CODES.get(exc.status, "http_error"))
        return web.json_response(shaped.body(), status=exc.status)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


def build_app(gateway: Gateway) -> web.Application:
    from streams.gateway import chat, dashboard, ops  # the handlers import this module's types

    app = web.Application(
        middlewares=[openai_errors], client_max_size=gateway.settings.gateway.max_body_bytes
    )
    app.router.add_post("/v1/chat/completions", chat.handler(gateway))
    ops.add_routes(app, gateway)
    dashboard.add_routes(app, gateway)
    return app


@dataclass
class Running:
    gateway: Gateway
    base_url: str
    """``http://host:port`` as bound (a port of 0 picks a free one)."""


@contextlib.asynccontextmanager
async def running(settings: AppSettings) -> AsyncIterator[Running]:
    """The gateway serving, with its shared client and response reader started."""
    from streams.gateway.dashboard import feeding

    keys = load_keys(settings)
    index = RequestIndex(settings.gateway.index_entries)
    board = Board()

    def answered(response: ResponseDelivered) -> None:
        index.answered(response)
        board.response(response, time.time())

    client = GuardianClient(
        settings.kafka, max_prompt_chars=settings.refine.max_prompt_chars, on_response=answered
    )
    async with client:
        await client.follow()
        gateway = Gateway(settings=settings, keys=keys, client=client, index=index, board=board)
        # A caller that hangs up cancels its handler, and with it its waiter.
        runner = web.AppRunner(build_app(gateway), access_log=None, handler_cancellation=True)
        await runner.setup()
        g = settings.gateway
        site = web.TCPSite(runner, g.host, g.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        try:
            async with feeding(gateway):
                yield Running(gateway, f"http://{host}:{port}")
        finally:
            await runner.cleanup()


async def serve(settings: AppSettings) -> None:
    """Run the gateway until cancelled."""
    async with running(settings) as served:
        _log.info("gateway listening on %s (models: %s)", served.base_url, settings.gateway.models)
        await asyncio.Event().wait()
