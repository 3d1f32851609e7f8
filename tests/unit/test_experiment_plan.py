"""Experiments through the live config: arms, the treatment's config, promotion."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agents.config import PipelineConfig
from agents.config_values import ConfigValueError, config_changed, config_of
from agents.experiment_plan import config_for, finish, running, start, variant_for
from schemas.network_events import ExperimentConcluded, ImprovementProposed

NOW = datetime(2026, 5, 1, tzinfo=UTC)
BASE = PipelineConfig(version=3)


def proposal(key: str = "guardian.min_alignment", value: str = "0.25") -> ImprovementProposed:
    return ImprovementProposed(
        event_id="p-e",
        request_id="p1",
        occurred_at=NOW,
        proposal_id="p1",
        kind="threshold",
        key=key,
        current_value="0.3",
        proposed_value=value,
    )


def concluded(decision: str, experiment_id: str = "x1") -> ExperimentConcluded:
    return ExperimentConcluded.model_validate(
        {
            "event_id": "c",
            "request_id": experiment_id,
            "occurred_at": NOW,
            "experiment_id": experiment_id,
            "proposal_id": "p1",
            "control_n": 10,
            "control_passes": 0,
            "treatment_n": 10,
            "treatment_passes": 10,
            "control_mean_score": 0.4,
            "treatment_mean_score": 0.8,
            "effect_size": 1.0,
            "p_value_pass_rate": 0.0001,
            "p_value_scores": 0.0002,
            "decision": decision,
        }
    )


def test_no_experiment_means_no_variant_and_the_live_config() -> None:
    assert not running(BASE)
    assert variant_for(BASE, "r1") is None
    assert config_for(BASE, None) == BASE


def test_a_running_experiment_splits_by_request_and_changes_only_the_treatment() -> None:
    live = start(BASE, proposal(), "x1", share=0.5, min_samples=10)
    assert running(live)
    variants = {variant_for(live, f"r{i}") for i in range(200)}
    assert variants == {"control", "treatment:x1"}
    assert variant_for(live, "r7") == variant_for(live, "r7"), "stable per request"
    treated = config_for(live, "treatment:x1")
    assert treated.guardian.min_alignment == pytest.approx(0.25)
    assert config_for(live, "control").guardian.min_alignment == pytest.approx(0.3)
    assert config_for(live, "treatment:other").guardian.min_alignment == pytest.approx(0.3)


def test_the_split_follows_the_share() -> None:
    live = start(BASE, proposal(), "x2", share=0.2)
    treated = sum(variant_for(live, f"r{i}") == "treatment:x2" for i in range(2000))
    assert 340 <= treated <= 460


def test_an_invalid_proposal_cannot_start() -> None:
    with pytest.raises(ConfigValueError):
        start(BASE, proposal(value='"not a number"'), "x3")


@pytest.mark.parametrize(
    ("decision", "after"), [("promote", 0.25), ("rollback", 0.3), ("inconclusive", 0.3)]
)
def test_finishing_promotes_or_leaves_the_change_out(decision: str, after: float) -> None:
    live = start(BASE, proposal(), "x1")
    done = finish(live, concluded(decision))
    assert not running(done)
    assert done.guardian.min_alignment == pytest.approx(after)


def test_the_experiment_travels_in_the_config_event() -> None:
    live = start(BASE, proposal(), "x1", min_samples=40)
    event = config_changed(
        BASE, live, changed_by="experiments", reason="start", now=NOW, event_id="e"
    )
    assert "experiment.id" in event.changed_keys
    restored = config_of(event)
    assert restored.experiment.id == "x1"
    assert restored.experiment.min_samples == 40
    assert config_for(restored, "treatment:x1").guardian.min_alignment == pytest.approx(0.25)
