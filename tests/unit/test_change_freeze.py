"""``GUARDIAN_NETWORK_APPLY_CHANGES=false``: an approved change is neither applied for a
before/after test nor started as an experiment; with the default both go ahead."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from agents.config import PipelineConfig
from streams import experiments
from streams.settings import NetworkSettings
from tests.unit.test_experiment_queue import PROMPT, T0, approved, proposal

SLOTS = proposal("slots-1", "capacity.specialist_concurrency", 8, "concurrency", 0)


def runtime(apply_changes: bool) -> Any:
    return SimpleNamespace(
        settings=SimpleNamespace(network=NetworkSettings(apply_changes=apply_changes)),
        config=PipelineConfig(),
        clock=lambda: T0,
    )


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[PipelineConfig | None]:
    """What each call of ``experiments.publish`` would have published on the default
    configuration."""
    changes: list[PipelineConfig | None] = []

    async def publish(
        _rt: Any, change: Callable[[PipelineConfig], PipelineConfig | None], *_: Any, **__: Any
    ) -> None:
        changes.append(change(PipelineConfig()))

    monkeypatch.setattr(experiments, "publish", publish)
    return changes


@pytest.mark.parametrize("apply_changes", [True, False])
async def test_a_frozen_worker_applies_and_starts_nothing(
    published: list[PipelineConfig | None], apply_changes: bool
) -> None:
    rt = runtime(apply_changes)
    log = experiments.Log([PROMPT], approved(PROMPT.proposal_id), [], [])
    await experiments.apply_for_test(rt, SLOTS)
    await experiments.start_next(rt, log)
    if not apply_changes:
        assert published == []
        return
    tested, started = published
    assert tested is not None
    assert tested.capacity.specialist_concurrency == 8
    assert started is not None
    assert started.experiment.proposal_id == PROMPT.proposal_id
