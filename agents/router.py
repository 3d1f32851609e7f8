"""Routing rules: what kind of task a prompt is, how complex, and the plan of subtasks.

Transparent keyword/regex rules, no model. A simple request (and a moderate one
with a single ask) is one subtask ``main`` for the ``general`` specialist, exactly
as the single-specialist pipeline runs it. Several asks are split into one subtask
per ask; a complex request also gathers facts (``retrieval``) and lists pitfalls
(``qa``) in parallel; a ``synthesis`` subtask then combines every result.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

TaskClass = Literal["factual", "reasoning", "summarization", "code", "conversation", "creative"]
Level = Literal["simple", "moderate", "complex"]
Specialist = Literal["general", "reasoning", "retrieval", "qa", "synthesis"]

MAX_ASKS = 5
"""More asks than this are not split: one reasoning subtask works through them all."""
MODERATE_AT = 0.3
COMPLEX_AT = 0.6

_I = re.IGNORECASE


@dataclass(frozen=True)
class ClassRule:
    """A prompt matching ``pattern`` is of ``task_class``; rules are tried in order."""

    task_class: TaskClass
    pattern: re.Pattern[str]


RULES: tuple[ClassRule, ...] = (
    ClassRule(
        "code",
        re.compile(
            r"```|\b(?:python|javascript|typescript|java|rust|golang|c\+\+|sql|bash|regex"
            r"|function|method|class|compile[sr]?|stack ?trace|exception|bug|debug|refactor"
            r"|unit tests?|script|api|code|snippet)\b",
            _I,
        ),
    ),
    ClassRule(
        "summarization",
        re.compile(
            r"\b(?:summari[sz]e|summary|tl;?dr|condense|recap|gist|key (?:points|takeaways)"
            r"|in a nutshell|shorten)\b",
            _I,
        ),
    ),
    ClassRule(
        "creative",
        re.compile(
            r"\b(?:poem|haiku|limerick|sonnet|story|stories|lyrics|song|fiction(?:al)?"
            r"|imagine|slogan|tagline|brainstorm|joke|screenplay|metaphor)\b",
            _I,
        ),
    ),
    ClassRule(
        "reasoning",
        re.compile(
            r"\b(?:why|explain|step[- ]by[- ]step|prove|justify|derive|solve|calculate"
            r"|compare|versus|vs\.?|pros and cons|trade-?offs?|difference between"
            r"|should i|what if|what would happen|how (?:does|do|would|could|can))\b"
            r"|\d\s*[-+*/^]\s*\d",
            _I,
        ),
    ),
    ClassRule(
        "factual",
        re.compile(
            r"\b(?:what|who|whom|when|where|which|how (?:many|much|long|old|far|big)"
            r"|define|definition|list|name|tell me about|capital of)\b",
            _I,
        ),
    ),
    ClassRule(
        "conversation",
        re.compile(
            r"^\W*(?:hi|hello|hey|good (?:morning|afternoon|evening)|thanks|thank you"
            r"|how are you|nice to meet)\b|\b(?:i feel|let'?s chat|how are you)\b",
            _I,
        ),
    ),
)


def classify(prompt: str) -> TaskClass:
    """The class of the first matching rule in ``RULES``; else a question is factual,
    anything else conversation."""
    for rule in RULES:
        if rule.pattern.search(prompt):
            return rule.task_class
    return "factual" if prompt.rstrip().endswith("?") else "conversation"


# ---- complexity ---------------------------------------------------------------------

_REASONING_CUES = re.compile(
    r"\b(?:why|explain|step[- ]by[- ]step|prove|justify|derive|analy[sz]e|evaluate"
    r"|reason about|what if|what would happen|how (?:does|do|would|could))\b",
    _I,
)
_COMPARISON = re.compile(
    r"\b(?:compare|comparison|versus|vs\.?|pros and cons|trade-?offs?"
    r"|differences? between)\b",
    _I,
)
_SEQUENCE = re.compile(r"\b(?:then|after that|afterwards|finally|next(?=\s*,))\b", _I)
_ASK_VERBS = (
    r"(?:explain|describe|list|compare|contrast|summari[sz]e|write|give|show|tell|name|define"
    r"|calculate|compute|estimate|solve|prove|evaluate|assess|analy[sz]e|recommend|suggest"
    r"|outline|translate|implement|fix|create|draft|propose|rank|identify|discuss|predict)"
)
_LEAD_WORDS = r"(?:first(?:ly)?|second(?:ly)?|then|next|finally|lastly|also|and|after that)"
_LEAD = rf"(?:{_LEAD_WORDS}\W+)?"
_LEAD_ONLY = re.compile(rf"^\W*{_LEAD_WORDS}?\W*$", _I)
_ASK_START = re.compile(
    rf"^\W*{_LEAD}(?:{_ASK_VERBS}|what|who|whom|when|where|which|why|how|can|could|should|would"
    r"|is|are|do|does|did|will)\b",
    _I,
)
# A clause boundary followed by an ask verb: "..., and then translate it", "... and list ...".
_CLAUSE_SPLIT = re.compile(
    rf"(?:\s*[,;]\s*(?:and\s+)?(?:then\s+)?|\s+and\s+(?:then\s+)?|\s+then\s+)(?={_ASK_VERBS}\b)",
    _I,
)
_SENTENCE_SPLIT = re.compile(r"(?<=[?!.])\s+(?=\S)")
_LIST_ITEM = re.compile(r"^\s*(?:\d{1,2}[.)]|[a-h][.)]|[-*\u2022])\s+(?P<item>\S.*)$")
_FENCE = re.compile(r"```.*?(?:```|$)", re.DOTALL)
_LEAD_IN = re.compile(r":[ \t]*\n")


class Complexity(BaseModel):
    """A score in [0, 1], its level, and the features it was computed from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    score: float = Field(ge=0.0, le=1.0)
    level: Level
    words: int
    questions: int
    asks: int
    reasoning_cues: int
    structure: int
    """Comparisons, sequencing words ("and then", "finally") and an enumerated list."""


