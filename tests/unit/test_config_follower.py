"""The worker's live config: it adopts the first version it is given (version 0 from
another worker's settings too), then only newer ones, and keeps what it refuses out."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

from agents.config import PipelineConfig
from agents.config_history import Logged, fold, genesis
from agents.config_values import apply_change, config_changed, config_of
from schemas.network_events import ConfigChanged
from streams.cli_config import change_on_top
from streams.live_config import LiveConfig
from streams.runtime import Runtime

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class ConfigHolder:
    """The one attribute of a runtime the live config writes."""

    config: PipelineConfig = field(default_factory=lambda: PipelineConfig(version=0))


def next_version(previous: ConfigChanged, key: str, value: str) -> ConfigChanged:
    config = config_of(previous)
    new = apply_change(config, key, value)
    return config_changed(config, new, changed_by="t", reason="", now=T0, event_id=key)


def zero(threshold: float = 0.7) -> ConfigChanged:
    config = apply_change(PipelineConfig(version=0), "guardian.pass_threshold", str(threshold))
    return genesis(config, now=T0, event_id="g", changed_by="worker")


def test_version_0_of_another_worker_is_adopted_though_the_number_is_the_same() -> None:
    holder, live = ConfigHolder(), LiveConfig()
    rt = cast(Runtime, holder)
    seen: list[PipelineConfig] = []
    live.listeners.append(seen.append)
    assert live.apply(rt, zero(0.8))
    assert holder.config.guardian.pass_threshold == 0.8
    assert not live.apply(rt, zero(0.9)), "a second version 0 is never adopted"
    one = next_version(zero(0.8), "refine.max_rounds", "2")
    assert live.apply(rt, one)
    assert not live.apply(rt, one)
    assert (holder.config.version, holder.config.refine.max_rounds) == (1, 2)
    assert [c.version for c in seen] == [0, 1]
    assert [e.version for e in live.history] == [0, 1]


def test_a_refused_version_moves_the_latest_on_but_keeps_the_config() -> None:
    holder, live = ConfigHolder(), LiveConfig()
    rt = cast(Runtime, holder)
    live.apply(rt, zero())
    broken = next_version(zero(), "refine.max_rounds", "2").model_copy(
        update={"values": {"refine.max_rounds": "-5"}}
    )
    assert not live.apply(rt, broken)
    assert holder.config.version == 0
    assert live.latest == broken


def test_earlier_versions_are_remembered_only_before_the_first_is_applied() -> None:
    holder, live = ConfigHolder(), LiveConfig()
    rt = cast(Runtime, holder)
    earlier = [zero(), next_version(zero(), "refine.max_rounds", "2")]
    live.remember(earlier)
    live.apply(rt, next_version(earlier[1], "refine.max_rounds", "3"))
    live.remember(earlier)
    assert [e.version for e in live.history] == [0, 1, 2]


def test_a_set_that_lost_its_race_is_applied_again_on_top_of_the_winner() -> None:
    args = argparse.Namespace(key="guardian.pass_threshold", value="0.8", by="op", reason="r")
    winner = next_version(zero(), "refine.max_rounds", "2")
    retried = change_on_top(args, winner)
    assert (retried.version, retried.previous_version) == (2, 1)
    assert retried.changed_keys == ("guardian.pass_threshold",)
    chain = fold([Logged(0, zero()), Logged(1, winner), Logged(2, retried)])
    latest = config_of(chain.versions[2])
    assert (latest.refine.max_rounds, latest.guardian.pass_threshold) == (2, 0.8)
