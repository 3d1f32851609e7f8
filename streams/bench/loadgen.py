"""An open-loop load generator: requests go out on a fixed schedule whatever the
system does, and latency counts from the intended send time, so queueing shows."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from hdrh.histogram import HdrHistogram

from connectors import kafka_connect
from connectors.kafka import KafkaSettings
from schemas.codec import Codec
from schemas.errors import DecodeError
from schemas.request_events import RequestSubmitted

_MAX_LATENCY_US = 120_000_000
QUARTERS = 4


@dataclass
class Latencies:
    """End-to-end latencies in microseconds (HdrHistogram, 3 significant digits)."""

    hist: HdrHistogram = field(default_factory=lambda: HdrHistogram(1, _MAX_LATENCY_US, 3))

    def record(self, seconds: float) -> None:
        self.hist.record_value(max(1, min(_MAX_LATENCY_US, int(seconds * 1_000_000))))

    def summary_ms(self) -> dict[str, float]:
        h = self.hist
        pct = {f"p{p:g}": h.get_value_at_percentile(p) / 1000 for p in (50, 90, 95, 99, 99.9)}
        return pct | {"max": h.get_max_value() / 1000, "mean": h.get_mean_value() / 1000}


@dataclass
class RunResult:
    rate: float
    sent: int
    received: int
    send_seconds: float
    elapsed_seconds: float
    latencies: Latencies
    by_priority: dict[int, Latencies] = field(default_factory=dict)
    """The same latencies split by request priority (when the run set priorities)."""
    by_quarter: dict[int, Latencies] = field(default_factory=dict)
    """The same latencies split by quarter of the send schedule (0 first, 3 last)."""

    @property
    def throughput(self) -> float:
        return self.received / self.elapsed_seconds if self.elapsed_seconds else 0.0

    @property
    def latency_growth_ms(self) -> float | None:
        """Median latency of the last quarter's requests minus the first quarter's: a
        queue that grows during the run shows here even while p99 is still short."""
        first, last = self.by_quarter.get(0), self.by_quarter.get(QUARTERS - 1)
        if first is None or last is None:
            return None
        return last.summary_ms()["p50"] - first.summary_ms()["p50"]

    def as_dict(self) -> dict[str, object]:
        return {
            "rate": self.rate,
            "sent": self.sent,
            "received": self.received,
            "throughput": round(self.throughput, 1),
            "latency_ms": {k: round(v, 3) for k, v in self.latencies.summary_ms().items()},
            "latency_growth_ms": _rounded(self.latency_growth_ms),
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@dataclass
class Sinks:
    """Where a request's latency is recorded: overall, by priority, by schedule quarter."""

    latencies: Latencies = field(default_factory=Latencies)
    by_priority: dict[int, Latencies] = field(default_factory=lambda: defaultdict(Latencies))
    by_quarter: dict[int, Latencies] = field(default_factory=lambda: defaultdict(Latencies))

    def record(self, seconds: float, level: int | None, quarter: int) -> None:
        self.latencies.record(seconds)
        self.by_quarter[quarter].record(seconds)
        if level is not None:
            self.by_priority[level].record(seconds)


@dataclass
class Counts:
    """Requests sent and answered so far, updated while a run goes on."""

    sent: int = 0
    answered: int = 0


@dataclass(frozen=True)
class Target:
    """Where requests go in and where their answers come out."""

    kafka: KafkaSettings
    in_topic: str
    out_topic: str
    out_partitions: int

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap_servers


async def run_load(
    target: Target,
    *,
    rate: float,
    seconds: float,
    drain_s: float = 30.0,
    prompt: Callable[[int], str] | None = None,
    priority: Callable[[int], int] | None = None,
    counts: Counts | None = None,
) -> RunResult:
    """Send ``rate`` requests per second for ``seconds`` and wait for their answers;
    request ``i`` has ``priority(i)`` (default: the request's default) and its latency
    is also counted under it; ``counts`` follows the run as it goes."""
    codec = Codec()
    run = uuid.uuid4().hex[:8]  # prompts never repeat across runs
    prompt = prompt or (lambda i: f"What is the capital of country number {i} ({run})?")
    intended: dict[str, tuple[float, int | None, int]] = {}
    sinks = Sinks()
    done = asyncio.Event()
    total = int(rate * seconds)
    counts = counts if counts is not None else Counts()
    consumer = await _open_tail(target)
    collector = asyncio.create_task(_collect(consumer, codec, intended, sinks, counts, total, done))
    producer = kafka_connect.producer(target.kafka, linger_ms=1, acks=1)
    await kafka_connect.start(producer, target.kafka)
    try:
        started = time.perf_counter()
        await _send_schedule(
            producer, codec, target, intended, (rate, total, counts), (prompt, priority)
        )
        send_seconds = time.perf_counter() - started
        await producer.flush()
        with contextlib.suppress(TimeoutError):  # what did not arrive counts as lost
            await asyncio.wait_for(done.wait(), drain_s)
        elapsed = time.perf_counter() - started
    finally:
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)
        await producer.stop()
        await consumer.stop()
    received = total - len(intended)
    return RunResult(
        rate,
        total,
        received,
        send_seconds,
        elapsed,
        sinks.latencies,
        dict(sinks.by_priority),
        dict(sinks.by_quarter),
    )


async def _send_schedule(
    producer: AIOKafkaProducer,
    codec: Codec,
    target: Target,
    intended: dict[str, tuple[float, int | None, int]],
    pace: tuple[float, int, Counts],
    shape: tuple[Callable[[int], str], Callable[[int], int] | None],
) -> None:
    rate, total, counts = pace
    prompt, priority = shape
    t0 = time.perf_counter()
    for i in range(total):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)  # the schedule itself: open-loop pacing
        rid = uuid.uuid4().hex
        level = priority(i) if priority is not None else None
        intended[rid] = (due, level, i * QUARTERS // total)
        request = RequestSubmitted(
            event_id=rid,
            request_id=rid,
            occurred_at=datetime.now(UTC),
            prompt=prompt(i),
            **({} if level is None else {"priority": level}),
        )
        await producer.send(target.in_topic, codec.encode(request), key=rid.encode())
        counts.sent += 1


async def _open_tail(target: Target) -> AIOKafkaConsumer:
    consumer = kafka_connect.consumer(target.kafka)
    await kafka_connect.start(consumer, target.kafka)
    parts = [TopicPartition(target.out_topic, p) for p in range(target.out_partitions)]
    consumer.assign(parts)
    await consumer.seek_to_end(*parts)
    for tp in parts:
        await consumer.position(tp)
    return consumer


async def _collect(
    consumer: AIOKafkaConsumer,
    codec: Codec,
    intended: dict[str, tuple[float, int | None, int]],
    sinks: Sinks,
    counts: Counts,
    total: int,
    done: asyncio.Event,
) -> None:
    while counts.answered < total:
        batch = await consumer.getmany(timeout_ms=200)
        now = time.perf_counter()
        for records in batch.values():
            for record in records:
                try:
                    rid = codec.decode_any(record.value).request_id
                except DecodeError:
                    continue
                sent = intended.pop(rid, None)
                if sent is not None:
                    due, level, quarter = sent
                    sinks.record(now - due, level, quarter)
                    counts.answered += 1
    done.set()
