"""The knowledge store: passages from documents, cosine search, replacing documents."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import pytest

from agents.knowledge import EMBED_BATCH, KnowledgeStore, retrieval_query, split_passages
from agents.router import classify, complexity, plan
from connectors.embeddings import HashingEmbedder

VOCABULARY = ("kafka", "partition", "offset", "paris", "france", "water")


class CountingEmbedder:
    """One dimension per vocabulary word, counting its occurrences (not normalised, on
    purpose: the store must score cosines whatever the scale); records every call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [[float(re.findall(r"\w+", t.lower()).count(w)) for w in VOCABULARY] for t in texts]


def store(documents: dict[str, str], max_chars: int = 800) -> KnowledgeStore:
    return KnowledgeStore(CountingEmbedder(), max_chars).with_documents(documents)


# --- splitting -------------------------------------------------------------------


def test_a_heading_starts_a_passage_and_heads_every_passage_of_its_section() -> None:
    text = "Intro line.\n\n# Kafka\nKafka is a log.\n\nIt has topics.\n## Offsets\nA position.\n"
    assert split_passages(text) == (
        "Intro line.",
        "# Kafka\nKafka is a log.\n\nIt has topics.",
        "## Offsets\nA position.",
    )


def test_paragraphs_are_packed_up_to_the_bound_and_split_beyond_it() -> None:
    paragraphs = [f"Paragraph {n} says something short." for n in range(6)]
    passages = split_passages("## Notes\n\n" + "\n\n".join(paragraphs), max_chars=100)
    assert len(passages) == 3  # two 34-character paragraphs fit under the heading, not three
    assert all(p.startswith("## Notes\n") and len(p) <= 100 for p in passages)
    assert "\n\n".join(p.removeprefix("## Notes\n") for p in passages) == "\n\n".join(paragraphs)


def test_a_long_paragraph_is_cut_at_sentence_ends() -> None:
    sentences = [f"Sentence number {n} ends here." for n in range(20)]
    passages = split_passages(" ".join(sentences), max_chars=100)
    assert all(len(p) <= 100 and p.endswith("ends here.") for p in passages)
    assert " ".join(passages) == " ".join(sentences)


@pytest.mark.parametrize("max_chars", [40, 64, 100, 800])
def test_no_passage_exceeds_the_bound_and_no_word_is_lost(max_chars: int) -> None:
    word = "x" * 150  # longer than any bound: cut inside the word
    text = f"# Title\n\nShort.\n\n{'A rather long sentence without an end ' * 10}\n\n{word} end."
    passages = split_passages(text, max_chars=max_chars)
    assert all(len(p) <= max_chars for p in passages)
    body = "".join(p.removeprefix("# Title\n") for p in passages)
    assert re.sub(r"\s", "", body) == re.sub(r"\s", "", text.removeprefix("# Title"))


def test_a_heading_too_long_to_repeat_is_a_paragraph() -> None:
    heading = "# " + "very long heading " * 4
    passages = split_passages(f"{heading}\n\nBody text.", max_chars=60)
    assert all(len(p) <= 60 for p in passages)
    assert not any(p.startswith(heading.strip() + "\nBody") for p in passages)
    assert passages[-1].endswith("Body text.")


@pytest.mark.parametrize("text", ["", "   \n\n  \n", "# Only a heading\n## And another\n"])
def test_text_without_paragraphs_has_no_passages(text: str) -> None:
    assert split_passages(text) == ()


def test_a_tiny_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 40"):
        split_passages("text", max_chars=39)


# --- the query -----------------------------------------------------------------------


NUMBERED = (
    "Answer the following:\n1. What is a partition?\n2. Why are offsets kept per partition?\n"
    "3. How does a consumer group rebalance?"
)


def test_the_query_of_a_planned_facts_subtask_is_the_users_request() -> None:
    planned = plan(
        NUMBERED, task_class=classify(NUMBERED), complexity=complexity(NUMBERED), session_context=()
    )
    (facts,) = [s for s in planned.subtasks if s.specialist == "retrieval"]
    assert facts.instruction != NUMBERED
    assert retrieval_query(facts.instruction) == NUMBERED


@pytest.mark.parametrize(
    ("instruction", "query"),
    [
        ("What is Kafka?", "What is Kafka?"),
        ("List facts.\n\nRequest: What is Kafka?\n", "What is Kafka?"),
        ("List facts.\nRequest: A\nRequest: B", "A\nRequest: B"),
        ("My Request: is inline", "My Request: is inline"),
    ],
)
def test_the_query_is_the_text_after_the_first_request_line(instruction: str, query: str) -> None:
    assert retrieval_query(instruction) == query


# --- search ----------------------------------------------------------------------------


