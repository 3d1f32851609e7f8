"""Running an A/B experiment through the live configuration: the split lives in the
config's ``experiment`` section, every worker derives a request's arm from it, and
the treatment arm decides under the config with the proposed change applied."""

from __future__ import annotations

from agents.config import ExperimentPolicy, PipelineConfig
from agents.config_values import apply_change
from agents.experiment import arm_for, arm_of, variant_of
from schemas.network_events import ExperimentConcluded, ImprovementProposed


def start(
    config: PipelineConfig,
    proposal: ImprovementProposed,
    experiment_id: str,
    *,
    share: float = 0.5,
    min_samples: int = 200,
    alpha: float = 0.05,
) -> PipelineConfig:
    """``config`` with an experiment of ``proposal`` running (validated up front)."""
    apply_change(config, proposal.key, proposal.proposed_value)  # refuses a bad value now
    spec = ExperimentPolicy(
        id=experiment_id,
        proposal_id=proposal.proposal_id,
        key=proposal.key,
        value=proposal.proposed_value,
        share=share,
        min_samples=min_samples,
        alpha=alpha,
    )
    return config.model_copy(update={"experiment": spec})


def running(config: PipelineConfig) -> bool:
    return bool(config.experiment.id)


def variant_for(config: PipelineConfig, request_id: str) -> str | None:
    """The request's arm under the running experiment, or None when none runs."""
    spec = config.experiment
    if not spec.id:
        return None
    return variant_of(arm_for(request_id, spec.id, spec.share), spec.id)


def config_for(config: PipelineConfig, variant: str | None) -> PipelineConfig:
    """The config a decision for ``variant`` is made under: the treatment arm's has the
    proposed change applied; everything else decides under the live config."""
    spec = config.experiment
    if spec.id and arm_of(variant, spec.id) == "treatment":
        return apply_change(config, spec.key, spec.value)
    return config


def finish(config: PipelineConfig, concluded: ExperimentConcluded) -> PipelineConfig:
    """The config after the experiment: the change promoted, or left out (rollback,
    inconclusive); either way no experiment runs any more."""
    spec = config.experiment
    done = config.model_copy(update={"experiment": ExperimentPolicy()})
    if concluded.decision == "promote" and spec.id == concluded.experiment_id:
        return apply_change(done, spec.key, spec.value)
    return done
