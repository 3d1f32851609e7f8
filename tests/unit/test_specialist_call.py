"""``streams.specialist.call_model``: the messages a task becomes, and the seed it samples
with, reach the model port (the stage itself runs against a broker elsewhere)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from agents.ports import Completion
from agents.prompts import build_messages, sampling_seed
from connectors.llm_scripted import DEFAULT_KEY, ScriptedLLM
from connectors.resilient import ResilientLLM
from streams.specialist import call_model
from tests.unit.test_prompts import task


def runtime(model: ScriptedLLM) -> Any:
    return SimpleNamespace(
        settings=SimpleNamespace(worker=SimpleNamespace(model_timeout_s=5.0)),
        ports=SimpleNamespace(llm=ResilientLLM([("scripted", model)])),
    )


async def test_each_round_samples_with_the_seed_of_its_messages() -> None:
    model = ScriptedLLM()
    rt = runtime(model)
    first = task()
    again = task(round=2)
    for t in (first, first, again):
        outcome = await call_model(rt, t)
        assert isinstance(outcome.result, Completion)
    seeds = model.seeds(DEFAULT_KEY)
    messages = build_messages(first)
    resample = sampling_seed(build_messages(again), 2)
    assert seeds == [sampling_seed(messages, 1), sampling_seed(messages, 1), resample]
    assert resample != seeds[0]
    assert model.requests(DEFAULT_KEY)[0] == tuple(messages)