def instructions_of(prompt: str) -> str:
    """The part of a prompt that asks for something: code fences and the material after
    a lead-in ending in ':' (unless that material is a list of asks) are left out."""
    text = _FENCE.sub(" ", prompt)
    head, *rest = _LEAD_IN.split(text, maxsplit=1)
    if rest and len(_list_items(rest[0])) < 2:
        return head
    return text


def split_asks(prompt: str) -> tuple[str, ...]:
    """The distinct asks of a prompt: list items that ask, else sentences that ask, each
    cut further at a clause boundary followed by an ask verb ("..., and then list ...")."""
    text = instructions_of(prompt)
    items = [i for i in _list_items(text) if _ASK_START.search(i) or i.endswith("?")]
    if len(items) >= 2:
        return tuple(items)
    asks: list[str] = []
    for sentence in _SENTENCE_SPLIT.split(" ".join(text.split())):
        if sentence.endswith("?") or _ASK_START.search(sentence):
            asks += [
                c.strip(" ,;") for c in _CLAUSE_SPLIT.split(sentence) if not _LEAD_ONLY.match(c)
            ]
    return tuple(asks) or (" ".join(prompt.split()),)


def _list_items(text: str) -> list[str]:
    return [m["item"].strip() for line in text.splitlines() if (m := _LIST_ITEM.match(line))]


def complexity(prompt: str) -> Complexity:
    """Weighted features: length 0.15 (150 words = full), asks 0.35 (3 asks = full),
    reasoning cues 0.3 (2 = full), structure 0.2 (2 = full). Simple below 0.3,
    complex from 0.6."""
    text = instructions_of(prompt)
    words, asks = len(prompt.split()), len(split_asks(prompt))
    cues = len(_REASONING_CUES.findall(text))
    structure = len(_COMPARISON.findall(text)) + len(_SEQUENCE.findall(text))
    structure += 1 if len(_list_items(text)) >= 2 else 0
    score = _score(words, asks, cues, structure)
    return Complexity(
        score=score,
        level="complex"
        if score >= COMPLEX_AT
        else "moderate"
        if score >= MODERATE_AT
        else "simple",
        words=words,
        questions=len(re.findall(r"\?+", text)),
        asks=asks,
        reasoning_cues=cues,
        structure=structure,
    )


