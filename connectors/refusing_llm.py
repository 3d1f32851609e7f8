"""A model port that refuses every call: audit replay re-derives decisions from the log
and must never reach a model. It counts attempts, so a test can assert there were none."""

from __future__ import annotations

from collections.abc import Sequence

from agents.errors import ModelNotAllowed
from agents.ports import ChatMessage, Completion


class RefusingLLM:
    """Implements ``agents.ports.LLM``; ``complete`` always raises ``ModelNotAllowed``."""

    def __init__(self) -> None:
        self.calls = 0

    @property
    def name(self) -> str:
        return "refusing"

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
        self.calls += 1
        raise ModelNotAllowed(
            f"replay does not call models (attempt {self.calls}, {len(messages)} messages)"
        )
