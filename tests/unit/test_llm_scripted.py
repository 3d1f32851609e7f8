"""ScriptedLLM: per-key, per-call answers, latency and failures from a script."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from agents.errors import (
    ModelBadResponse,
    ModelError,
    ModelRateLimited,
    ModelRejected,
    ModelTimeout,
    ModelUnavailable,
)
from agents.ports import LLM, ChatMessage
from connectors.llm_scripted import DEFAULT_KEY, ScriptedLLM, script_key


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="system", content="be brief"), ChatMessage(role="user", content=text)]


async def ask(llm: ScriptedLLM, text: str, max_tokens: int = 64) -> str:
    completion = await llm.complete(user(text), temperature=0.0, max_tokens=max_tokens)
    return completion.content


def test_implements_the_llm_port() -> None:
    assert isinstance(ScriptedLLM(), LLM)


async def test_marker_selects_steps_by_call_number_and_repeats_the_last() -> None:
    llm = ScriptedLLM.from_dict({"entries": {"capital": [{"answer": "Lyon"}, {"answer": "Paris"}]}})
    prompt = "[[script:capital]] What is the capital of France?"
    answers = [await ask(llm, prompt) for _ in range(4)]
    assert answers == ["Lyon", "Paris", "Paris", "Paris"]
    assert llm.calls("capital") == 4
    assert llm.total_calls == 4


async def test_last_user_message_selects_an_entry_without_a_marker() -> None:
    llm = ScriptedLLM.from_dict({"entries": {"ping": {"answer": "pong"}}})
    assert await ask(llm, "ping") == "pong"
    assert llm.calls("ping") == 1


async def test_marker_in_an_earlier_message_still_selects_the_entry() -> None:
    llm = ScriptedLLM.from_dict({"entries": {"k": [{"answer": "from script"}]}})
    messages = [
        ChatMessage(role="system", content="[[script:k]] you are a specialist"),
        ChatMessage(role="user", content="anything"),
    ]
    completion = await llm.complete(messages, temperature=0.0, max_tokens=8)
    assert completion.content == "from script"


async def test_unknown_requests_get_a_deterministic_echo() -> None:
    llm = ScriptedLLM()
    first = await ask(llm, "  hello   world ")
    second = await ask(llm, "  hello   world ")
    assert first == second == "echo: hello   world"
    assert llm.calls(DEFAULT_KEY) == 2


async def test_unscripted_marker_is_counted_under_its_key_and_echoes_without_it() -> None:
    llm = ScriptedLLM()
    assert await ask(llm, "[[script:req-7]] Summarise this") == "echo: Summarise this"
    assert llm.calls("req-7") == 1
    assert llm.calls(DEFAULT_KEY) == 0


async def test_custom_default_step_answers_unknown_keys() -> None:
    llm = ScriptedLLM.from_dict({"default": {"answer": "I don't know"}})
    assert await ask(llm, "anything at all") == "I don't know"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ("timeout", ModelTimeout),
        ("rate_limited", ModelRateLimited),
        ("unavailable", ModelUnavailable),
        ("bad_response", ModelBadResponse),
        ("rejected", ModelRejected),
    ],
)
async def test_scripted_failures_raise_typed_model_errors(
    error: str, expected: type[ModelError]
) -> None:
    llm = ScriptedLLM.from_dict({"entries": {"k": [{"error": error}, {"answer": "ok"}]}})
    with pytest.raises(expected) as caught:
        await ask(llm, "[[script:k]]")
    assert caught.value.kind == error
    assert await ask(llm, "[[script:k]]") == "ok"


async def test_rate_limit_carries_retry_after() -> None:
    llm = ScriptedLLM.from_dict(
        {"entries": {"k": [{"error": "rate_limited", "retry_after_s": 1.5}]}}
    )
    with pytest.raises(ModelRateLimited) as caught:
        await ask(llm, "[[script:k]]")
    assert caught.value.retry_after_s == 1.5
    assert caught.value.retriable


async def test_latency_is_simulated_without_blocking_the_loop() -> None:
    llm = ScriptedLLM.from_dict({"entries": {"slow": [{"answer": "done", "latency_ms": 200}]}})
    started = time.perf_counter()
    answers = await asyncio.gather(*(ask(llm, "[[script:slow]]") for _ in range(5)))
    elapsed = time.perf_counter() - started
    assert answers == ["done"] * 5
    assert 0.19 <= elapsed < 0.8  # one latency, not five in a row
    assert llm.calls("slow") == 5


async def test_concurrent_calls_get_distinct_call_numbers() -> None:
    steps = [{"answer": str(n), "latency_ms": 5} for n in range(1, 21)]
    llm = ScriptedLLM.from_dict({"entries": {"n": steps}})
    answers = await asyncio.gather(*(ask(llm, "[[script:n]]") for _ in range(20)))
    assert sorted(answers, key=int) == [str(n) for n in range(1, 21)]


async def test_token_counts_are_word_counts_and_max_tokens_truncates() -> None:
    llm = ScriptedLLM.from_dict({"entries": {"k": [{"answer": "one two three four five"}]}})
    completion = await llm.complete(user("[[script:k]] count me"), temperature=0, max_tokens=3)
    assert completion.content == "one two three"
    assert completion.finish_reason == "length"
    assert completion.completion_tokens == 3
    assert completion.prompt_tokens == 2 + 3
    assert completion.model == "scripted"


async def test_requests_records_the_messages_of_each_call() -> None:
    llm = ScriptedLLM()
    await ask(llm, "[[script:r]] first")
    await ask(llm, "[[script:r]] second")
    assert [messages[-1].content for messages in llm.requests("r")] == [
        "[[script:r]] first",
        "[[script:r]] second",
    ]


async def test_from_file_loads_a_json_script(tmp_path: Path) -> None:
    path = tmp_path / "script.json"
    path.write_text(json.dumps({"entries": {"k": [{"answer": "from file"}]}}), encoding="utf-8")
    llm = ScriptedLLM.from_file(path, name="bench")
    assert llm.name == "bench"
    assert await ask(llm, "[[script:k]]") == "from file"


@pytest.mark.parametrize(
    "bad",
    [
        {"entries": {"k": []}},
        {"entries": {"k": [{"error": "exploded"}]}},
        {"entries": {"k": [{"latency_ms": -1}]}},
        {"unexpected": 1},
    ],
)
def test_invalid_scripts_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ScriptedLLM.from_dict(bad)


def test_script_key_prefers_the_latest_marked_message() -> None:
    messages = [
        ChatMessage(role="system", content="[[script:old]]"),
        ChatMessage(role="user", content="[[script:new]] question"),
    ]
    assert script_key(messages) == "new"
    assert script_key(user("no marker here")) is None


async def test_a_phrase_in_the_system_prompt_picks_its_step() -> None:
    llm = ScriptedLLM.from_dict(
        {
            "default": {"answer": "prose"},
            "when_system_contains": {"valid JSON only": {"answer": '{"a": 1}'}},
        }
    )
    plain = [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="q")]
    strict = [
        ChatMessage(role="system", content="Be brief. Reply with valid JSON only."),
        ChatMessage(role="user", content="q"),
    ]
    assert (await llm.complete(plain, temperature=0, max_tokens=10)).content == "prose"
    assert (await llm.complete(strict, temperature=0, max_tokens=10)).content == '{"a": 1}'