def _score(words: int, asks: int, cues: int, structure: int) -> float:
    score = (
        0.15 * min(words / 150, 1.0)
        + 0.35 * min((asks - 1) / 2, 1.0)
        + 0.3 * min(cues / 2, 1.0)
        + 0.2 * min(structure / 2, 1.0)
    )
    return round(min(max(score, 0.0), 1.0), 4)


# ---- plans --------------------------------------------------------------------------


class Subtask(BaseModel):
    """One unit of work for one specialist; ``subtask`` is the id in ``TaskAssigned``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subtask: str = Field(pattern=r"^[a-z][a-z0-9-]{0,31}$")
    specialist: Specialist
    instruction: str
    depends_on: tuple[str, ...] = ()


class Plan(BaseModel):
    """The subtasks of one request; a subtask runs once everything it depends on is done."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task_class: TaskClass
    complexity: Complexity
    subtasks: tuple[Subtask, ...] = Field(min_length=1)
    context: tuple[str, ...] = ()
    """The session context every subtask's ``TaskAssigned.context`` carries."""

    @model_validator(mode="after")
    def _dependencies_come_first(self) -> Self:
        seen: set[str] = set()
        for s in self.subtasks:
            if s.subtask in seen:
                raise ValueError(f"duplicate subtask {s.subtask!r}")
            if missing := set(s.depends_on) - seen:
                raise ValueError(f"{s.subtask!r} depends on unknown or later {sorted(missing)}")
            seen.add(s.subtask)
        return self

    @property
    def single(self) -> bool:
        return len(self.subtasks) == 1


def route_request(prompt: str, context: Sequence[str] = (), *, decompose: bool = True) -> Plan:
    """The plan of a request: its class, its complexity, and its subtasks (always one
    ``main`` subtask when ``decompose`` is off)."""
    task_class, level = classify(prompt), complexity(prompt)
    if not decompose:
        main = Subtask(subtask="main", specialist="general", instruction=prompt)
        return Plan(
            task_class=task_class, complexity=level, subtasks=(main,), context=tuple(context)
        )
    return plan(prompt, task_class=task_class, complexity=level, session_context=context)


def ready(plan: Plan, done: Collection[str]) -> tuple[Subtask, ...]:
    """The subtasks not done yet whose dependencies all are."""
    return tuple(
        s for s in plan.subtasks if s.subtask not in done and set(s.depends_on) <= set(done)
    )


def plan(
    prompt: str, *, task_class: TaskClass, complexity: Complexity, session_context: Sequence[str]
) -> Plan:
    """Simple, or one ask: ``main``/general. Moderate with several asks: one subtask per
    ask, then synthesis. Complex: facts (retrieval, not for summaries), the asks (or one
    reasoning subtask), pitfalls (qa), in parallel; then synthesis over all of them."""
    asks = split_asks(prompt)
    context = tuple(session_context)
    if complexity.level == "simple" or (complexity.level == "moderate" and len(asks) < 2):
        main = Subtask(subtask="main", specialist="general", instruction=prompt)
        return Plan(task_class=task_class, complexity=complexity, subtasks=(main,), context=context)
    note = _CONTEXT_NOTE if context else ""
    work = _work(prompt, asks, task_class, note)
    if complexity.level == "complex":
        work = (*_facts(prompt, task_class, note), *work, _pitfalls(prompt, task_class, note))
    final = Subtask(
        subtask="synthesis",
        specialist="synthesis",
        instruction=_combine_rule(tuple(s.subtask for s in work)),
        depends_on=tuple(s.subtask for s in work),
    )
    return Plan(
        task_class=task_class, complexity=complexity, subtasks=(*work, final), context=context
    )


_CONTEXT_NOTE = "This continues the conversation given as context.\n"


