"""The config topics' specs and headers: the history is kept forever and never
compacted, the current view is compacted, and offsets travel as headers."""

from __future__ import annotations

import pytest
from aiokafka.structs import ConsumerRecord

from connectors.config_topics import (
    HISTORY_OFFSET,
    PREVIOUS_OFFSET,
    config_topic,
    header,
    history_topic,
)
from connectors.kafka import KafkaSettings
from schemas import topics


def record(*headers: tuple[str, bytes]) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="t",
        partition=0,
        offset=3,
        timestamp=0,
        timestamp_type=0,
        key=b"1",
        value=b"",
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=0,
        headers=headers,
    )


def test_the_history_is_kept_forever_and_never_compacted() -> None:
    cfg = topics.CONFIG_HISTORY.config()
    assert cfg == {"cleanup.policy": "delete", "retention.ms": "-1"}
    assert topics.CONFIG_HISTORY.partitions == 1, "one partition: one log order for every reader"
    assert topics.CONFIG.config() == {"cleanup.policy": "compact"}
    assert set(topics.CONFIG_TOPICS) == {topics.CONFIG, topics.CONFIG_HISTORY}


def test_both_topics_live_under_the_namespace() -> None:
    kafka = KafkaSettings(topic_namespace="t1")
    assert history_topic(kafka) == "t1.guardian.config_history.v1"
    assert config_topic(kafka) == "t1.guardian.config.v1"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (((HISTORY_OFFSET, b"42"),), 42),
        (((PREVIOUS_OFFSET, b"7"), (HISTORY_OFFSET, b"0")), 0),
        ((), None),
        (((HISTORY_OFFSET, b"forty"),), None),
        (((HISTORY_OFFSET, b"\xff"),), None),
    ],
    ids=["present", "among-others", "absent", "not-a-number", "not-utf8"],
)
def test_offset_headers_are_read_or_ignored(
    headers: tuple[tuple[str, bytes], ...], expected: int | None
) -> None:
    assert header(record(*headers), HISTORY_OFFSET) == expected
