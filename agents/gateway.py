"""The HTTP gateway's decisions, pure: an OpenAI chat completion request read as a
pipeline request, and a pipeline response written as an OpenAI completion, a stream of
chunks or an error, with its status code.

OpenAI's shapes: https://platform.openai.com/docs/api-reference/chat (object names,
``choices``, ``usage``, the ``error`` object). The ``guardian`` member is ours.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.context import render_turn
from schemas.request_events import ResponseDelivered

ROLES_SYSTEM = frozenset({"system", "developer"})
MAX_METADATA = 16


@dataclass(frozen=True)
class ApiError(Exception):
    """An OpenAI-shaped error and its HTTP status."""

    status: int
    message: str
    code: str
    type: str = "invalid_request_error"
    param: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        error = {"message": self.message, "type": self.type, "param": self.param}
        return {"error": error | {"code": self.code}}


def bad_request(message: str, code: str = "invalid_request", param: str | None = None) -> ApiError:
    return ApiError(400, message, code, param=param)


@dataclass(frozen=True)
class ChatCall:
    """A valid chat completion request, as the pipeline's request fields."""

    model: str
    prompt: str
    context: tuple[str, ...]
    stream: bool
    fields: dict[str, Any]
    """``RequestSubmitted`` fields besides the prompt and context."""


def read_chat(
    body: object, *, tenant: str, models: Sequence[str], priority: str | None
) -> ChatCall:
    """``body`` (parsed JSON) as a pipeline request; ``ApiError`` says what is wrong.
    The tenant is the API key's; ``priority`` is the ``X-Guardian-Priority`` header."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("'model' is required", param="model")
    if model not in models:
        raise ApiError(
            404,
            f"the model {model!r} does not exist; models: {', '.join(models)}",
            "model_not_found",
            param="model",
        )
    prompt, context = read_messages(body.get("messages"))
    fields: dict[str, Any] = {"tenant": tenant, "metadata": _metadata(body)}
    fields |= _sampling(body) | _response_format(body)
    if priority is not None:
        fields["priority"] = _priority(priority)
    if body.get("n", 1) != 1:
        raise bad_request("only n=1 is supported", param="n")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("'stream' must be a boolean", param="stream")
    return ChatCall(model=model, prompt=prompt, context=context, stream=stream, fields=fields)


def read_messages(messages: object) -> tuple[str, tuple[str, ...]]:
    """The prompt (the trailing user messages) and the context before it: system
    messages as ``System: ...``, each user message with the assistant's reply as one
    turn, oldest first."""
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty list", param="messages")
    said = [_message(i, m) for i, m in enumerate(messages)]
    if said[-1][0] != "user":
        raise bad_request("the last message must be the user's", param="messages")
    tail = len(said)
    while tail > 0 and said[tail - 1][0] == "user":
        tail -= 1
    prompt = "\n\n".join(text for _, text in said[tail:])
    return prompt, _turns(said[:tail])


def _turns(said: list[tuple[str, str]]) -> tuple[str, ...]:
    turns: list[str] = []
    asked: list[str] = []
    for role, text in said:
        if role == "user":
            asked.append(text)
        elif role == "assistant":
            turns.append(render_turn("\n\n".join(asked), text) if asked else f"Assistant: {text}")
            asked = []
        else:
            turns.append(f"System: {text}")
    turns += [f"User: {text}" for text in asked]
    return tuple(turns)


def _message(i: int, message: object) -> tuple[str, str]:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        raise bad_request(f"{where} must be an object", param=where)
    role = message.get("role")
    if role not in {"user", "assistant", *ROLES_SYSTEM}:
        raise bad_request(
            f"{where}.role {role!r} is not supported (system, developer, user, assistant)",
            param=f"{where}.role",
        )
    content = message.get("content")
    if isinstance(content, list):
        content = _text_parts(where, content)
    if role == "assistant" and content is None:
        content = ""
    if not isinstance(content, str):
        raise bad_request(f"{where}.content must be a string", param=f"{where}.content")
    return ("system" if role in ROLES_SYSTEM else role), content


def _text_parts(where: str, parts: list[object]) -> str:
    texts = []
    for part in parts:
        if not isinstance(part, dict) or part.get("type") != "text":
            raise bad_request(f"{where}.content: only text parts are supported", param=where)
        texts.append(str(part.get("text", "")))
    return "\n".join(texts)


def _sampling(body: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if tokens is not None:
        if isinstance(tokens, bool) or not isinstance(tokens, int):
            raise bad_request("'max_tokens' must be an integer", param="max_tokens")
        fields["max_tokens"] = tokens
    temperature = body.get("temperature")
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            raise bad_request("'temperature' must be a number", param="temperature")
        fields["temperature"] = float(temperature)
    return fields


def _response_format(body: Mapping[str, Any]) -> dict[str, Any]:
    value = body.get("response_format")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request("'response_format' must be an object", param="response_format")
    return {"response_format": json.dumps(value, sort_keys=True)}


def _metadata(body: Mapping[str, Any]) -> dict[str, str]:
    """OpenAI's ``metadata`` (string values, at most 16) plus the end user, if named."""
    given = body.get("metadata") or {}
    if not isinstance(given, dict) or len(given) > MAX_METADATA:
        raise bad_request(
            f"'metadata' must be an object of at most {MAX_METADATA} entries", param="metadata"
        )
    if not all(isinstance(v, str) for v in given.values()):
        raise bad_request("'metadata' values must be strings", param="metadata")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise bad_request("'user' must be a string", param="user")
    return dict(given) | ({"user": user} if user else {})