def _work(
    prompt: str, asks: tuple[str, ...], task_class: TaskClass, note: str
) -> tuple[Subtask, ...]:
    if not 2 <= len(asks) <= MAX_ASKS:
        text = f"{note}Work out the answer to this request step by step.\n\nRequest: {prompt}"
        return (Subtask(subtask="reasoning", specialist="reasoning", instruction=text),)
    return tuple(
        Subtask(
            subtask=f"ask-{n}",
            specialist=_ask_specialist(ask, task_class),
            instruction=f"{note}Answer only this part: {ask}\n\nThe full request: {prompt}",
        )
        for n, ask in enumerate(asks, start=1)
    )


def _ask_specialist(ask: str, task_class: TaskClass) -> Specialist:
    thinking = _REASONING_CUES.search(ask) or _COMPARISON.search(ask)
    return "reasoning" if thinking or task_class == "code" else "general"


def _facts(prompt: str, task_class: TaskClass, note: str) -> tuple[Subtask, ...]:
    if task_class == "summarization":  # the material is in the prompt already
        return ()
    text = (
        f"{note}List the facts, definitions and figures needed to answer the request below, "
        f"one per line. Do not answer it.\n\nRequest: {prompt}"
    )
    return (Subtask(subtask="facts", specialist="retrieval", instruction=text),)


_PITFALLS: Mapping[TaskClass, str] = {
    "code": "bugs, unhandled edge cases and insecure patterns",
    "summarization": "omitted key points, distortions and added claims",
    "creative": "ignored constraints (form, length, tone) and clichés",
}


def _pitfalls(prompt: str, task_class: TaskClass, note: str) -> Subtask:
    risks = _PITFALLS.get(task_class, "factual errors, missed parts and faulty reasoning")
    text = (
        f"{note}List the mistakes an answer to the request below is likely to make "
        f"({risks}), one per line. Do not answer it.\n\nRequest: {prompt}"
    )
    return Subtask(subtask="pitfalls", specialist="qa", instruction=text)


def _combine_rule(ids: tuple[str, ...]) -> str:
    asks = [i for i in ids if i.startswith("ask-")]
    parts = [f"Answer every part in order ({', '.join(asks)})." if asks else ""]
    if "facts" in ids:
        parts.append("Rely on the facts from 'facts'; drop any claim they contradict.")
    if "pitfalls" in ids:
        parts.append("Avoid every mistake 'pitfalls' lists.")
    parts.append("Write one coherent answer; do not mention notes or specialists.")
    return " ".join(p for p in parts if p)


def synthesis_instruction(
    original_prompt: str, results: Mapping[str, str], *, max_note_chars: int = 2000
) -> str:
    """The synthesis task's instruction: the original request and every subtask's result,
    facts first, then the asks in order, pitfalls last (independent of arrival order)."""
    ids = tuple(sorted(results, key=_note_order))
    notes = "\n\n".join(
        f"[{sid}]\n{_clip(results[sid], max_note_chars) or '(no answer)'}" for sid in ids
    )
    return (
        f"Write one answer to the original request using the notes below. "
        f"{_combine_rule(ids)}{_ORIGINAL}{original_prompt}{_NOTES}{notes}"
    )


_ORIGINAL = "\n\nOriginal request:\n"
_NOTES = "\n\nNotes:\n"
EARLIER_RESULTS = "\n\nResults of the earlier steps:\n"
"""Where a dependent subtask's instruction ends and the results it builds on begin."""


def asked_in(instruction: str) -> str:
    """What a task's instruction asks, without the notes or earlier results it carries
    (an answer may repeat those; it should not merely repeat the question)."""
    start = instruction.find(_ORIGINAL)
    if start >= 0:
        start += len(_ORIGINAL)
        end = instruction.find(_NOTES, start)
        return instruction[start : end if end >= 0 else None]
    return instruction.split(EARLIER_RESULTS, 1)[0]


def _note_order(subtask: str) -> tuple[int, int, str]:
    rank = {"facts": 0, "reasoning": 2, "pitfalls": 3}.get(subtask, 1)
    number = int(subtask[4:]) if subtask.startswith("ask-") and subtask[4:].isdigit() else 0
    return rank, number, subtask


def _clip(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
