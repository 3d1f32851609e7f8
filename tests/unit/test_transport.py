"""The worker's transport: found by faust through the entry point, with the fetch wait
carried on the broker URL."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import pytest
from faust.transport.drivers import by_url
from faust.types import TP
from intervaltree import IntervalTree  # type: ignore[import-untyped]
from yarl import URL

from streams import transport
from streams.app import create_app
from streams.settings import AppSettings, WorkerSettings


def test_faust_finds_the_transport_by_its_scheme() -> None:
    url = transport.broker_url(["127.0.0.1:9092"], fetch_max_wait_ms=20)
    assert by_url(url) is transport.Transport
    assert transport.Transport.Consumer is transport.SameLoopConsumer


def test_the_broker_url_carries_every_host_and_the_fetch_wait() -> None:
    url = transport.broker_url(["a:1", " b:2"], fetch_max_wait_ms=35)
    urls = [URL(u) for u in url.split(";")]
    assert [(u.scheme, u.host, u.port) for u in urls] == [
        ("guardian-kafka", "a", 1),
        ("guardian-kafka", "b", 2),
    ]
    assert transport.fetch_wait_ms(urls) == 35
    assert transport.fetch_wait_ms([URL("kafka://a:1")]) == transport.DEFAULT_FETCH_WAIT_MS


def test_a_negative_fetch_wait_is_refused() -> None:
    with pytest.raises(ValueError, match="fetch_max_wait_ms"):
        transport.broker_url(["a:1"], fetch_max_wait_ms=-1)


@pytest.mark.parametrize(
    ("consumer", "scheme"), [("same-loop", "guardian-kafka"), ("threaded", "kafka")]
)
def test_the_app_uses_the_consumer_the_settings_name(
    consumer: str, scheme: str, tmp_path: Path
) -> None:
    settings = AppSettings(
        worker=WorkerSettings(consumer=consumer, fetch_wait_ms=15, data_dir=tmp_path)
    )
    app = create_app(settings)
    assert {u.scheme for u in app.conf.broker} == {scheme}
    assert app.conf.broker_commit_interval == settings.worker.commit_interval_s


def consumer_with(committed: int | None, acked: list[int]) -> transport.SameLoopConsumer:
    """The commit bookkeeping of a consumer, without starting one."""
    consumer = object.__new__(transport.SameLoopConsumer)
    consumer._committed_offset = defaultdict(lambda: None, {TP_: committed})
    consumer._acked = defaultdict(list, {TP_: list(acked)})
    consumer._acked_index = defaultdict(set, {TP_: set(acked)})
    consumer._gap = defaultdict(IntervalTree)
    consumer._unacked_messages = set()
    consumer._commit_fut = None
    return consumer


TP_ = TP("guardian.tasks.v1", 0)


class InHand(NamedTuple):
    """A message a stage holds: what the consumer tracks of it."""

    tp: TP
    offset: int


@pytest.mark.parametrize(
    ("committed", "acked", "expected"),
    [
        (10, [11], None),  # the record at the committed offset is still in hand
        (10, [11, 12, 13], None),
        (10, [10, 11], 12),
        (10, [10, 12], 11),  # up to the first hole
        (0, [1], None),
        (0, [0, 1, 2], 3),
        (None, [5, 6], 7),  # nothing committed yet: the first run
    ],
)
def test_a_commit_never_passes_the_record_at_the_committed_offset(
    committed: int | None, acked: list[int], expected: int | None
) -> None:
    assert consumer_with(committed, acked)._new_offset(TP_) == expected


async def test_offsets_jumped_over_are_not_taken_as_finished() -> None:
    """A batch handed out after a rebalance's seek jumps the read position from the
    committed 10 to 20: 11-19 were not read, so the commit stops at them."""
    consumer = consumer_with(10, [10, 20])
    await consumer._add_gap(TP_, 11, 20)
    assert consumer._new_offset(TP_) == 11


def test_the_producer_is_idempotent() -> None:
    producer = object.__new__(transport.IdempotentProducer)
    producer.app = SimpleNamespace(in_transaction=False)  # type: ignore[assignment]
    assert producer._settings_extra() == {"acks": "all", "enable_idempotence": True}


@pytest.mark.parametrize(
    ("committed", "acked", "in_hand", "expected"),
    [
        (10, [11, 12], [], {TP_: 10}),  # 10 was dropped: read again from it
        (10, [11, 12], [10], {}),  # 10 is with a stage: nothing was passed over
        (10, [10, 11], [], {}),
        (10, [], [], {}),
        (None, [3, 4], [], {}),
    ],
)
def test_a_record_passed_over_is_found(
    committed: int | None, acked: list[int], in_hand: list[int], expected: dict[TP, int]
) -> None:
    consumer = consumer_with(committed, acked)
    consumer._unacked_messages = {InHand(TP_, o) for o in in_hand}  # type: ignore[misc]
    assert consumer.passed_over() == {}, "one sighting is not enough"
    assert consumer.passed_over() == expected, "the same hole on the next check is"


def test_nothing_is_judged_while_a_commit_is_in_flight() -> None:
    consumer = consumer_with(10, [11, 12])
    consumer._commit_fut = object()  # type: ignore[assignment]
    assert consumer.passed_over() == {}
    assert consumer.passed_over() == {}
