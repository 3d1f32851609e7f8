"""The guardian network's one decider. Verdicts and feedback from every partition are
recorded as facts on a single-partition topic; one faust agent, on the worker that owns
that partition, folds them in order (``agents.network_facts``) and emits the diagnoses,
experiment conclusions and meta-guardian proposals. Its state and the facts it keeps
live in a changelog-backed table, so the next owner goes on from where it stopped."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import TypeAdapter

from agents.anomaly import DetectorPolicy
from agents.anomaly_watch import Series, WatchPolicy
from agents.lessons import LessonRules
from agents.network_facts import (
    Decisions,
    NetworkRules,
    NetworkState,
    expired_facts,
    step,
    tick,
)
from schemas import topics
from schemas.codec import Codec
from schemas.network_events import AnomalyDetected, NetworkFactRecorded
from schemas.topics import NETWORK_TABLE
from streams import background, experiments, meta_guardian, network
from streams.facts_topic import facts_topic, send_fact
from streams.keyed_table import keyed_table
from streams.runtime import Runtime, sends_of_record
from streams.settings import NetworkSettings
from streams.stage import Record, run

_log = logging.getLogger(__name__)
STAGE = "network_facts"
STATE_KEY = b"state"
SERIES_KEY = b"anomaly-series"
"""The anomaly detector's series, apart from the state: they change once a window, the
state with every fact, so each fact's write stays small."""
FACT_PREFIX = b"f/"
_CODEC = Codec()
"""Kept facts are stored in single-object Avro, readable without a registry."""


@dataclass
class FactIndex:
    """The table as the aggregator reads it: its state, and the facts kept (by source
    event id, in the order recorded). Follows every write, recovery and rebalance."""

    state: NetworkState = field(default_factory=NetworkState)
    facts: dict[str, NetworkFactRecorded] = field(default_factory=dict)
    series: tuple[Series, ...] = ()

    def recovered(self, key: bytes, value: bytes | None) -> None:
        if key == STATE_KEY:
            self.state = with_series(
                NetworkState() if value is None else _state_of(value), self.series
            )
        elif key == SERIES_KEY:
            self.series = () if value is None else _SERIES.validate_json(value)
            self.state = with_series(self.state, self.series)
        elif key.startswith(FACT_PREFIX):
            source_id = key[len(FACT_PREFIX) :].decode()
            self.facts.pop(source_id, None)  # a rewrite moves to the end, as in the log
            if value is not None:
                self.facts[source_id] = _CODEC.decode(value, NetworkFactRecorded)

    def kept(self, partitions: set[int], count: int) -> None:
        if 0 not in partitions:
            self.state, self.facts, self.series = NetworkState(), {}, ()


def _state_of(raw: bytes) -> NetworkState:
    return NetworkState.model_validate_json(raw)


_SERIES = TypeAdapter(tuple[Series, ...])


def with_series(state: NetworkState, series: tuple[Series, ...]) -> NetworkState:
    watch = state.watch.model_copy(update={"series": series})
    return state.model_copy(update={"watch": watch})


def save_state(agg: Aggregator, state: NetworkState) -> None:
    """The state under ``STATE_KEY`` without the series, and the series under
    ``SERIES_KEY`` when a window's close changed them."""
    series = state.watch.series
    if series is not agg.index.series and series != agg.index.series:
        agg.table[SERIES_KEY] = _SERIES.dump_json(state.watch.series)
        agg.index.series = state.watch.series
    agg.table[STATE_KEY] = state.model_dump_json(exclude={"watch": {"series"}}).encode()


@dataclass
class Aggregator:
    table: Any  # KeyedTable: STATE_KEY -> NetworkState JSON, f/<source id> -> fact
    index: FactIndex
    rules: NetworkRules


def rules_of(rt: Runtime) -> NetworkRules:
    return rules_of_settings(rt.settings.network)


def rules_of_settings(n: NetworkSettings) -> NetworkRules:
    """The aggregator's rules from its settings (worker settings, not live config: a
    replay of the facts re-derives its decisions under the same settings)."""
    return NetworkRules(
        window=timedelta(seconds=n.diagnosis_window_s),
        min_failures=n.min_failures,
        min_failure_rate=n.min_failure_rate,
        review_every=timedelta(seconds=n.meta_interval_s),
        retrain_every=timedelta(seconds=n.retrain_every_s) if n.retrain_every_s > 0 else None,
        keep_facts=max(timedelta(seconds=2 * n.drift_window_s), timedelta(hours=1)),
        watch=watch_policy(n),
        lessons=LessonRules(min_pairs=n.lesson_min_pairs),
    )


