"""The verdict watchers on a recording runtime: each verdict is decoded once and reaches
every observer in order; one observer's failure is its own dead letter and the others
still observe; the diagnostician leaves history older than its window alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from agents.config import PipelineConfig
from schemas.codec import Codec
from schemas.envelope import Event
from schemas.errors import DecodeError
from schemas.network_events import FailureDiagnosed
from schemas.request_events import DeadLettered, VerdictIssued
from streams import network
from streams.metrics import Metrics
from streams.settings import AppSettings
from streams.stage import Record
from streams.verdict_watch import VerdictObserver, watch

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
E = TypeVar("E", bound=Event)


class CountingCodec(Codec):
    """The real codec, counting the decodes."""

    decodes = 0

    def decode(self, data: bytes, model: type[E]) -> E:
        self.decodes += 1
        return super().decode(data, model)


class RecordingRuntime:
    """The parts of ``streams.runtime.Runtime`` the watchers use; sent events are kept."""

    def __init__(self) -> None:
        self.settings = AppSettings()
        self.codec = CountingCodec()
        self.config = PipelineConfig(version=1)
        self.metrics = Metrics()
        self.sent: list[Event] = []
        self.headers: list[dict[str, bytes] | None] = []

    def clock(self) -> datetime:
        return NOW

    async def emit(self, event: Event, *, headers: dict[str, bytes] | None = None) -> None:
        self.sent.append(event)
        self.headers.append(headers)


def verdict(n: int, at: datetime = NOW, *, passed: bool = True) -> VerdictIssued:
    return VerdictIssued(
        event_id=f"v-{n}",
        request_id=f"req-{n}",
        occurred_at=at,
        config_version=1,
        task_id=f"req-{n}/main/1",
        round=1,
        answer_event_id=f"a-{n}",
        passed=passed,
        score=0.9 if passed else 0.3,
        threshold=0.7,
        failure_classes=() if passed else ("format",),
        specialist="general",
        deployment="d",
        model="m",
    )


def record_of(rt: RecordingRuntime, value: VerdictIssued | bytes) -> Record:
    data = value if isinstance(value, bytes) else rt.codec.encode(value)
    return Record("ns.guardian.verdicts.v1", 2, 41, b"req-1", data)


def keeping(name: str, seen: list[tuple[str, str]]) -> VerdictObserver:
    async def observe(v: VerdictIssued) -> None:
        seen.append((name, v.event_id))

    return VerdictObserver(name, observe)


def failing(name: str) -> VerdictObserver:
    async def observe(_v: VerdictIssued) -> None:
        raise RuntimeError("observer broke")

    return VerdictObserver(name, observe)


def events(rt: RecordingRuntime, stage: str, outcome: str) -> float:
    labels = {"stage": stage, "outcome": outcome}
    return rt.metrics.registry.get_sample_value("guardian_stage_events_total", labels) or 0.0


def errors(rt: RecordingRuntime, stage: str, error_class: str) -> float:
    labels = {"stage": stage, "error_class": error_class}
    return rt.metrics.registry.get_sample_value("guardian_stage_errors_total", labels) or 0.0


async def test_each_verdict_is_decoded_once_and_observed_in_order() -> None:
    rt: Any = RecordingRuntime()
    seen: list[tuple[str, str]] = []
    observers = [keeping(name, seen) for name in ("first", "second", "third")]
    await watch(rt, observers, record_of(rt, verdict(1)))
    assert seen == [("first", "v-1"), ("second", "v-1"), ("third", "v-1")]
    assert rt.codec.decodes == 1
    assert events(rt, "second", "ok") == 1
    assert rt.sent == []


async def test_a_failing_observer_is_its_own_dead_letter_and_the_others_still_observe() -> None:
    rt: Any = RecordingRuntime()
    seen: list[tuple[str, str]] = []
    observers = [keeping("first", seen), failing("broken"), keeping("third", seen)]
    await watch(rt, observers, record_of(rt, verdict(1)))
    assert seen == [("first", "v-1"), ("third", "v-1")]
    assert errors(rt, "broken", "RuntimeError") == 1
    assert events(rt, "broken", "dead_letter") == 1
    assert events(rt, "third", "ok") == 1
    (letter,) = rt.sent
    assert isinstance(letter, DeadLettered)
    assert (letter.stage, letter.source_offset) == ("broken", 41)
    assert rt.headers[0]["stage"] == b"broken"


async def test_an_undecodable_verdict_fails_the_watchers_stage_and_reaches_no_observer() -> None:
    rt: Any = RecordingRuntime()
    seen: list[tuple[str, str]] = []
    # Raised to the watchers' own stage loop, which dead-letters it once, as STAGE.
    with pytest.raises(DecodeError):
        await watch(rt, [keeping("first", seen)], record_of(rt, b"junk"))
    assert seen == []
    assert rt.sent == []


async def test_the_diagnostician_leaves_history_older_than_its_window_alone() -> None:
    rt: Any = RecordingRuntime()
    diag = network.Diagnostician()
    window = timedelta(seconds=rt.settings.network.diagnosis_window_s)
    # A replay from the earliest offset: failures spread over the windows of a day ago.
    for n in range(40):
        at = NOW - timedelta(days=1) + n * window / 4
        await network.on_verdict(rt, diag, verdict(n, at, passed=False))
    assert diag.window is None
    assert not any(isinstance(e, FailureDiagnosed) for e in rt.sent)
    await network.on_verdict(rt, diag, verdict(99, NOW - window / 2, passed=False))
    assert diag.window is not None
    assert diag.window.start == NOW - window / 2
    assert [g.total for g in diag.window.groups] == [1]
