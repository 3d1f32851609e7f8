"""Worker self-observation on a timer: consumer lag per topic."""

from __future__ import annotations

import logging
from collections import defaultdict

from streams.runtime import Runtime

_log = logging.getLogger(__name__)


def register(rt: Runtime) -> None:
    @rt.app.timer(interval=rt.settings.worker.lag_interval_s)  # type: ignore[untyped-decorator]
    async def lag_timer() -> None:
        await record_lag(rt)


async def record_lag(rt: Runtime) -> None:
    """Records between what this worker has read and the end, summed per topic."""
    consumer = rt.app.consumer
    lag: dict[str, int] = defaultdict(int)
    for tp in consumer.assignment():
        position = await consumer.position(tp)
        if position is None:
            continue
        lag[tp.topic] += max(0, consumer.highwater(tp) - position)
    for topic, value in lag.items():
        rt.metrics.consumer_lag.labels(topic).set(value)
