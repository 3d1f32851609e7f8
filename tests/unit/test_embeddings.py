"""The MiniLM embedder (real int8 model, shipped in a wheel) and the hashing embedder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agents.ports import Embedder
from connectors.embeddings import (
    EmbeddingModelLoadError,
    EmbeddingSettings,
    HashingEmbedder,
    MiniLMEmbedder,
)

BREAD_QUESTION = "How do I bake bread?"
BREAD_ANSWER = (
    "Mix flour, water, salt and yeast, knead the dough for ten minutes, "
    "let it rise for an hour, then bake it at 230 degrees until golden."
)
KAFKA_ANSWER = (
    "A Kafka topic is split into partitions; each partition is an ordered log, "
    "and consumers in a group divide the partitions between them."
)


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    embedder = MiniLMEmbedder()
    embedder.load()
    return embedder


def cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b))


def test_both_embedders_implement_the_port(minilm: MiniLMEmbedder) -> None:
    assert isinstance(minilm, Embedder)
    assert isinstance(HashingEmbedder(), Embedder)


def test_a_question_is_closer_to_its_answer_than_to_an_unrelated_one(
    minilm: MiniLMEmbedder,
) -> None:
    question, bread, kafka = minilm.embed([BREAD_QUESTION, BREAD_ANSWER, KAFKA_ANSWER])
    assert cosine(question, bread) > cosine(question, kafka) + 0.3


def test_vectors_are_unit_length_with_384_dimensions(minilm: MiniLMEmbedder) -> None:
    vectors = minilm.embed([BREAD_QUESTION, "", "x" * 5000])
    assert [len(v) for v in vectors] == [384, 384, 384]
    for vector in vectors:
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_a_batch_equals_one_by_one(minilm: MiniLMEmbedder) -> None:
    texts = [BREAD_QUESTION, BREAD_ANSWER, KAFKA_ANSWER, "ok"]
    batched = np.array(minilm.embed(texts))
    single = np.array([minilm.embed([text])[0] for text in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_identical_texts_have_cosine_one(minilm: MiniLMEmbedder) -> None:
    first, second = minilm.embed([KAFKA_ANSWER, KAFKA_ANSWER])
    assert cosine(first, second) == pytest.approx(1.0, abs=1e-5)


def test_matches_published_all_minilm_l6_v2_similarities(minilm: MiniLMEmbedder) -> None:
    # sentence-transformers' documented output for all-MiniLM-L6-v2 (fp32):
    # 0.6660, 0.1046, 0.1411; the int8 model stays within 0.02 of it.
    weather, sunny, stadium = minilm.embed(
        ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
    )
    assert cosine(weather, sunny) == pytest.approx(0.6660, abs=0.02)
    assert cosine(weather, stadium) == pytest.approx(0.1046, abs=0.02)
    assert cosine(sunny, stadium) == pytest.approx(0.1411, abs=0.02)


def test_no_texts_give_no_vectors(minilm: MiniLMEmbedder) -> None:
    assert minilm.embed([]) == []


def test_max_length_truncates_long_texts(
    minilm: MiniLMEmbedder,
) -> None:
    short = MiniLMEmbedder(EmbeddingSettings(max_length=16))
    long_text = BREAD_ANSWER + " " + KAFKA_ANSWER
    prefix_only = short.embed([long_text])[0]
    assert np.linalg.norm(prefix_only) == pytest.approx(1.0, abs=1e-5)
    assert prefix_only != minilm.embed([long_text])[0]


def test_a_missing_model_file_is_a_typed_error(tmp_path: Path) -> None:
    embedder = MiniLMEmbedder(EmbeddingSettings(model_path=tmp_path / "absent.onnx"))
    with pytest.raises(EmbeddingModelLoadError) as caught:
        embedder.embed(["anything"])
    assert not caught.value.retriable


def test_a_corrupt_model_file_is_a_typed_error(tmp_path: Path) -> None:
    corrupt = tmp_path / "model.onnx"
    corrupt.write_bytes(b"not a model")
    with pytest.raises(EmbeddingModelLoadError):
        MiniLMEmbedder(EmbeddingSettings(model_path=corrupt)).load()


def test_hashing_is_deterministic_unit_length_and_word_based() -> None:
    embedder = HashingEmbedder()
    first, again, reordered, other = embedder.embed(
        ["Kafka partitions scale", "Kafka partitions scale", "scale, partitions: KAFKA", "bread"]
    )
    assert first == again == reordered
    assert len(first) == 256
    assert np.linalg.norm(first) == pytest.approx(1.0)
    assert cosine(first, other) < cosine(first, again)


def test_hashing_maps_a_text_without_words_to_the_zero_vector() -> None:
    assert HashingEmbedder(dimensions=8).embed(["  ...  "]) == [[0.0] * 8]
