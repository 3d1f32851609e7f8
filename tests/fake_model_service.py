"""A fake OpenAI-compatible model service for tests: a real aiohttp server on loopback.

Each test scripts the replies to ``POST /v1/chat/completions`` in order (the last
one repeats) and reads back what the service received, and when.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

from streams.chaos.model_server import completion as completion_body
from tests.loopback import LoopbackServer

MODEL = "fake-model"


@dataclass(frozen=True)
class Reply:
    """One scripted answer: status, body, headers; or hold the request until teardown."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    hang: bool = False
    delay_s: float = 0.0
    """Simulated model latency, for tests where latency is the thing under test."""


def completion(
    content: str = "Paris",
    *,
    model: str = MODEL,
    prompt_tokens: int = 12,
    completion_tokens: int = 3,
    finish_reason: str = "stop",
) -> Reply:
    """A normal chat completion, shaped as OpenAI's API returns it."""
    return json_reply(
        completion_body(
            content,
            model=model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason=finish_reason,
            completion_id="chatcmpl-1",
        )
    )


def json_reply(
    payload: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> Reply:
    return Reply(status=status, body=json.dumps(payload).encode(), headers=dict(headers or {}))


def error(status: int, message: str = "failed", headers: Mapping[str, str] | None = None) -> Reply:
    """An error in OpenAI's shape: ``{"error": {"message": ..., "type": ...}}``."""
    return json_reply({"error": {"message": message, "type": "fake_error"}}, status, headers)


@dataclass(frozen=True)
class Received:
    """A request the service received: its JSON body, headers, and arrival (monotonic)."""

    body: dict[str, Any]
    headers: Mapping[str, str]
    at: float


class FakeModelService:
    """``async with FakeModelService(reply, ...) as service``: serves on ``service.base_url``."""

    def __init__(self, *replies: Reply) -> None:
        self._replies: list[Reply] = list(replies) or [completion()]
        self._served = 0
        self.calls = 0
        """Every chat request received, counted on arrival (answered or not)."""
        self.received: list[Received] = []
        self._release = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self._server = LoopbackServer(app)
        self.base_url = ""

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies`` in order; the last one repeats."""
        self._replies = list(replies)
        self._served = 0

    async def __aenter__(self) -> FakeModelService:
        self.base_url = f"{await self._server.start()}/v1"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release.set()
        await self._server.stop()

    def _next(self) -> Reply:
        reply = self._replies[min(self._served, len(self._replies) - 1)]
        self._served += 1
        return reply

    async def _chat(self, request: web.Request) -> web.Response:
        self.calls += 1
        body = await request.json()
        self.received.append(Received(body, dict(request.headers), time.monotonic()))
        reply = self._next()
        if reply.hang:
            await self._release.wait()
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        headers = {"Content-Type": "application/json", **reply.headers}
        return web.Response(status=reply.status, body=reply.body, headers=headers)

    async def _models(self, _: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})
