"""The network aggregator: one fold over the facts of every partition. Duplicates count
once, a new owner recovering the table from its changelog goes on with the same tally,
windows close in event time, and the facts kept have a retention and a cap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents.config import PipelineConfig
from agents.network_facts import NetworkRules, NetworkState, expired_facts, step, tick
from schemas.codec import Codec
from schemas.envelope import Event
from schemas.network_events import ExperimentConcluded, FailureDiagnosed, NetworkFactRecorded
from streams import experiments
from streams.metrics import Metrics
from streams.network_facts import Aggregator, FactIndex, on_fact
from streams.settings import AppSettings
from streams.stage import Record

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RULES = NetworkRules(window=timedelta(minutes=5), review_every=timedelta(days=1))


def fact(
    n: int, *, passed: bool = False, arm: str | None = None, at: datetime = T0
) -> NetworkFactRecorded:
    terms: dict[str, Any] = (
        {
            "experiment_id": "exp-1",
            "proposal_id": "p-1",
            "min_samples": 10,
            "alpha": 0.05,
            "treatment_share": 0.5,
        }
        if arm
        else {}
    )
    return NetworkFactRecorded(
        event_id=f"f-{n}",
        request_id=f"req-{n}",
        occurred_at=at + timedelta(milliseconds=n),
        config_version=1,
        variant=("treatment:exp-1" if arm == "treatment" else arm),
        fact="verdict",
        source_event_id=f"v-{n}",
        recorded_at=at + timedelta(milliseconds=n),
        round=1,
        passed=passed,
        score=0.9 if passed else 0.3,
        failure_classes=() if passed else ("format",),
        specialist="general",
        model="m",
        **terms,
    )


class Changelog(dict[bytes, bytes]):
    """A table that keeps every write in order, as its changelog topic would."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[bytes, bytes | None]] = []

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.log.append((key, value))
        super().__setitem__(key, value)

    def __delitem__(self, key: bytes) -> None:
        self.log.append((key, None))
        super().__delitem__(key)


class RecordingRuntime:
    def __init__(self) -> None:
        self.settings = AppSettings()
        self.codec = Codec()
        self.metrics = Metrics()
        self.config = PipelineConfig(version=1)
        self.sent: list[Event] = []

    def clock(self) -> datetime:
        return T0

    async def emit(self, event: Event, *, headers: dict[str, bytes] | None = None) -> None:
        self.sent.append(event)


def aggregator(table: Changelog | None = None, index: FactIndex | None = None) -> Aggregator:
    return Aggregator(table if table is not None else Changelog(), index or FactIndex(), RULES)


def recovered(log: list[tuple[bytes, bytes | None]]) -> tuple[Changelog, FactIndex]:
    """What a new owner holds once faust has read the changelog back."""
    table, index = Changelog(), FactIndex()
    for key, value in log:
        if value is None:
            table.pop(key, None)
        else:
            dict.__setitem__(table, key, value)
        index.recovered(key, value)
    return table, index


async def feed(rt: Any, agg: Aggregator, facts: list[NetworkFactRecorded]) -> None:
    for offset, f in enumerate(facts):
        await on_fact(
            rt, agg, Record("guardian.network_facts.v1", 0, offset, b"network", rt.codec.encode(f))
        )


def tally(agg: Aggregator) -> tuple[int, int]:
    (run,) = agg.index.state.experiments
    return run.tally.control.n, run.tally.treatment.n


def arms(n: int) -> list[NetworkFactRecorded]:
    return [fact(i, arm="control" if i % 2 else "treatment") for i in range(n)]


async def test_a_redelivered_or_re_emitted_fact_counts_once() -> None:
    rt: Any = RecordingRuntime()
    agg = aggregator()
    facts = arms(8)
    again = facts[5].model_copy(update={"event_id": "re-emitted"})
    await feed(rt, agg, [*facts, facts[3], again, facts[7]])
    assert tally(agg) == (4, 4)
    assert len(agg.index.facts) == 8


async def test_an_experiment_counts_one_verdict_per_request() -> None:
    """A decomposed request's notes are not samples: only the verdict of the subtask
    whose answer becomes the response counts (facts recorded without a subtask too)."""
    rt: Any = RecordingRuntime()
    agg = aggregator()
    facts = arms(8)
    notes = [
        f.model_copy(
            update={"event_id": f"{f.event_id}-{s}", "source_event_id": f"n-{i}-{s}", "subtask": s}
        )
        for i, f in enumerate(facts)
        for s in ("facts", "reasoning")
    ]
    answers = [f.model_copy(update={"subtask": "synthesis"}) for f in facts[:4]] + facts[4:]
    await feed(rt, agg, [*notes, *answers])
    assert tally(agg) == (4, 4)


