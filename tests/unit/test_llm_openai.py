"""OpenAICompatibleLLM against a real HTTP server on loopback that speaks chat completions."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from agents.errors import (
    ModelBadResponse,
    ModelError,
    ModelRateLimited,
    ModelRejected,
    ModelTimeout,
    ModelUnavailable,
)
from agents.ports import LLM, ChatMessage
from connectors.llm_openai import OpenAICompatibleLLM, OpenAISettings, parse_retry_after
from tests.fake_model_service import (
    MODEL,
    FakeModelService,
    Reply,
    completion,
    error,
    json_reply,
)

MESSAGES = [
    ChatMessage(role="system", content="Answer in one word."),
    ChatMessage(role="user", content="What is the capital of France?"),
]


def settings(base_url: str, **overrides: object) -> OpenAISettings:
    values: dict[str, object] = {
        "base_url": base_url,
        "model": MODEL,
        "api_key": SecretStr("sk-test"),
        "max_tokens_cap": 256,
        "read_timeout_s": 5.0,
        **overrides,
    }
    return OpenAISettings.model_validate(values)


@pytest.fixture
async def service() -> AsyncIterator[FakeModelService]:
    async with FakeModelService() as running:
        yield running


@pytest.fixture
async def llm(service: FakeModelService) -> AsyncIterator[OpenAICompatibleLLM]:
    client = OpenAICompatibleLLM(settings(service.base_url))
    yield client
    await client.aclose()


async def ask(llm: OpenAICompatibleLLM, max_tokens: int = 64, json_mode: bool = False) -> str:
    done = await llm.complete(MESSAGES, temperature=0.2, max_tokens=max_tokens, json_mode=json_mode)
    return done.content


async def fails(llm: OpenAICompatibleLLM) -> ModelError:
    with pytest.raises(ModelError) as caught:
        await ask(llm)
    return caught.value


def test_implements_the_llm_port(llm: OpenAICompatibleLLM) -> None:
    assert isinstance(llm, LLM)
    assert llm.name == MODEL


async def test_a_completion_is_parsed_and_the_request_is_openai_shaped(
    service: FakeModelService, llm: OpenAICompatibleLLM
) -> None:
    service.script(completion("Paris", model="served-model", prompt_tokens=21, completion_tokens=2))
    done = await llm.complete(MESSAGES, temperature=0.2, max_tokens=64)
    assert (done.content, done.model, done.finish_reason) == ("Paris", "served-model", "stop")
    assert (done.prompt_tokens, done.completion_tokens) == (21, 2)
    [request] = service.received
    assert request.body == {
        "model": MODEL,
        "messages": [{"role": m.role, "content": m.content} for m in MESSAGES],
        "temperature": 0.2,
        "max_tokens": 64,
    }
    assert request.headers["Authorization"] == "Bearer sk-test"


@pytest.mark.parametrize(("asked", "sent"), [(64, 64), (256, 256), (5000, 256), (0, 1)])
async def test_max_tokens_is_always_sent_and_capped(
    service: FakeModelService, llm: OpenAICompatibleLLM, asked: int, sent: int
) -> None:
    await ask(llm, max_tokens=asked)
    assert service.received[-1].body["max_tokens"] == sent


async def test_a_seed_is_sent_only_when_given(
    service: FakeModelService, llm: OpenAICompatibleLLM
) -> None:
    await llm.complete(MESSAGES, temperature=0.7, max_tokens=8, seed=1234)
    await llm.complete(MESSAGES, temperature=0.7, max_tokens=8)
    seeded, unseeded = service.received[-2:]
    assert seeded.body["seed"] == 1234
    assert "seed" not in unseeded.body


async def test_a_seed_is_not_sent_to_a_service_told_not_to(service: FakeModelService) -> None:
    settings = OpenAISettings(base_url=service.base_url, model=MODEL, send_seed=False)
    quiet = OpenAICompatibleLLM(settings)
    try:
        await quiet.complete(MESSAGES, temperature=0.7, max_tokens=8, seed=1234)
    finally:
        await quiet.aclose()
    assert "seed" not in service.received[-1].body


async def test_json_mode_asks_for_a_json_object(
    service: FakeModelService, llm: OpenAICompatibleLLM
) -> None:
    service.script(completion('{"capital": "Paris"}'))
    assert await ask(llm, json_mode=True) == '{"capital": "Paris"}'
    assert service.received[-1].body["response_format"] == {"type": "json_object"}


async def test_a_known_schema_asks_for_json_of_that_schema(
    service: FakeModelService, llm: OpenAICompatibleLLM
) -> None:
    service.script(completion('{"capital": "Paris"}'))
    schema = '{"type": "object", "required": ["capital"]}'
    done = await llm.complete(
        MESSAGES, temperature=0.2, max_tokens=64, json_mode=True, json_schema=schema
    )
    assert done.content == '{"capital": "Paris"}'
    assert service.received[-1].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "schema": {"type": "object", "required": ["capital"]},
            "strict": True,
        },
    }


async def test_429_is_rate_limited_with_retry_after(
    service: FakeModelService, llm: OpenAICompatibleLLM
) -> None:
    service.script(error(429, "slow down", {"Retry-After": "1"}))
    failure = await fails(llm)
    assert isinstance(failure, ModelRateLimited)
    assert failure.retry_after_s == 1.0
    assert failure.retriable
    assert "slow down" in str(failure)


async def test_429_with_an_http_date(service: FakeModelService, llm: OpenAICompatibleLLM) -> None:
    when = format_datetime(datetime.now(tz=UTC) + timedelta(seconds=30), usegmt=True)
    service.script(error(429, headers={"Retry-After": when}))
    failure = await fails(llm)
    assert isinstance(failure, ModelRateLimited)
    assert failure.retry_after_s is not None
    assert 28.0 <= failure.retry_after_s <= 30.0


NOW = datetime(2025, 1, 1, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": " 2.5 "}, 2.5),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": "-3"}, None),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "inf"}, None),
        ({"Retry-After": "Wed, 01 Jan 2025 00:00:42 GMT"}, 42.0),
        ({"Retry-After": "Tue, 31 Dec 2024 23:59:00 GMT"}, 0.0),  # already past
        ({"retry-after-ms": "1500", "Retry-After": "9"}, 1.5),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(httpx.Headers(headers), NOW) == expected


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (500, ModelUnavailable),
        (502, ModelUnavailable),
        (503, ModelUnavailable),
        (408, ModelUnavailable),
        (409, ModelUnavailable),
        (400, ModelRejected),
        (401, ModelRejected),
        (404, ModelRejected),
        (422, ModelRejected),
    ],
)
async def test_http_errors_are_typed(
    service: FakeModelService, llm: OpenAICompatibleLLM, status: int, kind: type[ModelError]
) -> None:
    service.script(error(status, f"status {status} says no"))
    failure = await fails(llm)
    assert type(failure) is kind
    assert failure.retriable is (kind is ModelUnavailable)
    assert f"HTTP {status}: status {status} says no" in str(failure)


def choice(message: object) -> dict[str, object]:
    return {"choices": [{"message": message, "finish_reason": "stop"}], "model": MODEL}


@pytest.mark.parametrize(
    "reply",
    [
        Reply(body=b'{"choices": [{"message": {"content": "Par'),  # truncated JSON
        Reply(body=b"<html>gateway</html>"),
        json_reply({"object": "chat.completion", "model": MODEL}),  # no choices
        json_reply({"choices": [], "model": MODEL}),
        json_reply(["not", "an", "object"]),
        json_reply(choice({"role": "assistant"})),  # no content
        json_reply(choice({"role": "assistant", "content": None})),
        json_reply(choice({"role": "assistant", "content": 42})),
        json_reply({**choice({"content": "x"}), "usage": {"prompt_tokens": "many"}}),
    ],
)
async def test_a_malformed_answer_is_never_forwarded(
    service: FakeModelService, llm: OpenAICompatibleLLM, reply: Reply
) -> None:
    service.script(reply)
    failure = await fails(llm)
    assert isinstance(failure, ModelBadResponse)
    assert failure.retriable


async def test_usage_and_model_may_be_missing(
    service: FakeModelService, llm: OpenAICompatibleLLM
) -> None:
    service.script(json_reply({"choices": [{"message": {"content": "Paris"}}]}))
    done = await llm.complete(MESSAGES, temperature=0.0, max_tokens=8)
    assert (done.content, done.model, done.finish_reason) == ("Paris", MODEL, None)
    assert (done.prompt_tokens, done.completion_tokens) == (0, 0)


async def test_a_hang_past_the_read_timeout_is_a_timeout(service: FakeModelService) -> None:
    service.script(Reply(hang=True))
    client = OpenAICompatibleLLM(settings(service.base_url, read_timeout_s=0.3))
    try:
        failure = await fails(client)
    finally:
        await client.aclose()
    assert isinstance(failure, ModelTimeout)
    assert failure.retriable
    assert len(service.received) == 1  # one call, one request: no retry inside


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port that is bound but not listening: connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])


async def test_a_refused_connection_is_unavailable(refusing_port: int) -> None:
    client = OpenAICompatibleLLM(settings(f"http://127.0.0.1:{refusing_port}/v1"))
    try:
        failure = await fails(client)
    finally:
        await client.aclose()
    assert isinstance(failure, ModelUnavailable)
    assert failure.retriable


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUARDIAN_OPENAI_MODEL", "qwen2.5-7b")
    monkeypatch.setenv("GUARDIAN_OPENAI_BASE_URL", "https://models.internal/v1/")
    monkeypatch.setenv("GUARDIAN_OPENAI_API_KEY", "sk-secret")
    loaded = OpenAISettings()  # model comes from the environment
    assert (loaded.model, loaded.base_url) == ("qwen2.5-7b", "https://models.internal/v1")
    assert loaded.api_key.get_secret_value() == "sk-secret"
    assert "sk-secret" not in repr(loaded)
    assert (loaded.connect_timeout_s, loaded.read_timeout_s, loaded.max_tokens_cap) == (5, 60, 1024)


def test_settings_need_an_http_url() -> None:
    with pytest.raises(ValidationError, match="http"):
        settings("ftp://models.internal/v1")
