"""Background work of a worker (timers, followers) that survives its own errors: an
exception is logged and counted, and the work goes on, so no timer can stop a worker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from streams.runtime import Runtime

_log = logging.getLogger(__name__)
Work = Callable[[], Awaitable[None]]
RESTART_DELAY_S = (0.5, 30.0)
"""First and longest pause before a crashed long-running task starts again."""


def timer(rt: Runtime, interval_s: float, name: str) -> Callable[[Work], Work]:
    """``@timer(rt, 5.0, "lag")``: run the function every ``interval_s``; a tick that
    raises is logged and counted, and the next tick runs as usual."""

    def register(fun: Work) -> Work:
        async def tick() -> None:
            await guarded(rt, name, fun)

        tick.__name__ = tick.__qualname__ = name
        rt.app.timer(interval=interval_s, name=name)(tick)
        return fun

    return register


def task(rt: Runtime, name: str) -> Callable[[Work], Work]:
    """``@task(rt, "config_follower")``: run the function once the worker starts; if it
    raises, log, count and start it again after a pause (doubling, capped)."""

    def register(fun: Work) -> Work:
        async def supervised() -> None:
            await restarting(rt, name, fun)

        supervised.__name__ = supervised.__qualname__ = name
        rt.app.task(supervised)
        return fun

    return register


async def guarded(rt: Runtime, name: str, fun: Work) -> bool:
    """Run ``fun``; False (logged and counted) if it raised."""
    try:
        await fun()
    except Exception:  # noqa: BLE001 - background work must never stop the worker
        rt.metrics.task_errors.labels(name).inc()
        _log.exception("background task %s failed; it goes on", name)
        return False
    return True


async def restarting(rt: Runtime, name: str, fun: Work) -> None:
    """Run ``fun`` until it returns, starting it again after each failure."""
    first, longest = RESTART_DELAY_S
    delay = first
    while not await guarded(rt, name, fun):
        await asyncio.sleep(delay)
        delay = min(delay * 2, longest)
