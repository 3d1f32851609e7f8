"""Reading the log for audits: one request's whole trail (its dead letters included), or
every request-scoped event of a time window, grouped by request_id, with progress.

A window is read from the first offset of each partition at or after ``since - slack``
to the first offset after ``until + slack`` (or the end offset seen at the start): a
request's events span time, and producers' clocks differ a little.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from connectors import kafka_connect
from connectors.kafka import KafkaSettings
from connectors.trail import REQUEST_SCOPED, read_trail
from schemas import topics
from schemas.codec import Codec
from schemas.envelope import Event, datetime_to_millis
from schemas.errors import DecodeError
from schemas.request_events import RequestSubmitted
from schemas.topics import TopicSpec, qualified

DEFAULT_SLACK = timedelta(minutes=10)
Progress = Callable[[int, int], None]
"""Called with (records read, records to read) as a read goes on."""
_STAGE_ORDER = {spec.record.record_name: i for i, spec in enumerate(REQUEST_SCOPED)}
_FETCH_MS = 1000


def in_order(events: Iterable[Event]) -> list[Event]:
    """Oldest first; events of one millisecond in the order of the stages."""
    return sorted(events, key=lambda e: (e.occurred_at, _STAGE_ORDER.get(e.record_name, 99)))


async def read_request(
    settings: KafkaSettings, request_id: str, partitions: int, *, slack: timedelta = DEFAULT_SLACK
) -> list[Event]:
    """Every event of ``request_id``, dead letters included, oldest first."""
    trail = await read_trail(settings, request_id, partitions)
    since = trail[0].occurred_at - slack if trail else None
    letters = await _dead_letters(settings, request_id, since)
    return in_order([*trail, *letters])


async def _dead_letters(
    settings: KafkaSettings, request_id: str, since: datetime | None
) -> list[Event]:
    """Dead letters are keyed by the request id when the failed record had one."""
    start = datetime_to_millis(since) if since is not None else 0
    read = await _read(settings, [topics.DEAD_LETTERS], start, None, keys={request_id.encode()})
    return [e for events in read.by_request.values() for e in events]


@dataclass(frozen=True)
class Window:
    """Requests submitted in [since, until]; their events are read with ``slack`` around."""

    since: datetime
    until: datetime
    slack: timedelta = DEFAULT_SLACK

    def holds(self, events: Sequence[Event]) -> bool:
        """Whether the request these events belong to was submitted in the window."""
        return any(
            isinstance(e, RequestSubmitted) and self.since <= e.occurred_at <= self.until
            for e in events
        )


@dataclass
class LogRead:
    # Out of the repr: asyncio reprs a finished task's result, and this one can be huge.
    by_request: dict[str, list[Event]] = field(default_factory=dict, repr=False)
    records: int = 0
    undecodable: int = 0

    @property
    def events(self) -> int:
        return sum(len(events) for events in self.by_request.values())


async def read_window(
    settings: KafkaSettings,
    window: Window,
    *,
    progress: Progress | None = None,
    specs: Sequence[TopicSpec] = REQUEST_SCOPED,
) -> LogRead:
    """The events of every request submitted in ``window``, grouped by request id, each
    group oldest first. Requests only partly in what was read are kept: callers decide."""
    start = datetime_to_millis(window.since - window.slack)
    stop = datetime_to_millis(window.until + window.slack) + 1
    read = await _read(settings, specs, start, stop, progress=progress)
    read.by_request = {
        rid: in_order(events) for rid, events in read.by_request.items() if window.holds(events)
    }
    return read


async def _read(
    settings: KafkaSettings,
    specs: Sequence[TopicSpec],
    start_ms: int,
    stop_ms: int | None,
    *,
    keys: set[bytes] | None = None,
    progress: Progress | None = None,
) -> LogRead:
    parts = await _partitions(settings, [qualified(s, settings.topic_namespace) for s in specs])
    if not parts:
        return LogRead()
    codec = Codec(max_payload=settings.max_payload_bytes)
    consumer = kafka_connect.consumer(settings)
    await kafka_connect.start(consumer, settings)
    try:
        consumer.assign(parts)
        bounds = await _bounds(consumer, parts, start_ms, stop_ms)
        for tp, (first, _) in bounds.items():
            consumer.seek(tp, first)
        return await _drain(consumer, codec, bounds, keys, progress)
    finally:
        await kafka_connect.stop(consumer)


async def _partitions(settings: KafkaSettings, names: Sequence[str]) -> list[TopicPartition]:
    """The partitions of the topics of ``names`` that exist (all-topic metadata: asking for
    one by name could have the broker create it)."""
    admin = kafka_connect.admin(settings)
    await kafka_connect.start(admin, settings)
    try:
        described = await admin.describe_topics()
    finally:
        await kafka_connect.stop(admin)
    wanted = set(names)
    return [
        TopicPartition(t["topic"], p["partition"])
        for t in described
        if t["topic"] in wanted
        for p in sorted(t["partitions"], key=lambda p: p["partition"])
    ]


async def _bounds(
    consumer: AIOKafkaConsumer, parts: list[TopicPartition], start_ms: int, stop_ms: int | None
) -> dict[TopicPartition, tuple[int, int]]:
    """[first, stop) offsets of each partition: the first record at/after ``start_ms`` up
    to the first one at/after ``stop_ms``, or the end offset of this moment."""
    ends: Mapping[TopicPartition, int] = await consumer.end_offsets(parts)
    firsts = await consumer.offsets_for_times({tp: start_ms for tp in parts})
    stops = (
        await consumer.offsets_for_times({tp: stop_ms for tp in parts})
        if stop_ms is not None
        else {}
    )
    bounds: dict[TopicPartition, tuple[int, int]] = {}
    for tp in parts:
        end = ends[tp]
        first = _offset(firsts.get(tp), end)
        bounds[tp] = (first, max(first, _offset(stops.get(tp), end)))
    return bounds


def _offset(found: Any, default: int) -> int:
    """An ``offsets_for_times`` answer: None when no record is that late."""
    return default if found is None else min(int(found.offset), default)


async def _drain(
    consumer: AIOKafkaConsumer,
    codec: Codec,
    bounds: dict[TopicPartition, tuple[int, int]],
    keys: set[bytes] | None,
    progress: Progress | None,
) -> LogRead:
    out = LogRead()
    total = sum(stop - first for first, stop in bounds.values())
    pending = {tp for tp, (first, stop) in bounds.items() if first < stop}
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=_FETCH_MS)
        for tp, records in batch.items():
            _take(out, codec, [r for r in records if r.offset < bounds[tp][1]], keys)
        pending = {tp for tp in pending if await consumer.position(tp) < bounds[tp][1]}
        if progress is not None:
            progress(out.records, total)
    return out


def _take(out: LogRead, codec: Codec, records: list[Any], keys: set[bytes] | None) -> None:
    for record in records:
        out.records += 1
        if keys is not None and record.key not in keys:
            continue
        try:
            event = codec.decode_any(record.value)
        except DecodeError:
            out.undecodable += 1
            continue
        out.by_request.setdefault(event.request_id, []).append(event)
