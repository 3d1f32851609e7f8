"""The experiment queue derived from the log: approved, not yet run, still live; system
parameters before lessons before prompt variants, oldest first within each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agents.config import PipelineConfig
from agents.config_values import encode, value_of
from agents.experiment_queue import waiting
from schemas.network_events import ExperimentConcluded, ImprovementProposed, ProposalReviewed

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CONFIG = PipelineConfig(version=3)


def proposal(pid: str, key: str, value: object, kind: str, minutes: int) -> ImprovementProposed:
    return ImprovementProposed(
        event_id=f"e-{pid}",
        request_id=pid,
        occurred_at=T0 + timedelta(minutes=minutes),
        proposal_id=pid,
        kind=kind,
        key=key,
        current_value=encode(value_of(CONFIG, key)),
        proposed_value=encode(value),
    )


def approved(*pids: str) -> list[ProposalReviewed]:
    return [
        ProposalReviewed(
            event_id=f"r-{p}", request_id=p, occurred_at=T0, proposal_id=p, approved=True
        )
        for p in pids
    ]


PROMPT = proposal("prompt-1", "specialist.system_prompt", "Be exact.", "prompt", 0)
TEMPERATURE = proposal("temp-1", "specialist.temperature", 0.1, "temperature", 5)
TOKENS = proposal("tokens-1", "specialist.max_tokens", 384, "max_tokens", 2)
NOW = T0 + timedelta(hours=1)


def test_system_parameters_go_first_and_the_oldest_first_within_a_priority() -> None:
    queued = waiting(
        [PROMPT, TEMPERATURE, TOKENS], approved("prompt-1", "temp-1", "tokens-1"), [], CONFIG, NOW
    )
    assert [p.proposal_id for p in queued] == ["tokens-1", "temp-1", "prompt-1"]


def test_rejected_concluded_running_stale_old_and_before_after_proposals_do_not_queue() -> None:
    stale = PROMPT.model_copy(update={"proposal_id": "stale", "current_value": encode("other")})
    old = TOKENS.model_copy(update={"proposal_id": "old", "occurred_at": NOW - timedelta(days=2)})
    slots = proposal("slots", "capacity.specialist_concurrency", 16, "concurrency", 1)
    running = CONFIG.model_copy(
        update={
            "experiment": CONFIG.experiment.model_copy(update={"id": "x", "proposal_id": "temp-1"})
        }
    )
    done = ExperimentConcluded(
        event_id="c",
        request_id="x0",
        occurred_at=T0,
        experiment_id="x0",
        proposal_id="tokens-1",
        control_n=1,
        control_passes=1,
        treatment_n=1,
        treatment_passes=1,
        control_mean_score=1.0,
        treatment_mean_score=1.0,
        effect_size=0.0,
        p_value_pass_rate=1.0,
        p_value_scores=1.0,
        decision="rollback",
    )
    proposals = [PROMPT, TEMPERATURE, TOKENS, stale, old, slots]
    reviews = approved("temp-1", "tokens-1", "stale", "old", "slots")  # prompt-1 not approved
    assert waiting(proposals, reviews, [done], running, NOW) == []


def test_a_proposal_sent_twice_queues_once() -> None:
    queued = waiting([TOKENS, TOKENS], approved("tokens-1"), [], CONFIG, NOW)
    assert [p.proposal_id for p in queued] == ["tokens-1"]
