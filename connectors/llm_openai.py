"""An ``LLM`` backed by any OpenAI-compatible chat-completions endpoint (vLLM, Ollama,
llama.cpp server, hosted APIs), over httpx.

One call is one HTTP request: retries, breakers and fallbacks live in
``connectors.resilient``. Every failure leaves here as a typed ``ModelError``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from email.utils import parsedate_to_datetime
from typing import Any, Final

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.errors import (
    ModelBadResponse,
    ModelError,
    ModelRateLimited,
    ModelRejected,
    ModelTimeout,
    ModelUnavailable,
)
from agents.ports import ChatMessage, Completion

_DETAIL_CHARS: Final = 300
_TRANSIENT_4XX: Final = frozenset({408, 409})


class OpenAISettings(BaseSettings):
    """Where the OpenAI-compatible service is and how long to wait for it."""

    model_config = SettingsConfigDict(env_prefix="GUARDIAN_OPENAI_", frozen=True)

    base_url: str = "http://127.0.0.1:8000/v1"
    """Up to and including the API version: requests go to ``{base_url}/chat/completions``."""
    api_key: SecretStr = SecretStr("none")
    model: str
    connect_timeout_s: float = Field(default=5.0, gt=0.0)
    read_timeout_s: float = Field(default=60.0, gt=0.0)
    """Longest silence while waiting for the (non-streamed) answer."""
    max_tokens_cap: int = Field(default=1024, ge=1)
    """Upper bound on ``max_tokens`` whatever a task asks for."""
    send_seed: bool = True
    """Send each call's sampling seed (``seed``; OpenAI, vLLM and llama.cpp's server take
    it); false for a service that refuses fields it does not know."""

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {value!r}")
        return value.rstrip("/")


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    content: StrictStr


class _Choice(BaseModel):
    model_config = ConfigDict(extra="ignore")

    message: _Message
    finish_reason: str | None = None


class _Usage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt_tokens: StrictInt = Field(ge=0)
    completion_tokens: StrictInt = Field(ge=0)


class _ChatResponse(BaseModel):
    """The part of a chat-completions response we use; the rest is ignored."""

    model_config = ConfigDict(extra="ignore")

    choices: list[_Choice] = Field(min_length=1)
    model: StrictStr | None = None
    usage: _Usage | None = None


def parse_retry_after(headers: httpx.Headers, now_wall: float) -> float | None:
    """Seconds a server asks us to wait: ``retry-after-ms``, else ``Retry-After``.

    ``Retry-After`` is delta-seconds or an HTTP-date (relative to ``now_wall``,
    Unix seconds); a date in the past means now. Unparseable values give ``None``.
    """
    millis = _non_negative(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _non_negative(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now_wall)


def _non_negative(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0.0 else None


def _detail(response: httpx.Response) -> str:
    """The service's error message (OpenAI's ``{"error": {"message"}}``), shortened."""
    text = response.text
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        text = error["message"]
    elif isinstance(error, str):
        text = error
    return f"HTTP {response.status_code}: {text.strip()[:_DETAIL_CHARS]}"


def status_error(response: httpx.Response, now_wall: float) -> ModelError:
    """The typed error for a non-2xx response."""
    status = response.status_code
    detail = _detail(response)
    if status == 429:
        return ModelRateLimited(detail, retry_after_s=parse_retry_after(response.headers, now_wall))
    if status in _TRANSIENT_4XX or status >= 500:
        return ModelUnavailable(detail)
    return ModelRejected(detail)


def parse_completion(body: bytes, requested_model: str) -> Completion:
    """A ``Completion`` from a 2xx body, or ``ModelBadResponse``; never a partial answer.

    ``usage`` and ``model`` are optional in the wild (some local servers omit
    them): missing usage counts as zero tokens, a missing model as the one asked for.
    """
    try:
        parsed = _ChatResponse.model_validate_json(body)
    except ValidationError as exc:
        raise ModelBadResponse(f"not a chat completion: {_short(exc)}") from exc
    choice = parsed.choices[0]
    usage = parsed.usage or _Usage(prompt_tokens=0, completion_tokens=0)
    return Completion(
        content=choice.message.content,
        model=parsed.model or requested_model,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        finish_reason=choice.finish_reason,
    )


def _short(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return f"{where}: {first['msg']}"[:_DETAIL_CHARS]


class OpenAICompatibleLLM:
    """An ``LLM`` that POSTs to ``{base_url}/chat/completions``; close it with ``aclose``."""

    def __init__(self, settings: OpenAISettings, *, name: str | None = None) -> None:
        self._settings = settings
        self._name = name or settings.model
        self._client = httpx.AsyncClient(
            base_url=settings.base_url + "/",
            headers={"Authorization": f"Bearer {settings.api_key.get_secret_value()}"},
            timeout=httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s),
        )

    @property
    def name(self) -> str:
        return self._name

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        temperature: float,
        max_tokens: int,
        json_mode: bool = False,
        json_schema: str | None = None,
        forbid: str = "",
        seed: int | None = None,
    ) -> Completion:
        # The OpenAI API has no field that rules characters out (``logit_bias`` needs the
        # server's token ids), so ``forbid`` is left to the guardians' check.
        payload = self._payload(messages, temperature, max_tokens, json_mode, json_schema)
        if seed is not None and self._settings.send_seed:
            # Best effort on OpenAI's side; vLLM and llama.cpp's server honour it.
            payload["seed"] = seed
        response = await self._post(payload)
        if not response.is_success:
            raise status_error(response, time.time())
        return parse_completion(response.content, self._settings.model)

    async def aclose(self) -> None:
        await self._client.aclose()

    def _payload(
        self,
        messages: Sequence[ChatMessage],
        temperature: float,
        max_tokens: int,
        json_mode: bool,
        json_schema: str | None = None,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self._settings.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "temperature": temperature,
            "max_tokens": max(1, min(max_tokens, self._settings.max_tokens_cap)),
        }
        if json_mode and json_schema:
            schema = json.loads(json_schema)
            payload["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema, "strict": True},
            }
        elif json_mode:
            payload["response_format"] = {"type": "json_object"}
        return payload

    async def _post(self, payload: dict[str, Any]) -> httpx.Response:
        """One request; httpx's failures translated to ``ModelError`` here, at the boundary."""
        url = self._settings.base_url
        try:
            return await self._client.post("chat/completions", json=payload)
        except httpx.TimeoutException as exc:
            raise ModelTimeout(f"{url}: {type(exc).__name__}") from exc
        except httpx.DecodingError as exc:
            raise ModelBadResponse(f"{url}: undecodable body: {exc}") from exc
        except httpx.RequestError as exc:
            raise ModelUnavailable(f"{url}: {type(exc).__name__}: {exc}") from exc
