"""Loading the knowledge store from a folder, the shipped sample, and its settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from connectors.cache_store import CacheSettings
from connectors.embeddings import HashingEmbedder
from connectors.knowledge_files import (
    KnowledgeLoadError,
    knowledge_files,
    load_knowledge,
    read_documents,
)
from streams.app import build_ports
from streams.settings import AppSettings, GuardianSettings, KnowledgeSettings, ModelSettings

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "deploy" / "knowledge"


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_markdown_and_text_files_are_read_recursively_by_relative_name(tmp_path: Path) -> None:
    write(tmp_path / "b.md", "# B\nBee.")
    write(tmp_path / "sub" / "a.TXT", "Ay.")
    write(tmp_path / "notes.rst", "not knowledge")
    write(tmp_path / ".hidden" / "c.md", "hidden")
    write(tmp_path / ".draft.md", "hidden too")
    (tmp_path / "folder.md").mkdir()
    assert read_documents(tmp_path) == {"b.md": "# B\nBee.", "sub/a.TXT": "Ay."}


def test_the_store_holds_the_passages_of_every_file(tmp_path: Path) -> None:
    write(tmp_path / "kafka.md", "# Topics\nA topic is a log.\n\n# Offsets\nA position.")
    write(tmp_path / "france.txt", "Paris is the capital of France.")
    store = load_knowledge(tmp_path, HashingEmbedder())
    assert [p.source for p in store.passages] == ["france.txt#1", "kafka.md#1", "kafka.md#2"]
    (best,) = store.search("What is the capital of France?", k=1)
    assert (best.source, best.text) == ("france.txt#1", "Paris is the capital of France.")


def test_an_empty_folder_is_an_empty_store(tmp_path: Path) -> None:
    assert len(load_knowledge(tmp_path, HashingEmbedder())) == 0


def test_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(KnowledgeLoadError, match=re.escape(f"{missing} does not exist")) as caught:
        load_knowledge(missing, HashingEmbedder())
    assert caught.value.retriable is False


def test_a_file_in_place_of_the_folder_is_a_clear_error(tmp_path: Path) -> None:
    file = write(tmp_path / "kb.md", "text")
    with pytest.raises(KnowledgeLoadError, match="is not a directory"):
        knowledge_files(file)


def test_a_file_that_is_not_utf8_is_named_in_the_error(tmp_path: Path) -> None:
    write(tmp_path / "good.md", "fine")
    bad = write(tmp_path / "bad.md", b"caf\xe9 latin-1")
    with pytest.raises(KnowledgeLoadError, match=re.escape(f"cannot read knowledge file {bad}")):
        read_documents(tmp_path)


def test_a_dangling_link_is_an_unreadable_file_not_a_silent_gap(tmp_path: Path) -> None:
    (tmp_path / "gone.md").symlink_to(tmp_path / "deleted.md")
    with pytest.raises(KnowledgeLoadError, match=re.escape("gone.md")):
        read_documents(tmp_path)


@pytest.mark.parametrize(
    ("question", "source"),
    [
        ("What is the capital of France?", "geography.md#1"),
        ("How many planets are in the solar system?", "science.md#2"),
        ("Who wrote the play Romeo and Juliet?", "literature.md#1"),
        ("What is the boiling point of water at sea level?", "science.md#1"),
        ("How does a consumer group rebalance?", "kafka.md#4"),
    ],
)
def test_the_sample_knowledge_answers_the_questions_the_demo_and_tests_ask(
    question: str, source: str
) -> None:
    store = load_knowledge(SAMPLE, HashingEmbedder())
    assert store.search(question, k=1)[0].source == source


def test_the_knowledge_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert KnowledgeSettings().dir is None
    assert KnowledgeSettings().top_k == 3
    monkeypatch.setenv("GUARDIAN_KNOWLEDGE_DIR", str(SAMPLE))
    monkeypatch.setenv("GUARDIAN_KNOWLEDGE_TOP_K", "5")
    monkeypatch.setenv("GUARDIAN_KNOWLEDGE_MIN_SCORE", "0.4")
    assert KnowledgeSettings() == KnowledgeSettings(dir=SAMPLE, top_k=5, min_score=0.4)


def _settings(knowledge: KnowledgeSettings) -> AppSettings:
    return AppSettings(
        model=ModelSettings(backend="scripted"),
        guard=GuardianSettings(embedder="hashing", pii_check=False),
        cache=CacheSettings(backend="off"),
        knowledge=knowledge,
    )


def test_the_worker_ports_hold_the_configured_knowledge() -> None:
    ports = build_ports(_settings(KnowledgeSettings(dir=SAMPLE, max_passage_chars=200)))
    assert ports.knowledge.documents == (
        "geography.md",
        "kafka.md",
        "literature.md",
        "science.md",
    )
    assert all(len(p.text) <= 200 for p in ports.knowledge.passages)
    assert ports.knowledge.embedder is ports.embedder


def test_without_a_folder_the_worker_ports_hold_an_empty_store() -> None:
    assert len(build_ports(_settings(KnowledgeSettings())).knowledge) == 0


def test_a_worker_pointed_at_a_missing_folder_does_not_start(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeLoadError, match="does not exist"):
        build_ports(_settings(KnowledgeSettings(dir=tmp_path / "typo")))
