"""A model call's deadline that stops while the call waits for its turn on a model that
answers one call at a time (the embedded llama.cpp model).

A worker gives each model call ``model_timeout_s``. With several calls in flight, a
local model serves them one after another; counting the wait for its turn against the
deadline would turn a queue into timeouts, however fast each generation is. So the
deadline covers what the call does (its generation, a remote endpoint's answer, retries
and their pauses), and ``turn`` holds it while the call waits for the model's lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

_current: ContextVar[asyncio.Timeout | None] = ContextVar("model_deadline", default=None)


@asynccontextmanager
async def deadline(seconds: float) -> AsyncIterator[None]:
    """Raise ``TimeoutError`` once the calls inside have worked for ``seconds``, not
    counting the time they waited in ``turn``."""
    async with asyncio.timeout(seconds) as timeout:
        token = _current.set(timeout)
        try:
            yield
        finally:
            _current.reset(token)


@asynccontextmanager
async def turn(lock: asyncio.Lock) -> AsyncIterator[None]:
    """Hold ``lock``; the current deadline, if any, stops while waiting for it."""
    timeout = _current.get()
    due = timeout.when() if timeout is not None else None
    if timeout is None or due is None or not lock.locked():
        async with lock:
            yield
        return
    loop = asyncio.get_running_loop()
    left = due - loop.time()
    timeout.reschedule(None)
    try:
        await lock.acquire()
    finally:
        timeout.reschedule(loop.time() + left)
    try:
        yield
    finally:
        lock.release()
