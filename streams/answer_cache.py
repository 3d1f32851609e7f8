"""The cache of guardian-approved answers as the stages use it: intake looks a request
up before any model call; refine stores a passed answer when it finalizes."""

from __future__ import annotations

import logging

from agents import refine
from agents.cache import cache_key, from_cache, should_cache
from connectors.cache_store import CacheUnavailable
from schemas.errors import DecodeError
from schemas.request_events import RequestSubmitted, ResponseDelivered
from streams.runtime import Runtime

_log = logging.getLogger(__name__)


def key_of_request(rt: Runtime, request: RequestSubmitted, context: tuple[str, ...] = ()) -> str:
    return cache_key(
        request.prompt,
        request.answer_format,
        rt.config.version,
        request.tenant,
        variant=request.variant,
        context=context,
    )


async def lookup(
    rt: Runtime, request: RequestSubmitted, context: tuple[str, ...] = ()
) -> ResponseDelivered | None:
    """The cached answer for ``request`` (in a session with ``context``) as its own
    final response, or None."""
    if rt.ports.cache is None:
        return None
    try:
        raw = await rt.ports.cache.get(key_of_request(rt, request, context))
    except CacheUnavailable as exc:
        _log.warning("cache lookup skipped: %s", exc)
        return None
    if raw is None:
        return None
    try:
        cached = rt.codec.decode(raw, ResponseDelivered)
    except DecodeError as exc:
        _log.warning("cache entry unreadable, ignored: %s", exc)
        return None
    return from_cache(cached, request, rt.clock())


async def store(rt: Runtime, state: refine.RequestState, response: ResponseDelivered) -> None:
    """Keep a passed answer under the key its request was looked up with."""
    if rt.ports.cache is None or not state.runs or not should_cache(response):
        return
    key = cache_key(
        state.prompt,
        state.answer_format,
        state.config_version,
        state.tenant,
        variant=state.variant,
        context=state.context,
    )
    try:
        await rt.ports.cache.put(key, rt.codec.encode(response), rt.settings.cache.ttl_s)
    except CacheUnavailable as exc:
        _log.warning("cache store skipped: %s", exc)
