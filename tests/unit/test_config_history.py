"""The config history fold: which proposal wins each version, for every reader alike."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agents.config import PipelineConfig
from agents.config_history import (
    GENESIS_PREVIOUS,
    ConfigChain,
    Logged,
    UnknownConfigVersionError,
    config_at,
    differing_keys,
    extends,
    fold,
    genesis,
)
from agents.config_values import apply_change, config_changed, config_of
from schemas.codec import Codec
from schemas.network_events import ConfigChanged

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BASE = PipelineConfig(version=0)


def first() -> ConfigChanged:
    return genesis(BASE, now=T0, event_id="g", changed_by="worker")


def on_top(previous: ConfigChanged, key: str, value: str, event_id: str) -> ConfigChanged:
    config = config_of(previous)
    new = apply_change(config, key, value)
    return config_changed(config, new, changed_by="op", reason=event_id, now=T0, event_id=event_id)


def logged(*events: ConfigChanged) -> list[Logged]:
    return [Logged(offset, e) for offset, e in enumerate(events)]


def test_version_0_starts_the_chain_and_names_no_predecessor() -> None:
    g = first()
    assert (g.version, g.previous_version, g.changed_keys) == (0, GENESIS_PREVIOUS, ())
    assert config_of(g) == BASE
    assert Codec().decode(Codec().encode(g), ConfigChanged) == g


def test_each_version_extends_the_one_before() -> None:
    g = first()
    one = on_top(g, "guardian.pass_threshold", "0.8", "a")
    two = on_top(one, "refine.max_rounds", "2", "b")
    chain = fold(logged(g, one, two))
    assert sorted(chain.versions) == [0, 1, 2]
    assert chain.offsets == {0: 0, 1: 1, 2: 2}
    assert chain.latest == two
    assert chain.rejected == []


def test_of_two_proposals_for_one_version_the_first_in_the_log_wins() -> None:
    g = first()
    mine = on_top(g, "guardian.pass_threshold", "0.8", "mine")
    theirs = on_top(g, "guardian.pass_threshold", "0.9", "theirs")
    chain = fold(logged(g, theirs, mine))
    assert chain.versions[1].event_id == "theirs"
    assert chain.offsets[1] == 1
    assert [r.event.event_id for r in chain.rejected] == ["mine"]
    # The loser derived again on top of the winner: it becomes version 2.
    again = on_top(chain.versions[1], "guardian.pass_threshold", "0.8", "mine-again")
    chain = fold([Logged(3, again)], chain)
    assert [chain.versions[v].event_id for v in (1, 2)] == ["theirs", "mine-again"]


@pytest.mark.parametrize(
    ("version", "previous"),
    [(3, 1), (3, 2), (1, 0), (0, -1), (2, 0)],
    ids=["gap", "far-ahead", "stale-base", "second-genesis", "wrong-base"],
)
def test_a_record_that_does_not_extend_the_latest_is_ignored(version: int, previous: int) -> None:
    g = first()
    one = on_top(g, "guardian.pass_threshold", "0.8", "a")
    odd = one.model_copy(
        update={"event_id": "odd", "version": version, "previous_version": previous}
    )
    chain = fold(logged(g, one, odd))
    assert chain.latest == one
    assert [r.event.event_id for r in chain.rejected] == ["odd"]
    assert not extends(one, odd)


def test_a_migrated_version_starts_the_chain_at_its_own_number() -> None:
    seed = on_top(first(), "guardian.pass_threshold", "0.8", "old").model_copy(
        update={"version": 7, "previous_version": 6}
    )
    nxt = on_top(seed, "refine.max_rounds", "2", "new")
    chain = fold(logged(seed, nxt))
    assert sorted(chain.versions) == [7, 8]


def test_folding_from_an_accepted_record_equals_folding_everything() -> None:
    g = first()
    one = on_top(g, "guardian.pass_threshold", "0.8", "a")
    lost = on_top(g, "guardian.pass_threshold", "0.9", "lost")
    two = on_top(one, "refine.max_rounds", "2", "b")
    late = on_top(one, "refine.max_rounds", "3", "late")
    records = logged(g, one, lost, two, late)
    whole = fold(records)
    tail = fold(records[1:])
    assert whole.latest == tail.latest == two
    assert {v: e.event_id for v, e in whole.versions.items() if v >= 1} == {
        v: e.event_id for v, e in tail.versions.items()
    }


def test_config_at_builds_any_version_and_refuses_an_unknown_one() -> None:
    g = first()
    one = on_top(g, "guardian.pass_threshold", "0.8", "a")
    versions = fold(logged(g, one)).versions
    assert config_at(versions, 0) == BASE
    assert config_at(versions, 1).guardian.pass_threshold == pytest.approx(0.8)
    assert config_at(versions, 1).version == 1
    with pytest.raises(UnknownConfigVersionError, match=r"version 5 is unknown \(held: 0..1\)"):
        config_at(versions, 5)
    with pytest.raises(UnknownConfigVersionError, match="held: none"):
        config_at({}, 0)
    assert UnknownConfigVersionError.retriable is False


def test_differing_keys_name_every_changed_value() -> None:
    g = first()
    one = on_top(g, "guardian.pass_threshold", "0.8", "a")
    assert differing_keys(g, one) == ("guardian.pass_threshold",)
    assert differing_keys(g, g) == ()


def test_an_empty_chain_has_no_latest() -> None:
    chain = ConfigChain()
    assert chain.latest is None
    assert chain.add(Logged(0, first()))
    assert chain.latest is not None
