"""Loads the knowledge store from a folder of ``*.md`` and ``*.txt`` files."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Final

from agents.knowledge import DEFAULT_MAX_CHARS, KnowledgeStore
from agents.ports import Embedder
from schemas.errors import GuardianError

_log = logging.getLogger(__name__)
SUFFIXES: Final = frozenset({".md", ".txt"})


class KnowledgeLoadError(GuardianError):
    """The knowledge folder or one of its files cannot be read; fix the path or the file."""

    retriable = False


def knowledge_files(directory: Path) -> list[Path]:
    """The ``*.md``/``*.txt`` files under ``directory`` (recursively, hidden ones skipped),
    in path order."""
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise KnowledgeLoadError(f"knowledge directory {directory} {what}")
    return sorted(
        path
        for path in directory.rglob("*")
        if path.suffix.lower() in SUFFIXES
        and (path.is_file() or path.is_symlink())  # a dangling link fails to read, loudly
        and not any(part.startswith(".") for part in path.relative_to(directory).parts)
    )


def read_documents(directory: Path) -> dict[str, str]:
    """Each knowledge file's text by its path relative to ``directory`` (``/``-separated)."""
    documents: dict[str, str] = {}
    for path in knowledge_files(directory):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise KnowledgeLoadError(f"cannot read knowledge file {path}: {exc}") from exc
        documents[path.relative_to(directory).as_posix()] = text
    return documents


def load_knowledge(
    directory: Path, embedder: Embedder, *, max_chars: int = DEFAULT_MAX_CHARS
) -> KnowledgeStore:
    """A store of every knowledge file under ``directory``, embedded with ``embedder``."""
    started = time.perf_counter()
    documents = read_documents(directory)
    store = KnowledgeStore(embedder, max_chars).with_documents(documents)
    _log.info(
        "knowledge store: %d passages from %d files in %s (%.2fs)",
        len(store),
        len(documents),
        directory,
        time.perf_counter() - started,
    )
    return store
