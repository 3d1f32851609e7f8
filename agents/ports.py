"""The outside-world capabilities the decision layer needs, as Protocols.

Connectors implement these; agents and stages depend only on the Protocols.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict


class ChatMessage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


class Completion(BaseModel):
    """What a model returned for one call."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    content: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None


@runtime_checkable
class LLM(Protocol):
    """A chat model. Raises ``agents.errors.ModelError`` subclasses on failure."""

    @property
    def name(self) -> str: ...

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
        """``json_mode`` asks the backend to constrain decoding to one JSON value, one
        that matches ``json_schema`` (JSON Schema as JSON text) when given. ``forbid``
        names characters the answer must not contain, for a backend that can rule them
        out while decoding; one that cannot ignores it (the guardians still check).
        ``seed`` makes sampling repeatable where the backend supports it: the same
        messages and seed give the same answer (``None``: the backend's own draw)."""
        ...


@runtime_checkable
class Embedder(Protocol):
    """Sentence embeddings; vectors are L2-normalised so a dot product is cosine."""

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


@runtime_checkable
class AnswerCache(Protocol):
    """Where guardian-approved answers are kept, by cache key (values are opaque bytes)."""

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes, ttl_s: float) -> None: ...


class PiiFinding(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    entity_type: str
    start: int
    end: int
    score: float


@runtime_checkable
class PiiDetector(Protocol):
    def find(self, text: str) -> list[PiiFinding]: ...
