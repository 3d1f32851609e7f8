"""The aggregator's table: the state written with every fact, the anomaly detector's
series only when a window's close changes them, and both read back in either order."""

from __future__ import annotations

from datetime import timedelta

from agents.anomaly import SeriesState
from agents.anomaly_watch import Series, WatchState
from agents.network_facts import NetworkRules, NetworkState
from streams.network_facts import (
    SERIES_KEY,
    STATE_KEY,
    Aggregator,
    FactIndex,
    save_state,
    with_series,
)

SERIES = (Series(metric="pass_rate", subject="general", state=SeriesState(values=(0.9, 0.8))),)


def aggregator() -> tuple[Aggregator, dict[bytes, bytes]]:
    table: dict[bytes, bytes] = {}
    return Aggregator(table, FactIndex(), NetworkRules(window=timedelta(minutes=5))), table


def test_the_series_are_written_apart_and_only_when_they_change() -> None:
    agg, table = aggregator()
    state = with_series(NetworkState(last="a"), SERIES)
    save_state(agg, state)
    assert set(table) == {STATE_KEY, SERIES_KEY}
    assert b"pass_rate" not in table[STATE_KEY]
    del table[SERIES_KEY]
    save_state(agg, state.model_copy(update={"last": "b"}))
    assert SERIES_KEY not in table, "unchanged series are not written again"
    grown = (*SERIES, Series(metric="score", subject="general"))
    save_state(agg, with_series(state, grown))
    assert b"score" in table[SERIES_KEY]


def test_recovery_joins_state_and_series_in_either_order() -> None:
    agg, table = aggregator()
    state = with_series(NetworkState(last="a", watch=WatchState()), SERIES)
    save_state(agg, state)
    for order in ([STATE_KEY, SERIES_KEY], [SERIES_KEY, STATE_KEY]):
        index = FactIndex()
        for key in order:
            index.recovered(key, table[key])
        assert index.state == state
        assert index.series == SERIES