def test_search_scores_cosines_best_first_with_sources() -> None:
    s = store(
        {
            "kafka.md": "# Kafka\nKafka partition offset.\n\n# France\nParis France.",
            "water.txt": "Water and kafka.",
        }
    )
    found = s.search("kafka partition", k=3)
    assert [p.source for p in found] == ["kafka.md#1", "water.txt#1", "kafka.md#2"]
    # The heading counts: (2,1,1,0,0,0)·(1,1,0,0,0,0) = 3/(√6·√2); water: 1/(√2·√2); France: 0
    assert [p.score for p in found] == pytest.approx([3 / math.sqrt(12), 0.5, 0.0])
    assert found[0].text == "# Kafka\nKafka partition offset."


def test_k_and_min_score_bound_the_results() -> None:
    s = store({"a.md": "kafka partition", "b.md": "kafka", "c.md": "paris"})
    assert [p.source for p in s.search("kafka partition", k=2)] == ["a.md#1", "b.md#1"]
    assert [p.source for p in s.search("kafka partition", k=5, min_score=0.9)] == ["a.md#1"]
    assert s.search("kafka", k=0) == ()


def test_equal_scores_come_in_source_order_whatever_the_insertion_order() -> None:
    same = "Kafka offset."
    first = store({"z.md": same, "a.md": same, "m.md": same})
    second = store({"m.md": same}).with_documents({"a.md": same, "z.md": same})
    for s in (first, second):
        assert [p.source for p in s.search("kafka", k=3)] == ["a.md#1", "m.md#1", "z.md#1"]


def test_an_empty_store_finds_nothing_without_an_embedder() -> None:
    assert KnowledgeStore().search("kafka", k=3) == ()
    assert len(KnowledgeStore()) == 0


def test_a_blank_query_finds_nothing_and_embeds_nothing() -> None:
    embedder = CountingEmbedder()
    s = KnowledgeStore(embedder).with_documents({"a.md": "kafka"})
    assert s.search("  \n", k=3) == ()
    assert len(embedder.calls) == 1  # the indexing batch only


def test_documents_are_embedded_together_in_bounded_batches() -> None:
    embedder = CountingEmbedder()
    KnowledgeStore(embedder, 60).with_documents(
        {"a.md": "# A\nkafka\n\n# B\noffset", "b.md": "paris"}
    )
    assert embedder.calls == [["# A\nkafka", "# B\noffset", "paris"]]
    embedder.calls.clear()
    many = "\n\n".join(f"# Part {n}\nkafka {n}" for n in range(EMBED_BATCH * 2 + 1))
    s = KnowledgeStore(embedder, 60).with_documents({"many.md": many})
    assert [len(call) for call in embedder.calls] == [EMBED_BATCH, EMBED_BATCH, 1]
    assert len(s) == EMBED_BATCH * 2 + 1


def test_a_document_of_the_same_name_replaces_all_its_passages() -> None:
    old = store({"a.md": "# One\nkafka\n\n# Two\noffset", "b.md": "paris"})
    new = old.with_documents({"a.md": "water"})
    assert [p.source for p in new.passages] == ["a.md#1", "b.md#1"]
    assert new.search("kafka offset", k=5, min_score=0.1) == ()
    assert [p.source for p in new.search("water", k=1)] == ["a.md#1"]
    # The old store is untouched: readers holding it see what they saw.
    assert [p.source for p in old.passages] == ["a.md#1", "a.md#2", "b.md#1"]


def test_without_removes_documents() -> None:
    s = store({"a.md": "kafka", "b.md": "paris", "c.md": "water"}).without("a.md", "c.md")
    assert s.documents == ("b.md",)


def test_a_store_without_an_embedder_cannot_index() -> None:
    with pytest.raises(ValueError, match="no embedder"):
        KnowledgeStore().with_documents({"a.md": "kafka"})


def test_a_document_needs_a_name() -> None:
    with pytest.raises(ValueError, match="name"):
        store({"": "kafka"})


class ShortEmbedder(CountingEmbedder):
    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [vector[:3] for vector in super().embed(texts)]


def test_vectors_of_another_width_are_refused() -> None:
    s = store({"a.md": "kafka"})
    with pytest.raises(ValueError, match="widths"):
        KnowledgeStore(ShortEmbedder(), s.max_chars, s.passages).with_documents({"b.md": "x"})


def test_the_hashing_embedder_finds_the_passage_that_shares_the_words() -> None:
    s = KnowledgeStore(HashingEmbedder()).with_documents(
        {
            "science.md": "# Planets\nThere are eight planets in the solar system.",
            "geo.md": "# Capitals\nParis is the capital of France.",
        }
    )
    (best,) = s.search("How many planets are in the solar system?", k=1)
    assert best.source == "science.md#1"
    assert 0.0 < best.score <= 1.0
