"""``POST /v1/chat/completions``: submit the request to the pipeline and answer from
its final response, whole or as server-sent events once the guardians have passed it."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from aiokafka.errors import KafkaError

from agents.gateway import (
    ApiError,
    ChatCall,
    bad_request,
    chunks,
    completion,
    guardian_member,
    outcome,
    read_chat,
)
from connectors.errors import PromptTooLargeError, ResponseTimeoutError
from schemas.envelope import datetime_to_millis
from schemas.request_events import ResponseDelivered
from streams.gateway.server import Gateway, Handler

GRACE_S = 5.0
"""How long past the request's deadline the gateway waits for the pipeline's own
timeout response (with the best attempt's status) before answering 504 itself."""


def handler(gw: Gateway) -> Handler:
    async def chat_completions(request: web.Request) -> web.StreamResponse:
        tenant = gw.tenant(request)
        call = read_chat(
            await _body(request, gw.settings.gateway.max_body_bytes),
            tenant=tenant,
            models=gw.settings.gateway.model_names(),
            priority=request.headers.get("X-Guardian-Priority"),
        )
        strict = _strict(request, gw)
        gw.admit()
        started = time.monotonic()
        request_id = uuid.uuid4().hex
        try:
            answer = asyncio.ensure_future(_ask(gw, call, request_id))
            try:
                if call.stream:
                    return await _stream(request, gw, call, answer, request_id, strict)
                return _whole(gw, call, await answer, request_id, strict)
            finally:
                answer.cancel()  # a caller that left: its waiter goes with it
        finally:
            gw.release()
            gw.metrics.seconds.labels("stream" if call.stream else "whole").observe(
                time.monotonic() - started
            )

    return chat_completions


async def _body(request: web.Request, limit: int) -> Any:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(
            413, f"the request body is over {limit} bytes", "request_too_large"
        ) from None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise bad_request(f"the request body is not JSON: {exc}") from None


def _strict(request: web.Request, gw: Gateway) -> bool:
    header = request.headers.get("X-Guardian-Strict")
    if header is None:
        return gw.settings.gateway.strict
    return header.strip().lower() in {"1", "true", "yes"}


async def _ask(gw: Gateway, call: ChatCall, request_id: str) -> ResponseDelivered:
    now = datetime.now(tz=UTC)
    timeout = gw.settings.gateway.timeout_s
    gw.index.submitted(request_id, call.fields["tenant"], datetime_to_millis(now))
    try:
        return await gw.client.ask(
            call.prompt,
            timeout_s=timeout + GRACE_S,
            request_id=request_id,
            context=call.context,
            deadline_at=now + timedelta(seconds=timeout),
            client_id="gateway",
            **call.fields,
        )
    except PromptTooLargeError as exc:
        raise bad_request(str(exc), "prompt_too_long") from None
    except ResponseTimeoutError as exc:
        raise ApiError(504, str(exc), "timeout", type="timeout_error") from None
    except KafkaError as exc:
        raise ApiError(
            503, f"the pipeline is not reachable: {exc}", "unavailable", type="server_error"
        ) from None


def _whole(
    gw: Gateway, call: ChatCall, response: ResponseDelivered, request_id: str, strict: bool
) -> web.Response:
    gw.metrics.requests.labels(response.status).inc()
    headers = {"X-Request-Id": request_id}
    error = outcome(response, strict=strict)
    if error is not None:
        return web.json_response(
            error.body() | _member(response), status=error.status, headers=headers
        )
    body = completion(response, model=call.model, created=_created(response))
    return web.json_response(body, headers=headers)


def _member(response: ResponseDelivered) -> dict[str, Any]:
    """The guardian member on an error too: the request id leads to the trail."""
    return {"guardian": guardian_member(response)}


async def _stream(
    request: web.Request,
    gw: Gateway,
    call: ChatCall,
    answer: asyncio.Future[ResponseDelivered],
    request_id: str,
    strict: bool,
) -> web.StreamResponse:
    """Keep-alive comments while the request is refined (the headers go out with the
    first, so a quick refusal still gets its own status), then the passed answer."""
    stream: web.StreamResponse | None = None
    while not answer.done():
        await asyncio.wait({answer}, timeout=gw.settings.gateway.keepalive_s)
        if not answer.done():
            stream = stream or await _open(request, request_id)
            await stream.write(b": refining\n\n")
    try:
        response = answer.result()
    except ApiError as failed:
        if stream is None:
            raise
        return await _end(stream, failed.body())
    gw.metrics.requests.labels(response.status).inc()
    error = outcome(response, strict=strict)
    if error is not None and stream is None:
        raise ApiError(
            error.status,
            error.message,
            error.code,
            type=error.type,
            headers={"X-Request-Id": request_id},
        )
    stream = stream or await _open(request, request_id)
    if error is not None:
        return await _end(stream, error.body() | _member(response))
    for chunk in chunks(response, model=call.model, created=_created(response)):
        await stream.write(_event(chunk))
    return await _end(stream, None)


async def _open(request: web.Request, request_id: str) -> web.StreamResponse:
    stream = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Request-Id": request_id,
        }
    )
    await stream.prepare(request)
    return stream


async def _end(stream: web.StreamResponse, error: dict[str, Any] | None) -> web.StreamResponse:
    if error is not None:
        await stream.write(_event(error))
    await stream.write(b"data: [DONE]\n\n")
    await stream.write_eof()
    return stream


def _event(value: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(value, separators=(",", ":")).encode() + b"\n\n"


def _created(response: ResponseDelivered) -> int:
    return int(response.occurred_at.timestamp())
