"""The gateway's pure core: chat requests read as pipeline requests, responses written
as OpenAI completions, chunks and errors; API keys and the token bucket."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from agents.gateway import ApiError, chunks, completion, outcome, pieces, read_chat
from agents.gateway_access import Bucket, key_digest, read_keys, take, tenant_for
from schemas.request_events import ResponseDelivered

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def chat(**body: Any) -> Any:
    body.setdefault("model", "guardian")
    body.setdefault("messages", [{"role": "user", "content": "Name a river."}])
    return read_chat(body, tenant="acme", models=["guardian"], priority=None)


def refused(**body: Any) -> ApiError:
    with pytest.raises(ApiError) as error:
        chat(**body)
    return error.value


def test_the_last_user_messages_are_the_prompt_and_the_rest_is_context() -> None:
    call = chat(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi."},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": [{"type": "text", "text": "Name a river."}]},
            {"role": "user", "content": "In Spain."},
        ]
    )
    assert call.prompt == "Name a river.\n\nIn Spain."
    assert call.context == ("System: Be brief.", "User: Hi.\nAssistant: Hello.")
    assert call.fields["tenant"] == "acme"
    assert not call.stream


def test_sampling_format_metadata_user_and_priority_become_request_fields() -> None:
    body = {
        "model": "guardian",
        "messages": [{"role": "user", "content": "List two cities as JSON."}],
        "max_tokens": 64,
        "temperature": 0.3,
        "response_format": {"type": "json_object"},
        "metadata": {"team": "search"},
        "user": "u-7",
        "stream": True,
    }
    call = read_chat(body, tenant="acme", models=["guardian"], priority="2")
    assert call.stream
    assert call.fields == {
        "tenant": "acme",
        "metadata": {"team": "search", "user": "u-7"},
        "max_tokens": 64,
        "temperature": 0.3,
        "response_format": '{"type": "json_object"}',
        "priority": 2,
    }


@pytest.mark.parametrize(
    ("body", "status", "code", "says"),
    [
        pytest.param({"model": "gpt-9"}, 404, "model_not_found", "gpt-9", id="unknown-model"),
        pytest.param({"messages": []}, 400, "invalid_request", "messages", id="no-messages"),
        pytest.param(
            {"messages": [{"role": "tool", "content": "x"}]},
            400,
            "invalid_request",
            "tool",
            id="tool-role",
        ),
        pytest.param(
            {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
            400,
            "invalid_request",
            "last message",
            id="ends-with-assistant",
        ),
        pytest.param({"max_tokens": "ten"}, 400, "invalid_request", "max_tokens", id="tokens"),
        pytest.param({"temperature": True}, 400, "invalid_request", "temperature", id="temp"),
        pytest.param({"response_format": "json"}, 400, "invalid_request", "object", id="format"),
        pytest.param({"n": 2}, 400, "invalid_request", "n=1", id="n"),
        pytest.param({"metadata": {"a": 1}}, 400, "invalid_request", "strings", id="metadata"),
    ],
)
def test_a_bad_request_is_refused_with_openai_s_error_shape(
    body: dict[str, Any], status: int, code: str, says: str
) -> None:
    error = refused(**body)
    assert (error.status, error.code) == (status, code)
    assert says in error.message
    assert error.body()["error"]["code"] == code
    assert set(error.body()["error"]) == {"message", "type", "param", "code"}


def test_a_priority_header_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(ApiError, match="X-Guardian-Priority"):
        read_chat(
            {"model": "guardian", "messages": [{"role": "user", "content": "x"}]},
            tenant="a",
            models=["guardian"],
            priority="high",
        )


def response(status: str, **fields: Any) -> ResponseDelivered:
    return ResponseDelivered(
        event_id="e", request_id="r-1", occurred_at=NOW, status=status, config_version=7, **fields
    )


def test_a_response_becomes_a_chat_completion_with_the_guardian_member() -> None:
    body = completion(
        response(
            "passed",
            content="The Ebro.",
            confidence=0.9,
            rounds=2,
            best_round=2,
            specialists=("general",),
            prompt_tokens=10,
            completion_tokens=3,
        ),
        model="guardian",
        created=1,
    )
    assert body["id"] == "chatcmpl-r-1"
    assert body["choices"][0]["message"]["content"] == "The Ebro."
    assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
    member = body["guardian"]
    assert (member["request_id"], member["status"], member["rounds"]) == ("r-1", "passed", 2)
    assert (member["best_round"], member["config_version"]) == (2, 7)
    assert member["specialists"] == ["general"]
    json.dumps(body)


@pytest.mark.parametrize(
    ("status", "strict", "expected"),
    [
        ("passed", True, None),
        ("failed", False, None),
        ("failed", True, 422),
        ("rejected", False, 400),
        ("timeout", False, 504),
        ("error", False, 502),
    ],
)
def test_each_status_has_its_http_outcome(status: str, strict: bool, expected: int | None) -> None:
    error = outcome(response(status, reason="why", reason_code="prompt_injection"), strict=strict)
    assert (error.status if error else None) == expected
    if status == "rejected":
        assert error is not None
        assert error.code == "prompt_injection"


def test_a_stream_is_the_role_the_content_in_pieces_and_a_final_guardian_chunk() -> None:
    text = "Rivers of Spain include the Ebro, the Tagus and the Guadalquivir."
    out = chunks(response("passed", content=text), model="guardian", created=1, piece_chars=16)
    assert out[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    body = [c["choices"][0]["delta"]["content"] for c in out[1:-1]]
    assert "".join(body) == text
    assert all(len(p) <= 16 for p in body)
    assert out[-1]["choices"][0]["finish_reason"] == "stop"
    assert out[-1]["guardian"]["status"] == "passed"
    assert {c["id"] for c in out} == {"chatcmpl-r-1"}


@pytest.mark.parametrize("text", ["", "a", "word " * 40, "x" * 100, "a  b   c " * 9])
def test_pieces_join_back_to_the_text(text: str) -> None:
    assert "".join(pieces(text, 10)) == text
    assert all(0 < len(p) <= 10 for p in pieces(text, 10))


def test_keys_map_to_tenants_by_digest_and_anything_else_is_401() -> None:
    keys = read_keys(f"# team keys\n{key_digest('sk-one')} acme\n\n{key_digest('sk-two')} beta\n")
    assert tenant_for(keys, "Bearer sk-one") == "acme"
    assert tenant_for(keys, "Bearer sk-two") == "beta"
    for header in (None, "", "Basic x", "Bearer sk-three"):
        with pytest.raises(ApiError) as error:
            tenant_for(keys, header)
        assert error.value.status == 401
        assert error.value.type == "authentication_error"
    with pytest.raises(ValueError, match="line 2"):
        read_keys(f"{key_digest('a')} acme\nsk-plain acme\n")


def test_the_bucket_allows_a_burst_then_one_per_interval() -> None:
    bucket: Bucket | None = None
    waits = []
    for _ in range(4):
        bucket, wait = take(bucket, 100.0, rate=2.0, burst=3.0)
        waits.append(wait)
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] == pytest.approx(0.5)
    assert bucket is not None
    bucket, wait = take(bucket, 100.5, rate=2.0, burst=3.0)
    assert wait == 0.0
