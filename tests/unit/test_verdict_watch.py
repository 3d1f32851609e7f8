"""The verdict watchers on a recording runtime: each verdict becomes one compact fact on
the network's topic, keyed by the one constant scope, with the experiment terms of the
config version it was decided under; an undecodable verdict reaches no fact."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from agents.config import ExperimentPolicy, PipelineConfig
from schemas.codec import Codec
from schemas.errors import DecodeError
from schemas.network_events import NetworkFactRecorded
from schemas.request_events import GuardianScore, VerdictIssued
from schemas.topics import NETWORK_SCOPE
from streams.settings import AppSettings
from streams.stage import Record
from streams.verdict_watch import watch

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def send(self, topic: str, key: bytes, value: bytes, *_: object) -> Any:
        self.sent.append((topic, key, value))

        async def acked() -> None:
            return None

        return acked()


class App:
    def __init__(self) -> None:
        self.producer = Producer()


class RecordingRuntime:
    """The parts of ``streams.runtime.Runtime`` the watchers use."""

    def __init__(self, *configs: PipelineConfig) -> None:
        self.settings = AppSettings()
        self.codec = Codec()
        self.app = App()
        self.configs = {c.version: c for c in configs}

    def clock(self) -> datetime:
        return NOW

    def config_at(self, version: int) -> PipelineConfig:
        return self.configs[version]


def verdict(variant: str | None = None, version: int = 1) -> VerdictIssued:
    return VerdictIssued(
        event_id="v-1",
        request_id="req-1",
        occurred_at=NOW,
        config_version=version,
        variant=variant,
        task_id="req-1/main/1",
        round=1,
        answer_event_id="a-1",
        passed=False,
        score=0.3,
        threshold=0.7,
        scores=(GuardianScore(guardian="format", score=0.0, passed=False, detail="prose"),),
        failure_classes=("format",),
        specialist="general",
        model="m",
        content="a long answer the facts do not carry",
    )


def record_of(value: bytes) -> Record:
    return Record("ns.guardian.verdicts.v1", 2, 41, b"req-1", value)


def facts(rt: Any) -> list[NetworkFactRecorded]:
    return [rt.codec.decode(v, NetworkFactRecorded) for _, _, v in rt.app.producer.sent]


async def test_a_verdict_becomes_one_compact_fact_under_the_constant_key() -> None:
    rt: Any = RecordingRuntime(PipelineConfig(version=1))
    await watch(rt, record_of(rt.codec.encode(verdict())))
    ((topic, key, _),) = rt.app.producer.sent
    assert topic == "guardian.network_facts.v1"
    assert key == NETWORK_SCOPE.encode()
    (fact,) = facts(rt)
    assert (fact.fact, fact.source_event_id, fact.request_id) == ("verdict", "v-1", "req-1")
    assert fact.failure_classes == ("format",)
    assert [(s.guardian, s.passed) for s in fact.scores] == [("format", False)]
    assert fact.experiment_id is None
    assert "content" not in NetworkFactRecorded.model_fields


async def test_an_arm_verdict_carries_the_terms_of_its_config_version() -> None:
    spec = ExperimentPolicy(id="exp-1", proposal_id="p-1", share=0.4, min_samples=10)
    rt: Any = RecordingRuntime(
        PipelineConfig(version=1), PipelineConfig(version=2, experiment=spec)
    )
    await watch(rt, record_of(rt.codec.encode(verdict("treatment:exp-1", version=2))))
    await watch(rt, record_of(rt.codec.encode(verdict("control", version=1))))
    arm, stale = facts(rt)
    assert (arm.experiment_id, arm.proposal_id, arm.min_samples) == ("exp-1", "p-1", 10)
    assert arm.treatment_share == pytest.approx(0.4)
    assert stale.experiment_id is None, "version 1 ran no experiment"


async def test_an_undecodable_verdict_records_no_fact() -> None:
    rt: Any = RecordingRuntime(PipelineConfig(version=1))
    with pytest.raises(DecodeError):  # the watchers' stage loop dead-letters it
        await watch(rt, record_of(b"junk"))
    assert rt.app.producer.sent == []
