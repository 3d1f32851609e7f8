"""Durable, single-writer config history on a real broker: every version survives
compaction of the current view, racing writers never share a version, version 0 is an
event from the first worker, an older deployment migrates, workers follow new versions."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka.admin import AdminClient

from agents.config import PipelineConfig
from agents.config_history import config_at, genesis
from agents.config_values import apply_change, config_changed, config_of
from connectors.admin import update_configs
from connectors.config_log import (
    ConfigConflictError,
    ensure_history,
    propose,
    publish_change,
    publish_config,
    read_config_versions,
    read_latest,
)
from connectors.config_topics import (
    config_topic,
    ensure_config_topics,
    history_topic,
    read_history,
    read_records,
    read_seed,
)
from connectors.kafka import KafkaSettings
from schemas.codec import Codec
from schemas.network_events import ConfigChanged
from tests.integration.harness import ROOT, Pipeline, pipeline

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EAGER_COMPACTION = {
    "segment.ms": "100",
    "min.cleanable.dirty.ratio": "0.01",
    "max.compaction.lag.ms": "100",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": "100",
}


@pytest.fixture
def space(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Pipeline]:
    """A uuid namespace with no worker; every topic under it is deleted afterwards."""
    p = Pipeline(bootstrap=kafka_bootstrap, tmp=tmp_path)
    try:
        yield p
    finally:
        p.delete_topics()


def first(event_id: str = "genesis") -> ConfigChanged:
    return genesis(PipelineConfig(version=0), now=T0, event_id=event_id, changed_by="test")


def setting(key: str, value: str, by: str = "test") -> Callable[[ConfigChanged], ConfigChanged]:
    """A ``derive`` that sets ``key`` to ``value`` on top of whatever is latest."""

    def derive(latest: ConfigChanged) -> ConfigChanged:
        previous = config_of(latest)
        new = apply_change(previous, key, value)
        return config_changed(
            previous, new, changed_by=by, reason=f"{key}={value}", now=T0, event_id=uuid.uuid4().hex
        )

    return derive


def cli(p: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDIAN_")}
    env["KAFKA_BOOTSTRAP_SERVERS"] = p.bootstrap
    command = [sys.executable, "-m", "streams.cli", "config", *args, "--namespace", p.namespace]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


async def logged_within(p: Pipeline, text: str, deadline: float) -> bool:
    """Whether the worker logs ``text`` before the monotonic ``deadline``."""
    while text not in p.log():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.5)
    return True


async def current_view_count(kafka: KafkaSettings) -> tuple[int, int]:
    """Records left on the current view, and its end offset."""
    records = await read_records(kafka, config_topic(kafka), 0)
    return len(records), (records[-1].offset + 1 if records else 0)


async def test_every_version_survives_compaction_of_the_current_view(space: Pipeline) -> None:
    kafka = space.kafka
    await ensure_config_topics(kafka)
    admin = AdminClient(kafka.confluent())
    update_configs(admin, {config_topic(kafka): EAGER_COMPACTION})
    update_configs(admin, {history_topic(kafka): {"segment.ms": "100"}})
    await ensure_history(kafka, first())
    for i in range(1, 7):
        await publish_change(kafka, setting("guardian.pass_threshold", f"0.7{i}"), first())
    deadline = time.monotonic() + 40
    left, end = await current_view_count(kafka)
    while left == end and time.monotonic() < deadline:
        await asyncio.sleep(1)
        left, end = await current_view_count(kafka)
    assert left < end, f"the current view was not compacted within 40 s ({left} of {end})"

    history = cli(space, "history")
    shown = cli(space, "show", "--version", "3")
    latest = cli(space, "show")
    missing = cli(space, "show", "--version", "99")
    assert history.returncode == 0, history.stderr
    lines = [json.loads(line) for line in history.stdout.splitlines()]
    assert [line["version"] for line in lines] == list(range(7))
    assert lines[3]["changed"] == {"guardian.pass_threshold": "0.73"}
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == "version 3"
    assert "guardian.pass_threshold = 0.73" in shown.stdout.splitlines()
    assert latest.stdout.splitlines()[0] == "version 6"
    assert missing.returncode == 1
    assert "config version 99 is unknown (held: 0..6)" in missing.stderr
    versions = await read_config_versions(kafka)
    assert config_at(versions, 5).guardian.pass_threshold == pytest.approx(0.75)


async def test_two_writers_racing_for_a_version_leave_one_and_the_loser_retries(
    space: Pipeline,
) -> None:
    kafka = space.kafka
    chain = await ensure_history(kafka, first())
    assert chain.latest is not None
    mine = setting("guardian.pass_threshold", "0.8", "mine")(chain.latest)
    theirs = setting("refine.max_rounds", "2", "theirs")(chain.latest)
    (won_a, _), (won_b, _) = await asyncio.gather(
        propose(kafka, mine, chain), propose(kafka, theirs, chain)
    )
    assert sorted([won_a, won_b]) == [False, True], "exactly one proposal wins version 1"
    winner, loser = (mine, theirs) if won_a else (theirs, mine)
    records = await read_history(kafka)
    assert sorted(r.event.event_id for r in records if r.event.version == 1) == sorted(
        [mine.event_id, theirs.event_id]
    ), "both proposals are in the log"
    versions = await read_config_versions(kafka)
    assert versions[1].event_id == winner.event_id
    with pytest.raises(ConfigConflictError, match="version 1"):
        await publish_config(kafka, loser)
    key, value = loser.changed_keys[0], loser.values[loser.changed_keys[0]]
    retried = await publish_change(kafka, setting(key, value, loser.changed_by), first())
    assert retried is not None
    assert retried.version == 2
    versions = await read_config_versions(kafka)
    assert sorted(versions) == [0, 1, 2]
    both = config_of(versions[2])
    assert (both.guardian.pass_threshold, both.refine.max_rounds) == (0.8, 2)
    latest = await read_latest(kafka)
    assert latest is not None
    assert latest.version == 2


async def test_many_concurrent_writers_each_get_their_own_version(space: Pipeline) -> None:
    kafka = space.kafka
    await ensure_history(kafka, first())
    changes = {
        "guardian.pass_threshold": "0.8",
        "refine.max_rounds": "2",
        "specialist.temperature": "0.1",
        "intake.max_prompt_chars": "4000",
    }
    published = await asyncio.gather(
        *(publish_change(kafka, setting(k, v), first()) for k, v in changes.items())
    )
    assert sorted(e.version for e in published if e is not None) == [1, 2, 3, 4]
    versions = await read_config_versions(kafka)
    assert sorted(versions) == [0, 1, 2, 3, 4]
    changed = [versions[v].changed_keys for v in range(1, 5)]
    assert sorted(k for keys in changed for k in keys) == sorted(changes)
    final = versions[4].values
    assert {k: final[k] for k in changes} == changes, "no change was lost"
    sets = [
        cli(space, "set", "guardian.min_alignment", "0.25", "--reason", "a"),
        cli(space, "set", "guardian.full_alignment", "0.7", "--reason", "b"),
    ]
    assert [s.returncode for s in sets] == [0, 0], [s.stderr for s in sets]
    versions = await read_config_versions(kafka)
    assert sorted(versions) == [0, 1, 2, 3, 4, 5, 6]


async def test_an_older_deployment_migrates_its_latest_version(space: Pipeline) -> None:
    kafka = space.kafka
    await ensure_config_topics(kafka)
    base = PipelineConfig(version=6)
    old = config_changed(
        base,
        apply_change(base, "guardian.pass_threshold", "0.9"),
        changed_by="operator",
        reason="before the history",
        now=T0,
        event_id="old-7",
    )
    producer = AIOKafkaProducer(**kafka.aiokafka(), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(config_topic(kafka), Codec().encode(old), key=b"global")
    finally:
        await producer.stop()
    assert await read_seed(kafka) == old
    chain = await ensure_history(kafka, first())
    assert chain.latest == old
    nxt = await publish_change(kafka, setting("refine.max_rounds", "2"), first())
    assert nxt is not None
    assert nxt.version == 8
    versions = await read_config_versions(kafka)
    assert sorted(versions) == [7, 8]
    assert config_at(versions, 8).guardian.pass_threshold == pytest.approx(0.9)


async def test_version_0_is_an_event_after_the_first_start_and_workers_follow(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    with pipeline(kafka_bootstrap, tmp_path, partitions=1) as p:
        p.start_fixed_answer_worker("A fixed answer.")
        deadline = time.monotonic() + 45
        versions: dict[int, ConfigChanged] = {}
        while 0 not in versions and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            versions = await read_config_versions(p.kafka)
        assert 0 in versions, p.log()
        zero = versions[0]
        assert (zero.changed_by, zero.previous_version) == ("worker", -1)
        assert config_of(zero).version == 0
        latest = await read_latest(p.kafka)
        assert latest == zero
        await publish_change(p.kafka, setting("guardian.pass_threshold", "0.9"), first())
        assert await logged_within(p, "config version 1 applied", deadline)
