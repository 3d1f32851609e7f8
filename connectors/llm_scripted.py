"""A scripted chat model for tests and benchmarks: a script sets answers, latency, failures.

A request selects a script key: a ``[[script:KEY]]`` marker anywhere in its
messages (the latest message carrying one wins), else the exact text of its last
user message when that is an entry, else ``DEFAULT_KEY``; calls are counted per
key, and a key without an entry is answered by the script's default step. An
entry is a list of steps, one per call made with that key; calls beyond the list
repeat the last step. A step with no ``answer`` echoes the last user message
(markers removed), so an unscripted request still gets a deterministic reply.

Example::

    ScriptedLLM.from_dict({
        "entries": {
            "flaky": [
                {"error": "rate_limited", "retry_after_s": 0.5},
                {"answer": "Paris", "latency_ms": 20},
            ],
        },
    })
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agents.errors import (
    ModelBadResponse,
    ModelError,
    ModelRateLimited,
    ModelRejected,
    ModelTimeout,
    ModelUnavailable,
)
from agents.ports import ChatMessage, Completion

_MARKER: Final = re.compile(r"\[\[script:([^\]]+)\]\]")
DEFAULT_KEY: Final = "*"
"""The key under which calls that match no entry are counted."""

ScriptedFailure = Literal["timeout", "rate_limited", "unavailable", "bad_response", "rejected"]


class ScriptStep(BaseModel):
    """What one call answers: content (or echo), simulated latency, or a failure."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    answer: str | None = None
    latency_ms: float = Field(default=0.0, ge=0.0)
    error: ScriptedFailure | None = None
    retry_after_s: float | None = Field(default=None, ge=0.0)
    finish_reason: str = "stop"


class Script(BaseModel):
    """Entries keyed by script key, each a list of steps indexed by call number."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    entries: dict[str, tuple[ScriptStep, ...]] = Field(default_factory=dict)
    default: ScriptStep = ScriptStep()
    when_system_contains: dict[str, ScriptStep] = Field(default_factory=dict)
    """Steps chosen by the system prompt: a phrase found in it wins over the entries
    (a model that behaves differently under another prompt version)."""

    @field_validator("entries", mode="before")
    @classmethod
    def _single_step_is_a_list(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        return {k: [v] if isinstance(v, Mapping | ScriptStep) else v for k, v in value.items()}

    @field_validator("entries")
    @classmethod
    def _entries_not_empty(
        cls, value: dict[str, tuple[ScriptStep, ...]]
    ) -> dict[str, tuple[ScriptStep, ...]]:
        empty = sorted(key for key, steps in value.items() if not steps)
        if empty:
            raise ValueError(f"script entries without steps: {empty}")
        return value


def script_key(messages: Sequence[ChatMessage]) -> str | None:
    """The ``[[script:KEY]]`` marker of the latest message carrying one, if any."""
    for message in reversed(messages):
        found = _MARKER.findall(message.content)
        if found:
            return str(found[-1]).strip()
    return None


def _last_user_text(messages: Sequence[ChatMessage]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            return message.content
    return ""


def _word_count(text: str) -> int:
    return len(text.split())


def _failure(step: ScriptStep, key: str, call: int) -> ModelError:
    detail = f"scripted {step.error} for key {key!r}, call {call}"
    if step.error == "rate_limited":
        return ModelRateLimited(detail, retry_after_s=step.retry_after_s)
    classes: dict[str, type[ModelError]] = {
        "timeout": ModelTimeout,
        "unavailable": ModelUnavailable,
        "bad_response": ModelBadResponse,
        "rejected": ModelRejected,
    }
    return classes[str(step.error)](detail)


class ScriptedLLM:
    """An ``LLM`` whose behaviour per request key and call number is given by a ``Script``."""

    def __init__(self, script: Script | None = None, *, name: str = "scripted") -> None:
        self._script = script or Script()
        self._name = name
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._history: list[tuple[str, tuple[ChatMessage, ...], int | None]] = []

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, name: str = "scripted") -> ScriptedLLM:
        """Build from a plain dict shaped like ``Script`` (``entries`` and ``default``)."""
        return cls(Script.model_validate(data), name=name)

    @classmethod
    def from_file(cls, path: Path | str, *, name: str = "scripted") -> ScriptedLLM:
        """Build from a JSON file shaped like ``Script``."""
        return cls(Script.model_validate_json(Path(path).read_text(encoding="utf-8")), name=name)

    @property
    def name(self) -> str:
        return self._name

    @property
    def total_calls(self) -> int:
        with self._lock:
            return sum(self._calls.values())

    def calls(self, key: str) -> int:
        """How many calls selected ``key`` (``DEFAULT_KEY`` counts unmarked, unmatched ones)."""
        with self._lock:
            return self._calls[key]

    def requests(self, key: str) -> list[tuple[ChatMessage, ...]]:
        """The messages of every call that selected ``key``, oldest first."""
        with self._lock:
            return [messages for k, messages, _ in self._history if k == key]

    def seeds(self, key: str) -> list[int | None]:
        """The sampling seed of every call that selected ``key``, oldest first (a script
        answers the same whatever the seed)."""
        with self._lock:
            return [seed for k, _, seed in self._history if k == key]

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
        key, call, step = self._next_step(messages, seed)
        if step.latency_ms:
            await asyncio.sleep(step.latency_ms / 1000.0)
        if step.error is not None:
            raise _failure(step, key, call)
        return self._completion(step, messages, max_tokens)

    def _select_key(self, messages: Sequence[ChatMessage]) -> str:
        marker = script_key(messages)
        if marker is not None:
            return marker
        last_user = _last_user_text(messages).strip()
        return last_user if last_user in self._script.entries else DEFAULT_KEY

    def _next_step(
        self, messages: Sequence[ChatMessage], seed: int | None
    ) -> tuple[str, int, ScriptStep]:
        key = self._select_key(messages)
        with self._lock:
            self._calls[key] += 1
            call = self._calls[key]
            self._history.append((key, tuple(messages), seed))
        system = " ".join(m.content for m in messages if m.role == "system")
        for phrase, step in self._script.when_system_contains.items():
            if phrase in system:
                return key, call, step
        steps = self._script.entries.get(key)
        if not steps:
            return key, call, self._script.default
        return key, call, steps[min(call, len(steps)) - 1]

    def _completion(
        self, step: ScriptStep, messages: Sequence[ChatMessage], max_tokens: int
    ) -> Completion:
        text = step.answer
        if text is None:
            text = "echo: " + _MARKER.sub("", _last_user_text(messages)).strip()
        words = text.split()
        finish_reason = step.finish_reason
        if len(words) > max_tokens:
            text, finish_reason = " ".join(words[:max_tokens]), "length"
        return Completion(
            content=text,
            model=self._name,
            prompt_tokens=sum(_word_count(m.content) for m in messages),
            completion_tokens=_word_count(text),
            finish_reason=finish_reason,
        )