def watch_policy(n: NetworkSettings) -> WatchPolicy:
    return WatchPolicy(
        window=timedelta(seconds=n.anomaly_window_s),
        min_samples=n.anomaly_min_samples,
        detector=DetectorPolicy(
            history=n.anomaly_history,
            min_history=n.anomaly_min_history,
            season=n.anomaly_season,
            z_threshold=n.anomaly_z,
            persistence=n.anomaly_persistence,
        ),
    )


def register(rt: Runtime) -> Aggregator:
    """The aggregator agent with its table, and the timer that ticks its event time on."""
    index = FactIndex()
    agg = Aggregator(keyed_table(rt.app, NETWORK_TABLE, 1, index), index, rules_of(rt))
    n = rt.settings.network

    @rt.app.agent(rt.topic(topics.NETWORK_FACTS), name=STAGE)
    async def network_facts(stream: object) -> None:
        await run(rt, STAGE, stream, lambda r: on_fact(rt, agg, r))

    @background.timer(rt, min(n.diagnosis_window_s, n.meta_interval_s, 30.0), "network_tick")
    async def network_tick() -> None:
        if owns_facts(rt):
            await send_fact(rt, tick(rt.clock()))

    return agg


def owns_facts(rt: Runtime) -> bool:
    """Whether this worker holds the facts partition (the aggregator's)."""
    name = facts_topic(rt)
    return any(tp.topic == name for tp in rt.app.assignor.assigned_actives())


async def on_fact(rt: Runtime, agg: Aggregator, record: Record) -> None:
    """Fold one fact: a duplicate (same source event) is dropped; the decisions it
    causes are sent and acknowledged before the state that records them is written, so
    a crash in between makes the next owner decide (and send) them again, never lose
    them."""
    fact = rt.codec.decode(record.value, NetworkFactRecorded)
    if fact.fact != "tick" and fact.source_event_id in agg.index.facts:
        _log.debug("%s: fact of %s already counted", STAGE, fact.source_event_id)
        return
    if fact.fact != "tick" and agg.index.state.last == fact.source_event_id:
        _keep_fact(agg, fact)  # applied, but its own entry was not written
        return
    state, decisions = step(agg.index.state, fact, agg.rules)
    async with sends_of_record():
        state = await _execute(rt, agg, state, decisions, fact)
    save_state(agg, state)
    agg.index.state = state
    if fact.fact != "tick":
        _keep_fact(agg, fact)
    if state.clock is not None:
        _expire(agg, state)


async def _execute(
    rt: Runtime, agg: Aggregator, state: NetworkState, decisions: Decisions, fact: Any
) -> NetworkState:
    """Apply the decisions in a fixed order: anomalies (each before its alert), lessons,
    diagnoses, conclusions, meta-guardian."""
    for event in decisions.anomalies:
        if isinstance(event, AnomalyDetected):
            _log.warning(
                "anomaly %s: %s of %s %.4g against %.4g (%s)",
                event.state,
                event.metric,
                event.subject,
                event.observed,
                event.baseline,
                event.kind,
            )
        await rt.emit(event)
    for lesson in decisions.lessons:
        _log.warning(
            "lesson learned for %s tasks: %s (%s)", lesson.scope, lesson.text, lesson.reason
        )
        await rt.emit(lesson)
    for diagnosis in decisions.diagnoses:
        await network.emit_diagnosis(rt, diagnosis)
    for result in decisions.concluded:
        await experiments.on_concluded(rt, result)
    now = state.clock
    if not (decisions.review or decisions.scheduled) or now is None:
        return state
    kept = [*agg.index.facts.values(), *([fact] if fact.fact != "tick" else [])]
    verdicts = [f for f in kept if f.fact == "verdict"]
    feedback = [f for f in kept if f.fact == "feedback"]
    if decisions.review:
        state = await meta_guardian.review(rt, state, verdicts, feedback, now)
    if decisions.scheduled:
        await meta_guardian.scheduled_recommendation(rt, verdicts, feedback, now)
    return state


def _keep_fact(agg: Aggregator, fact: NetworkFactRecorded) -> None:
    agg.table[FACT_PREFIX + fact.source_event_id.encode()] = _CODEC.encode(fact)
    agg.index.facts[fact.source_event_id] = fact


def _expire(agg: Aggregator, state: NetworkState) -> None:
    """Delete the kept facts past their retention or beyond the cap, oldest first."""
    assert state.clock is not None
    facts = agg.index.facts
    oldest = ((sid, f.recorded_at) for sid, f in facts.items())
    for source_id in expired_facts(oldest, len(facts), state.clock, agg.rules):
        key = FACT_PREFIX + source_id.encode()
        if key in agg.table:
            del agg.table[key]
        facts.pop(source_id, None)
