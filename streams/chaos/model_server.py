"""The chaos run's model: a real OpenAI-compatible HTTP server on loopback that answers
after a set latency and counts every call it receives.

A prompt marked ``TWICE`` is answered off topic in its first round (the guardian fails
it) and correctly once the conversation carries that first attempt, so such a request
needs a second round; every other prompt is answered correctly at once.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

MODEL = "chaos-model"
TWICE = "[[chaos:twice]]"
OFF_TOPIC = "Bananas are a popular fruit grown in tropical regions around the world."
QUESTIONS: tuple[tuple[str, str], ...] = (
    (
        "What is the boiling point of water at sea level?",
        "Water boils at 100 degrees Celsius, or 212 degrees Fahrenheit, at sea level.",
    ),
    (
        "Who wrote the play Romeo and Juliet?",
        "Romeo and Juliet was written by William Shakespeare in the 1590s.",
    ),
)
"""Questions the load asks and the answers the guardian passes."""


def reply_to(body: dict[str, Any]) -> str:
    """The answer to a chat request: off topic for a first round of a ``TWICE`` prompt."""
    text = json.dumps(body)
    if TWICE in text and OFF_TOPIC not in text:
        return OFF_TOPIC
    for question, answer in QUESTIONS:
        if question in text:
            return answer
    return "Hello."


def completion(
    content: str,
    *,
    model: str = MODEL,
    prompt_tokens: int = 20,
    completion_tokens: int = 12,
    finish_reason: str = "stop",
    completion_id: str = "chatcmpl-chaos",
) -> dict[str, Any]:
    """A chat completion body, shaped as OpenAI's API returns it."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class ModelServer:
    """``async with ModelServer(latency_s)`` serves on ``base_url``; ``calls`` counts every
    chat request received, answered or not."""

    def __init__(self, latency_s: float = 0.2) -> None:
        self.latency_s = latency_s
        self.calls = 0
        self.base_url = ""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)

    async def __aenter__(self) -> ModelServer:
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}/v1"
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._runner.cleanup()

    async def _chat(self, request: web.Request) -> web.Response:
        self.calls += 1
        body = await request.json()
        await asyncio.sleep(self.latency_s)
        return web.json_response(completion(reply_to(body)))

    async def _models(self, _: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})
