"""Priority lanes of the specialist: the lane topic a task is written to, and the pool of
model-call slots the lane stages share, granted to the most urgent waiting lane first.

The backlog waits in Kafka, one topic per lane; in-process, each lane stage holds only
a few tasks (acked once answered, so a restart redelivers them), and a free slot goes
to the lane ``LaneScheduler`` picks, FIFO within a lane. Tasks of one partition are
acked in offset order (``InOrderAcks``) though they are answered concurrently.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from agents.priority import LANE_NAMES, MAX_PRIORITY, LaneScheduler, lane_for, lane_name
from schemas import topics
from schemas.topics import TopicSpec
from streams.metrics import Metrics

LANES: tuple[tuple[str, TopicSpec], ...] = tuple(
    zip(LANE_NAMES[len(topics.TASK_LANES)], topics.TASK_LANES, strict=True)
)
"""(name, topic) of every lane a worker serves, most urgent first."""
_TOPIC_OF = dict(LANES)


def lane_topic(priority: int, lanes: int = len(LANES)) -> TopicSpec:
    """The topic of a task of ``priority`` when tasks are split into ``lanes`` lanes (1-3);
    a priority outside 0..9 (a wider intake policy) counts as the nearest end."""
    clamped = min(max(priority, 0), MAX_PRIORITY)
    return _TOPIC_OF[lane_name(lane_for(clamped, lanes), lanes)]


class SlotPool:
    """``size`` slots shared by the lanes of ``scheduler``: a slot is granted at once when
    one is free and nobody waits, else to the waiter of the lane the scheduler picks."""

    def __init__(self, size: int, scheduler: LaneScheduler) -> None:
        if size < 1:
            raise ValueError(f"a pool needs at least one slot, got {size}")
        self.size = size
        self._free = size
        self._scheduler = scheduler
        self._waiters: list[deque[asyncio.Future[None]]] = [deque() for _ in range(scheduler.lanes)]

    @property
    def free(self) -> int:
        return self._free

    def waiting(self, lane: int) -> int:
        return sum(not f.done() for f in self._waiters[lane])

    async def acquire(self, lane: int) -> None:
        """Wait for a slot for ``lane``; the caller must ``release`` it."""
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[lane].append(granted)
        self._grant()
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release()  # granted, but the waiter went away: hand the slot on
            elif granted in self._waiters[lane]:
                self._waiters[lane].remove(granted)
            raise

    def resize(self, size: int) -> None:
        """Change the number of slots now: more are granted at once to waiters; with
        fewer, slots in use are not taken back, new grants wait until use is below it."""
        if size < 1:
            raise ValueError(f"a pool needs at least one slot, got {size}")
        self._free += size - self.size
        self.size = size
        self._grant()

    def guard(self, every: int) -> None:
        """Change the starvation guard of the lanes (see ``LaneScheduler``)."""
        self._scheduler = replace(self._scheduler, guard_every=every)

    def release(self) -> None:
        if self._free >= self.size:
            raise RuntimeError("released a slot that was never acquired")
        self._free += 1
        self._grant()

    @asynccontextmanager
    async def slot(self, lane: int) -> AsyncIterator[None]:
        await self.acquire(lane)
        try:
            yield
        finally:
            self.release()

    def _grant(self) -> None:
        while self._free > 0:
            for queue in self._waiters:
                while queue and queue[0].done():  # cancelled before its turn
                    queue.popleft()
            lane, self._scheduler = self._scheduler.next_lane([len(q) for q in self._waiters])
            if lane is None:
                return
            self._free -= 1
            self._waiters[lane].popleft().set_result(None)


@asynccontextmanager
async def lane_slot(pool: SlotPool, metrics: Metrics, lane: int, name: str) -> AsyncIterator[None]:
    """A slot of ``pool`` for ``lane``, counted in ``metrics`` under the lane's ``name``."""
    started = time.perf_counter()
    metrics.lane_waiting.labels(name).inc()
    try:
        await pool.acquire(lane)
    finally:
        metrics.lane_waiting.labels(name).dec()
    metrics.lane_wait_seconds.labels(name).observe(time.perf_counter() - started)
    metrics.lane_tasks.labels(name).inc()
    try:
        yield
    finally:
        pool.release()


class InOrderAcks:
    """Acknowledge a partition's records in offset order while handling them concurrently.

    faust commits the first run of consecutive acked offsets and lets that run start one
    past the committed offset (or anywhere before a first commit), so an ack of record
    n+1 while record n is still being handled commits past n: a crash then loses n. Here
    an actor that finished a record waits, before it takes its next one (which is when
    faust acks), until every earlier record of the same partition that an actor took has
    been finished too. Actors share one queue, so they take a partition's records in
    offset order, and the acked offsets are always a prefix of the ones taken.
    """

    def __init__(self) -> None:
        self._open: dict[tuple[str, int], dict[int, asyncio.Event]] = {}

    def held(self, topic: str, partition: int) -> list[int]:
        """Offsets of the partition taken and not yet released, lowest first."""
        return sorted(self._open.get((topic, partition), {}))

    def events(self, stream: Any) -> _Ordered:
        """``stream`` with its records released in order (a stage loop calls ``events()``)."""
        return _Ordered(self, stream)

    async def _release(self, key: tuple[str, int], offset: int) -> None:
        for earlier in [e for o, e in self._open.get(key, {}).items() if o < offset]:
            await earlier.wait()

    async def ordered(self, stream: Any) -> AsyncIterator[Any]:
        async for event in stream.events():
            key = (event.message.topic, event.message.partition)
            offset = event.message.offset
            done = asyncio.Event()
            self._open.setdefault(key, {})[offset] = done
            try:
                yield event
                await self._release(key, offset)
            finally:
                done.set()
                held = self._open.get(key, {})
                if held.get(offset) is done:  # a redelivered copy may have taken its place
                    del held[offset]
                if not held:
                    self._open.pop(key, None)


class _Ordered:
    """What a stage loop iterates: the stream's events, released in order."""

    def __init__(self, acks: InOrderAcks, stream: Any) -> None:
        self._acks = acks
        self._stream = stream

    def events(self) -> AsyncIterator[Any]:
        return self._acks.ordered(self._stream)