def _priority(header: str) -> int:
    if not re.fullmatch(r"\d{1,2}", header.strip()):
        raise bad_request(f"X-Guardian-Priority {header!r} is not a number from 0 to 9")
    return int(header)


def guardian_member(response: ResponseDelivered) -> dict[str, Any]:
    """What the pipeline decided, beside the OpenAI fields."""
    return {
        "request_id": response.request_id,
        "status": response.status,
        "confidence": response.confidence,
        "rounds": response.rounds,
        "best_round": response.best_round,
        "specialists": list(response.specialists),
        "config_version": response.config_version,
        "cache_hit": response.cache_hit,
        "reason": response.reason,
        "reason_code": response.reason_code,
    }


def completion(response: ResponseDelivered, *, model: str, created: int) -> dict[str, Any]:
    """A ``chat.completion`` object answering with the response's content."""
    usage = {
        "prompt_tokens": response.prompt_tokens,
        "completion_tokens": response.completion_tokens,
        "total_tokens": response.prompt_tokens + response.completion_tokens,
    }
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": response.content, "refusal": None},
        "finish_reason": "stop",
        "logprobs": None,
    }
    return {
        "id": completion_id(response.request_id),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": usage,
        "guardian": guardian_member(response),
    }


def completion_id(request_id: str) -> str:
    return f"chatcmpl-{request_id}"


def outcome(response: ResponseDelivered, *, strict: bool) -> ApiError | None:
    """The error a response is for the caller, or None when it is an answer (200)."""
    status = response.status
    reason = response.reason or status
    if status == "passed" or (status == "failed" and not strict):
        return None
    if status == "failed":
        return ApiError(422, reason, "guardians_failed", type="guardian_error")
    if status == "rejected":
        return bad_request(reason, response.reason_code or "rejected")
    if status == "timeout":
        return ApiError(504, reason, "timeout", type="timeout_error")
    return ApiError(502, reason, response.reason_code or "model_error", type="model_error")


def chunks(
    response: ResponseDelivered, *, model: str, created: int, piece_chars: int = 48
) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects of a finished answer: the role, the content
    in pieces cut after white space, then the finish with usage and the guardian member."""
    base: dict[str, Any] = {
        "id": completion_id(response.request_id),
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return base | {"choices": [choice]}

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": piece}) for piece in pieces(response.content, piece_chars)]
    last = chunk({}, "stop")
    last["usage"] = completion(response, model=model, created=created)["usage"]
    last["guardian"] = guardian_member(response)
    return [*out, last]


def pieces(text: str, size: int) -> list[str]:
    """``text`` cut into pieces of about ``size`` characters, each ending after white
    space where there is some; joined they are ``text``."""
    out: list[str] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            space = text.rfind(" ", start + 1, end)
            end = space + 1 if space > start else end
        out.append(text[start:end])
        start = end
    return out
