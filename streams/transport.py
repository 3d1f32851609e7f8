"""The worker's Kafka transport: faust's aiokafka driver with its consumer run on the
app's own event loop, and the fetch wait a setting instead of a fixed 1.5 s.

faust runs aiokafka's consumer in a thread of its own and hands every batch, commit
and rebalance callback across to the main loop through a method queue. That hop cost
milliseconds per request. Here the driver's consumer "thread" is started as a plain
service on the app's loop: every call it would queue to the thread is awaited
directly, and rebalance callbacks reach the consumer without the queue. Rebalance
handling, commits, seeks and table recovery are the driver's own, unchanged.

faust picks a transport by the broker URL's scheme through the ``faust.transports``
entry-point group; this one is registered as ``guardian-kafka`` (pyproject.toml).

Heartbeats now share the loop with the stages: nothing a stage does may block it
(model calls, embeddings, PII scans and the embedded model run in threads).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import aiokafka
from aiokafka.errors import IllegalStateError
from faust.transport.drivers import aiokafka as driver
from faust.types import TP
from yarl import URL

_log = logging.getLogger(__name__)
SCHEME = "guardian-kafka"
DEFAULT_FETCH_WAIT_MS = 20
FETCH_WAIT = "fetch_max_wait_ms"


class SameLoopConsumerThread(driver.AIOKafkaConsumerThread):
    """The driver's consumer service, run on the loop of the app that owns it."""

    def __init__(self, consumer: Any, *, loop: asyncio.AbstractEventLoop, **kwargs: Any) -> None:
        # The "thread loop" is the app's loop: nothing is started in another thread.
        super().__init__(consumer, loop=loop, thread_loop=loop, **kwargs)

    async def start(self) -> None:
        self._thread_started.set()
        await self._default_start()

    async def stop(self) -> None:
        if not self._started.is_set() or self._stopped.is_set():
            return
        self._stopped.set()
        await self.on_stop()
        # What the thread would run on its way out: stop aiokafka, then children,
        # futures and exit stacks.
        await self._shutdown_thread()
        await self.on_shutdown()

    async def on_thread_started(self) -> None:
        """No method queue: calls are awaited in place."""

    async def call_thread(self, fun: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run what the driver would queue to its thread, here and now (it queues both
        coroutine functions and plain ones)."""
        result = fun(*args, **kwargs)
        if inspect.isawaitable(result):
            return await result
        return result

    async def cast_thread(self, fun: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        await self.call_thread(fun, *args, **kwargs)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        await self.consumer.on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        await self.consumer.on_partitions_assigned(assigned, generation_id)

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # The driver passes a fixed 1.5 s; aiokafka keeps one fetch in flight per
        # broker, so a partition drained by that fetch waited up to 1.5 s for the
        # next one. The fetcher reads this when the consumer starts.
        consumer._fetch_max_wait_ms = fetch_wait_ms(transport.url)
        return consumer


class SameLoopConsumer(driver.Consumer):
    """faust's aiokafka consumer, delegating to :class:`SameLoopConsumerThread`, that
    never commits past a record it has not finished."""

    _suspects: dict[TP, int] = {}  # noqa: RUF012 - replaced, never mutated in place

    def _new_consumer_thread(self) -> SameLoopConsumerThread:
        return SameLoopConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _new_offset(self, tp: TP) -> int | None:
        """Commit only a run of finished records that starts at the committed offset.

        faust commits the first run of consecutive acked offsets, checking only that it
        starts no more than one past the committed offset. So when the record at the
        committed offset is still being handled (stages finish records out of order,
        and a record handed out before a rebalance can be acked after it), the next
        one's ack committed past it, and a crash then lost it. The record at the
        committed offset must be acked first. (Our source topics are not compacted
        and carry no transaction markers, so that record always arrives.)
        """
        committed = self._committed_offset[tp]
        if committed is not None and committed not in self._acked_index[tp]:
            return None
        result: int | None = super()._new_offset(tp)
        return result

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Never count offsets the read position jumped over as finished.

        faust takes a jump in the offsets it hands out for records that do not exist
        (compacted away, transaction markers) and commits over them as if acked. Our
        source topics have neither, so a jump means records were skipped: a batch
        fetched before a rebalance and handed out after the seek to the committed
        offset moves the read position past records not yet read again. Those records
        must hold the commit back until they are read (see ``passed_over``), not be
        committed unread, which lost them when the partition moved on."""
        _log.info(
            "%s: the read position jumped from %d to %d; the records between are read "
            "again before a commit passes them",
            tp,
            offset_from - 1,
            offset_to,
        )

    async def perform_seek(self) -> None:
        """Seek to the committed offsets, then take each partition's earliest offset as
        its committed one where that is later (a new group, an owner that died before
        its first commit, or records removed by retention): reading starts there (the
        consumer resets to the earliest offset), and without it faust would commit any
        finished run, past records still unread, or (retention) none ever again."""
        await super().perform_seek()
        changelogs = set(self.app.tables.changelog_topics)
        sources = [tp for tp in self.assignment() if tp.topic not in changelogs]
        if not sources:
            return
        for tp, start in (await self.earliest_offsets(*sources)).items():
            committed = self._committed_offset[tp]
            if start is not None and (committed is None or committed < start):
                self._committed_offset[tp] = start

    def passed_over(self) -> dict[TP, int]:
        """Partitions whose record at the committed offset was never handed to a stage
        although later ones were, by partition: the offset to read again from.

        faust drops a record whose offset is below the partition's read offset; a
        batch fetched before a rebalance and handed out after it can move that offset
        past records the new assignment then fetches. Such a record is neither acked
        nor in hand, and (see ``_new_offset``) holds the partition's commits back.
        """
        if self._commit_fut is not None:
            # A commit in flight has taken its offsets out of the acked ones but not yet
            # moved the committed offset: nothing can be judged until it is done.
            return {}
        in_hand = {(m.tp, m.offset) for m in list(self._unacked_messages)}
        found: dict[TP, int] = {}
        for tp, acked in list(self._acked.items()):
            committed = self._committed_offset[tp]
            if committed is None or not acked or committed in self._acked_index[tp]:
                continue
            if (tp, committed) not in in_hand and min(acked) > committed:
                found[tp] = committed
        # Reported only when seen on two checks in a row at the same offset.
        suspects, self._suspects = self._suspects, found
        return {tp: offset for tp, offset in found.items() if suspects.get(tp) == offset}

    def unfinished(self, tp: TP) -> int | None:
        """Records of ``tp`` written but not yet finished by a stage, whether read ahead
        into memory or not read at all (None while its offsets are unknown): the backlog,
        where ``highwater - position`` sees only what is not yet fetched."""
        committed = self._committed_offset.get(tp)
        try:
            highwater = self.highwater(tp)
        except (IllegalStateError, AssertionError):
            return None
        if committed is None or highwater is None:
            return None
        return max(0, int(highwater) - int(committed) - len(self._acked.get(tp, ())))

    async def read_again(self) -> dict[TP, int]:
        """Seek every partition that passed a record over back to it (the records after
        it come again too; the stages recognise them)."""
        found = self.passed_over()
        for tp, offset in found.items():
            _log.warning(
                "%s: record at offset %d was passed over; reading again from it", tp, offset
            )
            await self.seek(tp, offset)
        return found


class IdempotentProducer(driver.Producer):
    """faust's aiokafka producer with idempotence on: a retried send after a lost
    acknowledgement is written once (faust turns it on only with transactions)."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class Transport(driver.Transport):
    """The aiokafka transport with the same-loop consumer."""

    Consumer: ClassVar[type[SameLoopConsumer]] = SameLoopConsumer
    Producer: ClassVar[type[IdempotentProducer]] = IdempotentProducer
    driver_version = f"aiokafka={aiokafka.__version__} same-loop"


def broker_url(hosts: list[str], *, fetch_max_wait_ms: int) -> str:
    """faust's ``broker`` setting for ``hosts`` on this transport; the fetch wait rides
    on the URL, where the consumer finds it (faust reads only host and port)."""
    if fetch_max_wait_ms < 0:
        raise ValueError(f"fetch_max_wait_ms must be >= 0, got {fetch_max_wait_ms}")
    query = f"?{FETCH_WAIT}={fetch_max_wait_ms}"
    return ";".join(f"{SCHEME}://{h.strip()}{query}" for h in hosts)


def fetch_wait_ms(urls: list[URL]) -> int:
    """The fetch wait the broker URLs carry, else the default."""
    for url in urls:
        if FETCH_WAIT in url.query:
            return int(url.query[FETCH_WAIT])
    return DEFAULT_FETCH_WAIT_MS