async def test_a_new_owner_recovering_the_changelog_counts_each_fact_once() -> None:
    rt: Any = RecordingRuntime()
    facts = arms(18)
    straight = aggregator()
    await feed(rt, straight, facts)
    first = aggregator()
    await feed(rt, first, facts[:12])
    # A rebalance: the new owner recovers the table, then gets everything since the
    # last committed offset again (facts 9-11), then the rest.
    table, index = recovered(first.table.log)
    second = aggregator(table, index)
    await feed(rt, second, facts[9:])
    assert tally(second) == tally(straight) == (9, 9)
    assert second.index.state == straight.index.state


async def test_a_crash_between_the_state_and_its_fact_entry_does_not_count_it_twice() -> None:
    rt: Any = RecordingRuntime()
    first = aggregator()
    facts = arms(6)
    await feed(rt, first, facts)
    log = first.table.log
    # The last fact's state write reached the changelog, its own entry did not.
    assert log[-1][0] == b"f/v-5"
    table, index = recovered(log[:-1])
    second = aggregator(table, index)
    await feed(rt, second, facts[5:])
    assert tally(second) == (3, 3)
    assert "v-5" in second.index.facts


async def test_a_clear_effect_concludes_once_and_drops_its_tally(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rt: Any = RecordingRuntime()
    concluded: list[ExperimentConcluded] = []

    async def record(_rt: Any, result: ExperimentConcluded) -> None:
        concluded.append(result)

    monkeypatch.setattr(experiments, "on_concluded", record)
    facts = [
        fact(i, arm="treatment" if i % 2 else "control", passed=bool(i % 2)) for i in range(60)
    ]
    agg = aggregator()
    await feed(rt, agg, facts)
    (result,) = concluded
    assert result.decision == "promote"
    assert result.control_n + result.treatment_n == 20, "decided at the first look"
    (run,) = agg.index.state.experiments
    assert run.concluded_at is not None
    assert run.tally.total == 0


async def test_windows_close_in_event_time_and_diagnose_the_same_on_a_replay() -> None:
    rt: Any = RecordingRuntime()
    facts = [*(fact(i) for i in range(6)), tick(T0 + timedelta(minutes=6))]
    agg = aggregator()
    await feed(rt, agg, facts)
    diagnoses = [e for e in rt.sent if isinstance(e, FailureDiagnosed)]
    (d,) = diagnoses
    assert (d.window_start, d.window_end, d.failures) == (T0, T0 + timedelta(minutes=5), 6)
    assert d.occurred_at == T0 + timedelta(minutes=6)
    again = RecordingRuntime()
    await feed(again, aggregator(), facts)
    assert [e for e in again.sent if isinstance(e, FailureDiagnosed)] == diagnoses
    assert agg.index.state.windows == ()


def test_a_late_verdict_or_history_is_not_counted_in_a_window() -> None:
    state, _ = step(NetworkState(), tick(T0 + timedelta(minutes=10)), RULES)
    late, _ = step(state, fact(1), RULES)
    assert late.windows == ()
    old = fact(2, at=T0 + timedelta(minutes=9)).model_copy(
        update={"recorded_at": T0 + timedelta(minutes=20)}
    )
    history, _ = step(state, old, RULES)
    assert history.windows == ()
    fresh, _ = step(state, fact(3, at=T0 + timedelta(minutes=9, seconds=50)), RULES)
    assert [g.total for w in fresh.windows for g in w.groups] == [1]


def test_kept_facts_leave_after_their_retention_or_beyond_the_cap() -> None:
    rules = NetworkRules(window=timedelta(minutes=5), keep_facts=timedelta(hours=1), max_facts=3)
    kept = [(f"v-{i}", T0 + timedelta(minutes=20 * i)) for i in range(5)]
    now = T0 + timedelta(minutes=95)
    assert expired_facts(kept, len(kept), now, rules) == ["v-0", "v-1"]
    assert expired_facts(kept[2:], 3, now, rules) == []
    assert expired_facts(kept, 5, T0, rules) == ["v-0", "v-1"], "the cap alone"


def test_a_concluded_experiment_is_forgotten_after_its_retention() -> None:
    facts = [
        fact(i, arm="treatment" if i % 2 else "control", passed=bool(i % 2)) for i in range(20)
    ]
    state = NetworkState()
    for f in facts:
        state, _ = step(state, f, RULES)
    assert [r.concluded_at is not None for r in state.experiments] == [True]
    later, _ = step(state, tick(T0 + RULES.keep_concluded + timedelta(seconds=1)), RULES)
    assert later.experiments == ()
