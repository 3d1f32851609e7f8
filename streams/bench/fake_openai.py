"""The side-by-side benchmark's model: an OpenAI-compatible server on loopback that
answers at once, in its own process (so it shares no event loop with the load), with an
answer the guardians pass in round one.

``python -m streams.bench.fake_openai --port N`` prints ``model ready`` once serving.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from aiohttp import web

from streams.chaos.model_server import completion

MODEL = "bench-upstream"


def reply_to(body: dict[str, object]) -> str:
    """A greeting that adds words of its own to the question (not an echo), on topic."""
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else {}
    asked = str(last.get("content", "")) if isinstance(last, dict) else ""
    return f"Hello and a warm welcome! Greetings sent as asked: {asked}"


async def _chat(request: web.Request) -> web.Response:
    body = json.loads(await request.read())
    return web.json_response(completion(reply_to(body), model=MODEL))


async def _models(_: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})


async def serve(port: int) -> None:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_get("/v1/models", _models)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("model ready", flush=True)  # noqa: T201 - the parent waits for this line
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
