"""The embedded SmolLM2-135M model, run for real through llama.cpp."""

from __future__ import annotations

import asyncio
import string
from pathlib import Path

import pytest

from agents.errors import ModelRejected
from agents.ports import LLM, ChatMessage
from connectors.llm_embedded import (
    MODEL_NAME,
    EmbeddedLLM,
    EmbeddedModelLoadError,
    EmbeddedModelSettings,
    default_model_path,
)

# One model and one event loop for the module: the model's lock belongs to a loop.
module_loop = pytest.mark.asyncio(loop_scope="module")

QUESTION = [
    ChatMessage(role="system", content="You are a concise assistant."),
    ChatMessage(role="user", content="Name one primary colour."),
]


@pytest.fixture(scope="module")
def llm() -> EmbeddedLLM:
    return EmbeddedLLM()


def test_the_shipped_model_file_is_found() -> None:
    path = default_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 50_000_000


@module_loop
async def test_implements_the_llm_port(llm: EmbeddedLLM) -> None:
    assert isinstance(llm, LLM)
    assert llm.name == MODEL_NAME == "smollm2-135m-instruct"


@module_loop
async def test_a_short_completion_reports_text_and_usage(llm: EmbeddedLLM) -> None:
    completion = await llm.complete(QUESTION, temperature=0.0, max_tokens=24)
    assert completion.content.strip()
    assert completion.model == MODEL_NAME
    assert completion.prompt_tokens > 0
    assert 0 < completion.completion_tokens <= 24
    assert completion.finish_reason in {"stop", "length"}


@module_loop
async def test_temperature_zero_is_deterministic(llm: EmbeddedLLM) -> None:
    first = await llm.complete(QUESTION, temperature=0.0, max_tokens=24)
    second = await llm.complete(QUESTION, temperature=0.0, max_tokens=24)
    assert first == second


@module_loop
async def test_a_seed_makes_sampling_repeatable_whatever_came_before(llm: EmbeddedLLM) -> None:
    question = [ChatMessage(role="user", content="Write one sentence about the sea.")]
    first = await llm.complete(question, temperature=1.0, max_tokens=32, seed=7)
    await llm.complete(QUESTION, temperature=1.0, max_tokens=16)  # a call in between
    again = await llm.complete(question, temperature=1.0, max_tokens=32, seed=7)
    assert again.content == first.content
    others = {
        (await llm.complete(question, temperature=1.0, max_tokens=32, seed=s)).content
        for s in (8, 9, 10)
    }
    assert others - {first.content}  # another seed draws another answer


@module_loop
async def test_characters_ruled_out_while_decoding_do_not_appear(llm: EmbeddedLLM) -> None:
    question = [ChatMessage(role="user", content="Describe Paris in two sentences.")]
    free = await llm.complete(question, temperature=0.0, max_tokens=60)
    assert "," in free.content  # what the model writes when nothing is ruled out
    ruled_out = await llm.complete(question, temperature=0.0, max_tokens=60, forbid=",")
    assert ruled_out.content.strip()
    assert "," not in ruled_out.content
    lower = await llm.complete(
        question, temperature=0.0, max_tokens=60, forbid=string.ascii_uppercase
    )
    assert lower.content.strip()
    assert lower.content == lower.content.lower()


@module_loop
async def test_generation_does_not_block_the_event_loop(llm: EmbeddedLLM) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        await llm.complete(QUESTION, temperature=0.0, max_tokens=24)
        observed = ticks
    finally:
        ticker.cancel()
    assert observed >= 2


@module_loop
async def test_concurrent_calls_are_serialised_and_agree(llm: EmbeddedLLM) -> None:
    sequential = await llm.complete(QUESTION, temperature=0.0, max_tokens=16)
    concurrent = await asyncio.gather(
        *(llm.complete(QUESTION, temperature=0.0, max_tokens=16) for _ in range(3))
    )
    assert all(c == sequential for c in concurrent)


@module_loop
async def test_a_prompt_beyond_the_context_window_is_rejected() -> None:
    small = EmbeddedLLM(EmbeddedModelSettings(n_ctx=256))
    too_long = [ChatMessage(role="user", content="word " * 400)]
    with pytest.raises(ModelRejected, match="GUARDIAN_EMBEDDED_N_CTX=256") as caught:
        await small.complete(too_long, temperature=0.0, max_tokens=8)
    assert not caught.value.retriable


@module_loop
async def test_a_missing_model_file_is_a_typed_error(tmp_path: Path) -> None:
    missing = EmbeddedLLM(EmbeddedModelSettings(model_path=tmp_path / "absent.gguf"))
    with pytest.raises(EmbeddedModelLoadError) as caught:
        await missing.complete(QUESTION, temperature=0.0, max_tokens=8)
    assert not caught.value.retriable


@module_loop
async def test_a_file_that_is_not_gguf_is_a_typed_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"definitely not a model")
    with pytest.raises(EmbeddedModelLoadError):
        await EmbeddedLLM(EmbeddedModelSettings(model_path=bogus)).load()
