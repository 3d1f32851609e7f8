"""Worker self-observation on a timer: consumer lag per topic."""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from aiokafka.errors import IllegalStateError

from streams import background
from streams.runtime import Runtime
from streams.transport import SameLoopConsumer

_log = logging.getLogger(__name__)


PASSED_OVER_CHECK_S = 2.0


def register(rt: Runtime) -> None:
    @background.timer(rt, rt.settings.worker.lag_interval_s, "lag_timer")
    async def lag_timer() -> None:
        await record_lag(rt)

    @background.timer(rt, PASSED_OVER_CHECK_S, "passed_over_check")
    async def passed_over_check() -> None:
        await read_passed_over_again(rt)


async def read_passed_over_again(rt: Runtime) -> int:
    """Read again from any record the consumer passed over (see
    ``SameLoopConsumer.passed_over``); how many partitions were sought back."""
    consumer = rt.app.consumer
    if not isinstance(consumer, SameLoopConsumer):
        return 0
    found = await consumer.read_again()
    for tp in found:
        rt.metrics.passed_over.labels(tp.topic).inc()
    return len(found)


async def record_lag(rt: Runtime) -> dict[str, int]:
    """Records between what this worker has read and the end, summed per topic.

    A partition in transition (just assigned, being revoked, not fetched yet) has no
    position or end offset: it is left out of this sample rather than failing it."""
    consumer = rt.app.consumer
    lag: dict[str, int] = defaultdict(int)
    for tp in list(consumer.assignment()):
        behind = await partition_lag(consumer, tp)
        if behind is not None:
            lag[tp.topic] += behind
    for topic, value in lag.items():
        rt.metrics.consumer_lag.labels(topic).set(value)
    return dict(lag)


async def record_backlog(rt: Runtime) -> dict[str, int]:
    """Records written but not yet finished, summed per topic: on a worker's own consumer
    what is read ahead into memory counts too (``SameLoopConsumer.unfinished``)."""
    consumer = rt.app.consumer
    if not isinstance(consumer, SameLoopConsumer):
        return await record_lag(rt)
    backlog: dict[str, int] = defaultdict(int)
    for tp in list(consumer.assignment()):
        behind = consumer.unfinished(tp)
        if behind is not None:
            backlog[tp.topic] += behind
    return dict(backlog)


async def partition_lag(consumer: Any, tp: Any) -> int | None:
    """``highwater - position`` of ``tp``, or None when either is unknown right now."""
    try:
        position = await consumer.position(tp)
        highwater = consumer.highwater(tp)
    except (IllegalStateError, AssertionError) as exc:
        # Revoked between the assignment snapshot and now: aiokafka raises on
        # position() and asserts in highwater().
        _log.debug("no lag for %s: partition in transition (%r)", tp, exc)
        return None
    if position is None or highwater is None:
        return None
    return max(0, int(highwater) - int(position))
