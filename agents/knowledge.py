"""The retrieval specialist's knowledge store: documents split into passages, embedded
once, searched by cosine similarity. Pure: files are read and embedders built elsewhere."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from agents.ports import Embedder
from schemas.request_events import Passage

RETRIEVAL: Final = "retrieval"
"""The specialist whose tasks are answered with passages from the store."""
DEFAULT_MAX_CHARS: Final = 800
EMBED_BATCH: Final = 64
"""Passages per embedder call: a model's memory grows with the batch."""
_HEADING: Final = re.compile(r"^#{1,6}\s+\S")
_SENTENCE_END: Final = re.compile(r"(?<=[.!?])\s+")
_REQUEST: Final = re.compile(r"^Request:[ \t]*", re.MULTILINE)


def retrieval_query(instruction: str) -> str:
    """What to search for: the text after the first line starting ``Request:`` (where a
    plan quotes the user's request), else the whole instruction."""
    found = _REQUEST.search(instruction)
    return (instruction[found.end() :] if found else instruction).strip()


def split_passages(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> tuple[str, ...]:
    """``text`` as passages of at most ``max_chars``. A Markdown heading starts a section
    and heads each passage of it; a section's paragraphs are packed together up to the
    bound; a longer paragraph is cut at sentence ends, then between words."""
    if max_chars < 40:
        raise ValueError("max_chars must be at least 40")
    passages: list[str] = []
    for heading, paragraphs in _sections(text):
        if len(heading) > max_chars // 2:  # too long to repeat: it is a paragraph
            heading, paragraphs = "", [heading, *paragraphs]
        budget = max_chars - len(heading) - 1 if heading else max_chars
        pieces = [p for paragraph in paragraphs for p in _cut(paragraph, budget)]
        for body in _pack(pieces, budget, "\n\n"):
            passages.append(f"{heading}\n{body}" if heading else body)
    return tuple(passages)


def _sections(text: str) -> list[tuple[str, list[str]]]:
    """(heading, paragraphs) in order; text before the first heading has heading ``""``."""
    sections: list[tuple[str, list[str]]] = [("", [])]
    lines: list[str] = []

    def end_paragraph() -> None:
        if lines:
            sections[-1][1].append("\n".join(lines))
            lines.clear()

    for raw in text.splitlines():
        line = raw.rstrip()
        if _HEADING.match(line):
            end_paragraph()
            sections.append((line, []))
        elif line.strip():
            lines.append(line)
        else:
            end_paragraph()
    end_paragraph()
    return [(heading, paragraphs) for heading, paragraphs in sections if paragraphs]


def _cut(paragraph: str, limit: int) -> list[str]:
    if len(paragraph) <= limit:
        return [paragraph]
    units: list[str] = []
    for sentence in _SENTENCE_END.split(paragraph):
        if len(sentence) <= limit:
            units.append(sentence)
            continue
        for word in sentence.split():
            units += [word[i : i + limit] for i in range(0, len(word), limit)]
    return _pack(units, limit, " ")


def _pack(units: Iterable[str], limit: int, separator: str) -> list[str]:
    """Consecutive units joined by ``separator`` into as few pieces within ``limit`` as
    greedy packing gives (every unit is within the limit already)."""
    pieces: list[str] = []
    current = ""
    for unit in units:
        joined = f"{current}{separator}{unit}" if current else unit
        if len(joined) <= limit:
            current = joined
        else:
            pieces.append(current)
            current = unit
    if current:
        pieces.append(current)
    return pieces


@dataclass(frozen=True)
class IndexedPassage:
    """One passage of a document, with its unit-length embedding."""

    document: str
    number: int
    """1-based position in its document."""
    text: str
    vector: tuple[float, ...]

    @property
    def source(self) -> str:
        return f"{self.document}#{self.number}"


@dataclass(frozen=True)
class KnowledgeStore:
    """Named documents as embedded passages. Immutable: adding or removing a document
    returns a new store, so a reader never sees one half-updated.

    Search is exact (every passage is scored), meant for knowledge bases of up to some
    thousands of passages.
    """

    embedder: Embedder | None = field(default=None, compare=False, repr=False)
    """Embeds passages and queries alike; a store without one can only be empty."""
    max_chars: int = DEFAULT_MAX_CHARS
    passages: tuple[IndexedPassage, ...] = ()

    @property
    def documents(self) -> tuple[str, ...]:
        return tuple(sorted({p.document for p in self.passages}))

    def with_documents(self, documents: Mapping[str, str]) -> KnowledgeStore:
        """This store with each named document added, or replacing the one of that name
        (all its passages); new passages are embedded ``EMBED_BATCH`` at a time."""
        if any(not name for name in documents):
            raise ValueError("a document needs a name")
        split = [(name, split_passages(text, self.max_chars)) for name, text in documents.items()]
        texts = [text for _, passages in split for text in passages]
        vectors = iter(self._embed(texts))
        added = [
            IndexedPassage(name, number, text, next(vectors))
            for name, passages in split
            for number, text in enumerate(passages, start=1)
        ]
        return self._holding([*self.without(*documents).passages, *added])

    def without(self, *names: str) -> KnowledgeStore:
        """This store without the named documents."""
        gone = set(names)
        return self._holding([p for p in self.passages if p.document not in gone])

    def _holding(self, passages: Sequence[IndexedPassage]) -> KnowledgeStore:
        """A store of the same embedder and bound holding ``passages``, in source order."""
        ordered = sorted(passages, key=lambda p: (p.document, p.number))
        return KnowledgeStore(self.embedder, self.max_chars, tuple(ordered))

    def search(self, query: str, *, k: int, min_score: float = -1.0) -> tuple[Passage, ...]:
        """The ``k`` passages most similar to ``query`` with a cosine of at least
        ``min_score``, best first; equal scores in source order."""
        if k < 1 or not self.passages or not query.strip():
            return ()
        (vector,) = self._embed([query])
        scored = [(_dot(vector, p.vector), p) for p in self.passages]
        kept = [(score, p) for score, p in scored if score >= min_score]
        kept.sort(key=lambda sp: (-sp[0], sp[1].document, sp[1].number))
        return tuple(Passage(source=p.source, text=p.text, score=s) for s, p in kept[:k])

    def _embed(self, texts: Sequence[str]) -> list[tuple[float, ...]]:
        if not texts:
            return []
        if self.embedder is None:
            raise ValueError("this knowledge store has no embedder")
        vectors = [
            _unit(v)
            for start in range(0, len(texts), EMBED_BATCH)
            for v in self.embedder.embed(texts[start : start + EMBED_BATCH])
        ]
        widths = {len(v) for v in vectors} | {len(p.vector) for p in self.passages[:1]}
        if len(vectors) != len(texts) or len(widths) != 1:
            raise ValueError(f"embedder returned {len(vectors)} vectors of widths {widths}")
        return vectors

    def __len__(self) -> int:
        return len(self.passages)


def _unit(vector: Sequence[float]) -> tuple[float, ...]:
    """``vector`` scaled to length 1 (a zero vector stays zero), so a dot is a cosine."""
    norm = math.sqrt(math.fsum(x * x for x in vector))
    return tuple(x / norm for x in vector) if norm else tuple(float(x) for x in vector)


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    total: float = sum(map(operator.mul, a, b))
    return max(-1.0, min(1.0, total))
