"""Verifiable constraints: requirements an answer can be checked against exactly.

Users' prompts are full of them ("in at most 50 words", "answer in JSON", "end with
'Is there anything else?'", "use exactly 3 bullet points"). ``stated_in`` finds the
common ones in plain English; ``check`` decides each one on an answer and, when it
fails, says by how much and what to change. Pure: no clock, no model, no network.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal, cast, get_args

import jsonschema  # type: ignore[import-untyped]

from agents.router import asked_in
from schemas.request_events import Constraint as Declared

Kind = Literal[
    "json",
    "words",
    "sentences",
    "paragraphs",
    "bullets",
    "keyword",
    "forbidden",
    "starts_with",
    "ends_with",
    "lowercase",
    "uppercase",
    "no_commas",
    "regex",
    "placeholders",
    "language",
]
Relation = Literal["at_least", "at_most", "exactly"]
KINDS: tuple[str, ...] = get_args(Kind)
RELATIONS: tuple[str, ...] = get_args(Relation)
_COUNTED = frozenset({"words", "sentences", "paragraphs", "bullets", "keyword", "placeholders"})
_NEEDS_TEXT = frozenset({"keyword", "forbidden", "starts_with", "ends_with", "regex", "language"})


@dataclass(frozen=True)
class Constraint:
    """One exactly checkable requirement. ``count`` and ``relation`` bound a count (of
    words, sentences, paragraphs, bullets, or a keyword's occurrences); ``text`` is the
    keyword, phrase or pattern."""

    kind: Kind
    relation: Relation = "exactly"
    count: int = 0
    text: str = ""
    source: str = "prompt"
    """Where it came from: ``prompt`` (stated in the request's text) or ``client``."""
    schema: str = ""
    """For ``json``: a JSON Schema (JSON text) the answer must validate against."""

    def describe(self) -> str:
        what = {
            "json": "valid JSON matching the given schema" if self.schema else "valid JSON",
            "words": f"{_bound(self)} words",
            "sentences": f"{_bound(self)} sentences",
            "paragraphs": f"{_bound(self)} paragraphs",
            "bullets": f"{_bound(self)} bullet points",
            "keyword": f"'{self.text}' {_bound(self)} times",
            "forbidden": f"no '{self.text}'",
            "starts_with": f"starts with '{self.text}'",
            "ends_with": f"ends with '{self.text}'",
            "lowercase": "all lowercase",
            "uppercase": "all uppercase",
            "no_commas": "no commas",
            "regex": f"matches /{self.text}/",
            "placeholders": f"{_bound(self)} [placeholders] in square brackets",
            "language": f"written in language '{self.text}'",
        }[self.kind]
        return what


def _bound(c: Constraint) -> str:
    return {"at_least": "at least", "at_most": "at most", "exactly": "exactly"}[c.relation] + (
        f" {c.count}"
    )


@dataclass(frozen=True)
class Checked:
    constraint: Constraint
    passed: bool
    found: str
    """What the answer has (``58 words``)."""
    fix: str = ""
    """What to change, when it failed."""


# --- checking -------------------------------------------------------------------------

_WORDS = re.compile(r"\b[\w'’-]+\b", re.UNICODE)
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+\S", re.MULTILINE)


def word_count(text: str) -> int:
    return len(_WORDS.findall(text))


def sentence_count(text: str) -> int:
    stripped = text.strip()
    if not stripped:
        return 0
    ends = len(_SENTENCE_END.findall(stripped))
    return ends + (0 if _SENTENCE_END.search(stripped[-1:] + " ") else 1)


def paragraph_count(text: str) -> int:
    return len([p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()])


def bullet_count(text: str) -> int:
    return len(_BULLET.findall(text))


_PLACEHOLDER = re.compile(r"\[[^\[\]\n]+\]")


def placeholder_count(text: str) -> int:
    return len(_PLACEHOLDER.findall(text))


def keyword_count(text: str, keyword: str) -> int:
    pattern = r"(?<!\w)" + re.escape(keyword.lower()) + r"(?!\w)"
    return len(re.findall(pattern, text.lower()))


_COUNTERS: dict[str, tuple[Callable[[str], int], str]] = {
    "words": (word_count, "words"),
    "sentences": (sentence_count, "sentences"),
    "paragraphs": (paragraph_count, "paragraphs"),
    "bullets": (bullet_count, "bullet points"),
    "placeholders": (placeholder_count, "placeholders"),
}


def check(c: Constraint, answer: str) -> Checked:
    """Whether ``answer`` meets ``c``; when not, what it has and what to change."""
    if c.kind in _COUNTERS:
        count, unit = _COUNTERS[c.kind]
        return _counted(c, count(answer), unit)
    if c.kind == "keyword":
        return _counted(c, keyword_count(answer, c.text), f"times '{c.text}'", word=c.text)
    if c.kind == "forbidden":
        n = keyword_count(answer, c.text)
        return Checked(c, n == 0, f"'{c.text}' {n} times", f"remove every '{c.text}'")
    if c.kind == "json":
        return _json(c, answer)
    if c.kind == "starts_with":
        ok = _plain(answer).startswith(_plain(c.text))
        return Checked(c, ok, f"starts with '{answer.strip()[:30]}'", f"begin with '{c.text}'")
    if c.kind == "ends_with":
        ok = _plain(answer).endswith(_plain(c.text))
        return Checked(c, ok, f"ends with '{answer.strip()[-30:]}'", f"end with exactly '{c.text}'")
    if c.kind == "lowercase":
        ok = answer == answer.lower()
        return Checked(c, ok, "has capital letters", "write everything in lowercase letters")
    if c.kind == "uppercase":
        ok = answer == answer.upper()
        return Checked(c, ok, "has lowercase letters", "write everything in capital letters")
    if c.kind == "no_commas":
        n = answer.count(",")
        return Checked(c, n == 0, f"{n} commas", "remove every comma")
    if c.kind == "language":
        found = detected_language(answer)
        return Checked(c, found == c.text, f"written in '{found}'", f"write it in '{c.text}'")
    # regex
    ok = re.search(c.text, answer) is not None
    return Checked(c, ok, "no match", f"make the answer match /{c.text}/")


def _counted(c: Constraint, n: int, unit: str, *, word: str = "") -> Checked:
    found = f"'{word}' {n} times" if word else f"{n} {unit}"
    if c.relation == "at_least":
        ok, change = n >= c.count, f"add {c.count - n} or more"
    elif c.relation == "at_most":
        ok, change = n <= c.count, f"cut {n - c.count} or more"
    else:
        ok = n == c.count
        change = f"add {c.count - n}" if n < c.count else f"cut {n - c.count}"
    allowed = f"{_bound(c)} {'times' if word else unit} {'are' if not word else 'is'} required"
    if c.relation == "at_most":
        allowed = f"{_bound(c)} {'times' if word else unit} {'are' if not word else 'is'} allowed"
    return Checked(c, ok, found, f"{found}; {allowed}: {change}")


def json_problem(text: str) -> str:
    """Why ``text`` is not valid JSON ("" when it is)."""
    try:
        json.loads(text)
    except ValueError as exc:  # JSONDecodeError, or a number too long to convert
        return f"not valid JSON ({exc})"
    return ""


def _json(c: Constraint, answer: str) -> Checked:
    problem = json_problem(answer)
    if not problem and c.schema:
        problem = _schema_problem(json.loads(answer), c.schema)
    fix = "answer with JSON that matches the schema" if c.schema else "answer with valid JSON only"
    return Checked(c, not problem, problem or "valid JSON", fix)


def _schema_problem(value: Any, schema: str) -> str:
    error = jsonschema.exceptions.best_match(_validator(schema).iter_errors(value))
    if error is None:
        return ""
    where = "/".join(str(p) for p in error.absolute_path) or "the top level"
    return f"JSON that does not match the schema at {where}: {error.message}"


@cache
def _validator(schema: str) -> Any:
    loaded = json.loads(schema)
    return jsonschema.validators.validator_for(loaded)(loaded)


def detected_language(text: str) -> str:
    """The ISO 639-1 code of the language ``text`` is written in ("" when it has no
    letters). Deterministic: the detector is seeded."""
    import langdetect  # type: ignore[import-untyped]

    langdetect.DetectorFactory.seed = 0
    try:
        return str(langdetect.detect(text))
    except langdetect.LangDetectException:
        return ""


# --- constraints a client declares ----------------------------------------------------


def declared_problems(declared: Sequence[Declared]) -> list[str]:
    """Why each declared constraint cannot be checked (empty: all can). For intake's
    rejection of a bad request, one line per problem."""
    problems = []
    for i, d in enumerate(declared):
        where = f"constraints[{i}] ({d.kind})"
        if d.kind not in KINDS:
            problems.append(f"{where}: kind must be one of {', '.join(KINDS)}")
            continue
        if d.kind in _COUNTED and d.relation not in RELATIONS:
            problems.append(f"{where}: relation must be one of {', '.join(RELATIONS)}")
        if d.kind in _COUNTED and d.count < 0:
            problems.append(f"{where}: count must be 0 or more, not {d.count}")
        if d.kind in _NEEDS_TEXT and not d.text.strip():
            problems.append(f"{where}: text must name the keyword, phrase, pattern or language")
        if d.kind == "regex":
            try:
                re.compile(d.text)
            except re.error as exc:
                problems.append(f"{where}: text is not a valid regular expression ({exc})")
        if d.kind == "language" and d.text not in _languages():
            problems.append(f"{where}: text must be an ISO 639-1 code the detector knows")
        if d.json_schema is not None:
            problem = _bad_schema(d.json_schema) if d.kind == "json" else "only kind json has one"
            if problem:
                problems.append(f"{where}: json_schema {problem}")
    return problems


def _bad_schema(schema: str) -> str:
    try:
        loaded = json.loads(schema)
        jsonschema.validators.validator_for(loaded).check_schema(loaded)
    except ValueError as exc:
        return f"is not JSON ({exc})"
    except jsonschema.exceptions.SchemaError as exc:
        return f"is not a valid JSON Schema ({exc.message})"
    return ""


@cache
def _languages() -> frozenset[str]:
    import langdetect.detector_factory as factory  # type: ignore[import-untyped]

    return frozenset(p.name for p in Path(factory.PROFILES_DIRECTORY).iterdir())


def from_declared(d: Declared) -> Constraint:
    """A declared constraint (already free of ``declared_problems``) as a checkable one."""
    return Constraint(
        kind=cast(Kind, d.kind),
        relation=cast(Relation, d.relation if d.relation in RELATIONS else "exactly"),
        count=d.count,
        text=d.text,
        source=d.source,
        schema=d.json_schema or "",
    )


def to_declared(c: Constraint) -> Declared:
    return Declared(
        kind=c.kind,
        relation=c.relation,
        count=c.count,
        text=c.text,
        json_schema=c.schema or None,
        source=c.source,
    )


def applying(declared: Sequence[Declared], prompt: str) -> tuple[Constraint, ...]:
    """What an answer to ``prompt`` must meet: the client's constraints, then those the
    prompt states in plain English that the client did not already declare."""
    client = tuple(from_declared(d) for d in declared)
    same = {(c.kind, c.relation, c.count, c.text.lower()) for c in client}
    stated = tuple(
        c for c in stated_in(prompt) if (c.kind, c.relation, c.count, c.text.lower()) not in same
    )
    return client + stated


ANSWERING_SUBTASKS = frozenset({"main", "synthesis"})
"""The subtasks whose answer becomes the response: the request's constraints apply to
them, not to the notes a decomposed request gathers first."""


def answer_constraints(
    subtask: str, declared: Sequence[Declared], instruction: str
) -> tuple[Constraint, ...]:
    """What the answer of a task of ``subtask`` with ``instruction`` must meet: the
    request's ``declared`` constraints and those its prompt states, on a subtask whose
    answer becomes the response; nothing on a decomposed request's notes."""
    if subtask not in ANSWERING_SUBTASKS:
        return ()
    return applying(declared, asked_in(instruction))


def banned_characters(found: Iterable[Constraint]) -> str:
    """The characters no answer meeting ``found`` may contain, for a backend that can rule
    them out while decoding: a comma for "no commas", the ASCII capitals for "all
    lowercase" (and the reverse); none for case when both cases are asked for. The exact
    check still runs on the answer (a capital of another script is caught there)."""
    kinds = {c.kind for c in found}
    banned = {",": "no_commas" in kinds}
    if not {"lowercase", "uppercase"} <= kinds:
        banned |= dict.fromkeys(string.ascii_uppercase, "lowercase" in kinds)
        banned |= dict.fromkeys(string.ascii_lowercase, "uppercase" in kinds)
    return "".join(sorted(ch for ch, out in banned.items() if out))


def _plain(text: str) -> str:
    """Compared without case, surrounding space or quotes."""
    return " ".join(text.strip().strip("\"'“”‘’").lower().split())


def critique(failed: Iterable[Checked]) -> str:
    """One sentence per failing constraint, naming the numbers."""
    parts = []
    for f in failed:
        if f.constraint.kind in _COUNTERS or f.constraint.kind == "keyword":
            parts.append(f"{f.fix[0].upper()}{f.fix[1:]}.")
        else:
            parts.append(f"The answer must be {f.constraint.describe()} ({f.found}): {f.fix}.")
    return " ".join(parts)


# --- finding constraints stated in a prompt -------------------------------------------

_NUMBERS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "twelve": 12,
    "fifteen": 15,
    "twenty": 20,
    "thirty": 30,
    "fifty": 50,
    "hundred": 100,
    "once": 1,
    "twice": 2,
    "thrice": 3,
}
_NUM = r"(\d+|" + "|".join(k for k in _NUMBERS if k not in {"once", "twice", "thrice"}) + r")"
_REL = (
    r"(at least|no fewer than|not fewer than|a minimum of|minimum of|more than|over|"
    r"at most|no more than|not more than|a maximum of|maximum of|fewer than|less than|"
    r"under|up to|exactly|precisely)?\s*"
)
_UNITS: dict[str, Kind] = {
    "word": "words",
    "sentence": "sentences",
    "paragraph": "paragraphs",
    "bullet point": "bullets",
    "bullet": "bullets",
}
_COUNT = re.compile(
    r"\b"
    + _REL
    + _NUM
    + r"[\s-]+(?:([a-z]+)\s+)?(words?|sentences?|paragraphs?|bullet points?|bullets?)\b",
    re.IGNORECASE,
)
_RANGE = re.compile(
    r"\b(between|from)?\s*"
    + _NUM
    + r"\s*(?:and|to|-|–)\s*"
    + _NUM
    + r"[\s-]+(?:([a-z]+)\s+)?(words?|sentences?|paragraphs?|bullet points?|bullets?)\b",
    re.IGNORECASE,
)
"""A range of counts ("between 100 and 150 words", "3 to 5 sentences", "50-80 words"):
its lower and its upper bound."""
_NOT_A_LIMIT = re.compile(r"\b(?:the|these|those|of|which|what|no)\s*$", re.IGNORECASE)
"""A count after these words names things ("what do the two words mean", "no two
consecutive words"), not a limit."""
_NOT_THE_ANSWER_S = frozenset(
    {
        "more",
        "fewer",
        "less",
        "additional",
        "extra",
        "consecutive",
        "unique",
        "different",
        "distinct",
        "new",
        "first",
        "last",
        "long",
        "short",
        "previous",
        "next",
    }
)
"""A word between the number and the unit that makes the count something other than the
answer's length: a comparison ("one more word than the previous"), a property ("40
unique words"), a position ("the first 3 words")."""
_DISTRIBUTIVE = re.compile(r"\b(?:each|every|per|any|all)\b", re.IGNORECASE)
"""A clause that counts within every part ("each sentence must have at most 10 words")
states a limit on the parts, not on the answer."""
_AFTER_PARTS = re.compile(
    r"^\s+(?:long|each|per|in\s+(?:each|every|a\s+row)|apiece|that|which)\b",
    re.IGNORECASE,
)
"""A count followed by these describes the parts ("sentences 12 words long", "8 words
each") or picks some of them out ("two words that rhyme"), not the answer's total."""
_CLAUSE_START = re.compile(r"[.!?;:\n,]|\bwhere\b", re.IGNORECASE)
_KEYWORD_TIMES = re.compile(
    r"(?:include|use|mention|contain)s?\s+(?:the\s+(?:word|keyword|term)\s+)?"
    r"[\"'“‘]([^\"'”’]{1,40})[\"'”’]\s+" + _REL + r"(\d+\s+times|once|twice|thrice|"
    r"(?:one|two|three|four|five)\s+times)",
    re.IGNORECASE,
)
_KEYWORD = re.compile(
    r"(?:include|use|mention|contain)s?\s+the\s+(?:words?|keywords?|terms?)\s+"
    r"[\"'“‘]([^\"'”’]{1,40})[\"'”’]",
    re.IGNORECASE,
)
_FORBIDDEN = re.compile(
    r"(?:do not|don't|never|without)\s+(?:use|using|mention|mentioning|say|saying|include|"
    r"including)\s+the\s+(?:words?|keywords?|terms?)\s+[\"'“‘]([^\"'”’]{1,40})[\"'”’]",
    re.IGNORECASE,
)


def _phrase_rule(verbs: str) -> re.Pattern[str]:
    """ "<verb> [your answer] with [the exact phrase] '<phrase>'": the quoted phrase."""
    return re.compile(
        rf"(?:{verbs})\s+(?:your\s+(?:answer|response|reply)\s+)?with\s+(?:the\s+"
        r"(?:exact\s+)?(?:phrase|sentence|words?)\s+)?[\"“‘']([^\"”’]{1,80}?)[\"”’'](?=[\s.,;]|$)",
        re.IGNORECASE,
    )


_ENDS = _phrase_rule("end|finish|conclude")
_STARTS = _phrase_rule("start|begin")
_JSON = re.compile(
    r"\bas\s+(?:an?\s+)?(?:valid\s+)?json\b|\bin\s+(?:valid\s+)?json\s+format\b|"
    r"\bjson\s+only\b|\bonly\s+(?:valid\s+)?json\b|"
    r"\b(?:respond|answer|reply|output|return|write|format)\w*\s+(?:it\s+|your\s+\w+\s+)?"
    r"(?:in|as|using)\s+(?:valid\s+)?json\b",
    re.IGNORECASE,
)
"""JSON asked for as the answer's form ("as JSON", "in JSON format", "respond in JSON"),
not JSON as a topic ("how do I parse dates in JSON?")."""
_LOWER = re.compile(
    r"\b(?:all\s+(?:in\s+)?lower\s*case|in\s+lower\s*case\s+letters|only\s+lower\s*case|"
    r"no\s+capital\s+letters)\b",
    re.IGNORECASE,
)
_UPPER = re.compile(
    r"\b(?:all\s+(?:in\s+)?(?:upper\s*case|capital\s+letters|caps)|in\s+(?:all\s+)?"
    r"capital\s+letters|only\s+(?:upper\s*case|capital\s+letters))\b",
    re.IGNORECASE,
)
_NO_COMMAS = re.compile(
    r"\b(?:no|without|avoid(?:ing)?|do not use|don't use|refrain from using)\s+(?:any\s+)?"
    r"commas?\b",
    re.IGNORECASE,
)


def stated_in(prompt: str) -> tuple[Constraint, ...]:
    """The common constraints a prompt states in plain English, in a stable order."""
    found: list[Constraint] = []
    ranges = list(_RANGE.finditer(prompt))
    for m in ranges:
        if _n(m.group(2)) <= _n(m.group(3)) and _a_total(
            prompt, m, stated=bool(m.group(1)), adjective=m.group(4)
        ):
            kind = _unit(m.group(5))
            found.append(Constraint(kind=kind, relation="at_least", count=_n(m.group(2))))
            found.append(Constraint(kind=kind, relation="at_most", count=_n(m.group(3))))
    for m in _COUNT.finditer(prompt):
        if any(r.start() <= m.start() < r.end() for r in ranges):
            continue  # the upper end of a range (an inverted one bounds nothing)
        if not _a_total(prompt, m, stated=bool(m.group(1)), adjective=m.group(3)):
            continue
        kind = _unit(m.group(4))
        relation, count = _bounded(m.group(1), _n(m.group(2)), kind)
        found.append(Constraint(kind=kind, relation=relation, count=count))
    for m in _KEYWORD_TIMES.finditer(prompt):
        times = _n(m.group(3).lower().replace("times", "").strip())
        relation, count = (
            _bounded(m.group(2), times, "keyword") if m.group(2) else ("at_least", times)
        )
        found.append(Constraint("keyword", relation, count, m.group(1).strip()))
    forbidden = list(_FORBIDDEN.finditer(prompt))
    keyed = {c.text.lower() for c in found if c.kind == "keyword"}
    for m in _KEYWORD.finditer(prompt):
        inside_a_ban = any(f.start() <= m.start() < f.end() for f in forbidden)
        if not inside_a_ban and m.group(1).strip().lower() not in keyed:
            found.append(Constraint("keyword", "at_least", 1, m.group(1).strip()))
    for m in forbidden:
        found.append(Constraint("forbidden", text=m.group(1).strip()))
    for m in _STARTS.finditer(prompt):
        found.append(Constraint("starts_with", text=m.group(1).strip()))
    for m in _ENDS.finditer(prompt):
        found.append(Constraint("ends_with", text=m.group(1).strip()))
    if _JSON.search(prompt):
        found.append(Constraint("json"))
    if _LOWER.search(prompt):
        found.append(Constraint("lowercase"))
    if _UPPER.search(prompt):
        found.append(Constraint("uppercase"))
    if _NO_COMMAS.search(prompt):
        found.append(Constraint("no_commas"))
    return tuple(dict.fromkeys(found))


def _unit(word: str) -> Kind:
    unit = word.lower().rstrip("s")
    return _UNITS["bullet point" if unit.startswith("bullet point") else unit]


def _a_total(prompt: str, m: re.Match[str], *, stated: bool, adjective: str | None) -> bool:
    """Whether a count the prompt states (``m``; ``stated``: with a word saying how it
    bounds, ``adjective``: the word between the number and the unit) bounds the whole
    answer (precision over recall: a wrong constraint makes refinement push the answer
    the wrong way)."""
    before = prompt[: m.start()]
    if not stated and _NOT_A_LIMIT.search(before):
        return False
    if adjective and adjective.lower() in _NOT_THE_ANSWER_S:
        return False
    clause = _CLAUSE_START.split(before)[-1]
    if _DISTRIBUTIVE.search(clause):
        return False
    return not _AFTER_PARTS.search(prompt[m.end() : m.end() + 30])


def _n(word: str) -> int:
    word = word.strip().lower()
    return int(word) if word.isdigit() else _NUMBERS[word]


def _bounded(phrase: str | None, n: int, kind: str) -> tuple[Relation, int]:
    """The relation and bound a phrase states: "more than 5" is at least 6, "fewer than
    5" at most 4; a bare number is a cap on words and an exact count of anything else."""
    p = " ".join((phrase or "").lower().split())
    if p in {"at least", "no fewer than", "not fewer than", "a minimum of", "minimum of"}:
        return "at_least", n
    if p in {"more than", "over"}:
        return "at_least", n + 1
    if p in {"at most", "no more than", "not more than", "a maximum of", "maximum of", "up to"}:
        return "at_most", n
    if p in {"fewer than", "less than", "under"}:
        return "at_most", max(n - 1, 0)
    if p in {"exactly", "precisely"}:
        return "exactly", n
    return ("at_most" if kind == "words" else "exactly"), n
