"""Intake decisions: is a request acceptable, and is it a resend of one already seen."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from agents import constraints
from agents.config import IntakePolicy
from agents.hidden_text import hidden_selectors, visible
from schemas.request_events import Constraint, RequestSubmitted

FORMATS = frozenset({"text", "json", "markdown"})
# Characters that hide text from a reader but not from a model: Unicode tags,
# bidirectional overrides and isolates.
_SMUGGLING = re.compile("[\U000e0000-\U000e007f\u202a-\u202e\u2066-\u2069]")
_INJECTION = re.compile(
    r"\b(ignore|disregard|forget)\s+(all\s+)?(the\s+)?(previous|prior|above|earlier)\s+"
    r"(instructions|prompts?|rules)\b"
    r"|\b(reveal|print|show|repeat)\s+(me\s+)?(your|the)\s+(system|hidden)\s+prompt\b",
    re.IGNORECASE,
)


class RejectCode(StrEnum):
    EMPTY_PROMPT = "empty_prompt"
    PROMPT_TOO_LONG = "prompt_too_long"
    PRIORITY_OUT_OF_RANGE = "priority_out_of_range"
    BAD_TENANT = "bad_tenant"
    DEADLINE_EXPIRED = "deadline_expired"
    BAD_FORMAT = "bad_format"
    BAD_MAX_ROUNDS = "bad_max_rounds"
    BAD_SAMPLING = "bad_sampling"
    BAD_CONSTRAINT = "bad_constraint"
    BAD_RESPONSE_FORMAT = "bad_response_format"
    UNICODE_SMUGGLING = "unicode_smuggling"
    PROMPT_INJECTION = "prompt_injection"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class Rejection:
    code: RejectCode
    reason: str


def validate(request: RequestSubmitted, now: datetime, policy: IntakePolicy) -> Rejection | None:
    """The first reason ``request`` cannot be served, or None when it can."""
    for check in _CHECKS:
        rejection = check(request, now, policy)
        if rejection is not None:
            return rejection
    return None


def _prompt_present(r: RequestSubmitted, _now: datetime, _p: IntakePolicy) -> Rejection | None:
    if not visible(r.prompt).strip():
        return Rejection(
            RejectCode.EMPTY_PROMPT, "the prompt is empty or only white space and fillers"
        )
    return None


def _prompt_size(r: RequestSubmitted, _now: datetime, p: IntakePolicy) -> Rejection | None:
    """The limit holds for the prompt and its conversation context together."""
    size = len(r.prompt) + sum(len(turn) for turn in r.context)
    if size > p.max_prompt_chars:
        what = "the prompt and its context have" if r.context else "the prompt has"
        return Rejection(
            RejectCode.PROMPT_TOO_LONG,
            f"{what} {size} characters; the limit is {p.max_prompt_chars}",
        )
    return None


def _priority(r: RequestSubmitted, _now: datetime, p: IntakePolicy) -> Rejection | None:
    if not p.min_priority <= r.priority <= p.max_priority:
        return Rejection(
            RejectCode.PRIORITY_OUT_OF_RANGE,
            f"priority {r.priority} is outside {p.min_priority}..{p.max_priority}",
        )
    return None


def _tenant(r: RequestSubmitted, _now: datetime, p: IntakePolicy) -> Rejection | None:
    if not re.fullmatch(p.tenant_pattern, r.tenant):
        return Rejection(
            RejectCode.BAD_TENANT, f"tenant {r.tenant!r} does not match {p.tenant_pattern}"
        )
    return None


def _deadline(r: RequestSubmitted, now: datetime, _p: IntakePolicy) -> Rejection | None:
    if r.deadline_at is not None and r.deadline_at <= now:
        return Rejection(
            RejectCode.DEADLINE_EXPIRED, f"the deadline {r.deadline_at.isoformat()} has passed"
        )
    return None


def _shape(r: RequestSubmitted, _now: datetime, p: IntakePolicy) -> Rejection | None:
    if r.answer_format not in FORMATS:
        return Rejection(
            RejectCode.BAD_FORMAT,
            f"answer_format {r.answer_format!r} is not one of {sorted(FORMATS)}",
        )
    if r.max_rounds is not None and not 1 <= r.max_rounds <= p.max_rounds_cap:
        return Rejection(
            RejectCode.BAD_MAX_ROUNDS, f"max_rounds {r.max_rounds} is outside 1..{p.max_rounds_cap}"
        )
    return None


def _sampling(r: RequestSubmitted, _now: datetime, p: IntakePolicy) -> Rejection | None:
    if r.max_tokens is not None and not 1 <= r.max_tokens <= p.max_tokens_cap:
        return Rejection(
            RejectCode.BAD_SAMPLING, f"max_tokens {r.max_tokens} is outside 1..{p.max_tokens_cap}"
        )
    if r.temperature is not None and not 0.0 <= r.temperature <= 2.0:
        return Rejection(RejectCode.BAD_SAMPLING, f"temperature {r.temperature} is outside 0..2")
    return None


def _constraints(r: RequestSubmitted, _now: datetime, p: IntakePolicy) -> Rejection | None:
    if len(r.constraints) > p.max_constraints:
        return Rejection(
            RejectCode.BAD_CONSTRAINT,
            f"{len(r.constraints)} constraints; at most {p.max_constraints} are allowed",
        )
    problems = constraints.declared_problems(r.constraints)
    if problems:
        return Rejection(RejectCode.BAD_CONSTRAINT, "; ".join(problems))
    if r.response_format is not None:
        try:
            response_format(r.response_format)
        except ValueError as exc:
            return Rejection(RejectCode.BAD_RESPONSE_FORMAT, str(exc))
    return None


def response_format(text: str) -> Constraint | None:
    """The JSON constraint an OpenAI-style ``response_format`` asks for: None for
    ``{"type": "text"}``, JSON for ``json_object``, JSON against the schema for
    ``json_schema``. ``ValueError`` says what is wrong with it."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"response_format is not JSON ({exc})") from None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return Constraint(kind="json")
    if kind != "json_schema":
        raise ValueError(
            f"response_format type must be text, json_object or json_schema, not {kind!r}"
        )
    spec = value.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise ValueError("response_format json_schema must hold a 'schema' object")
    declared = Constraint(kind="json", json_schema=json.dumps(schema, sort_keys=True))
    problems = constraints.declared_problems([declared])
    if problems:
        raise ValueError(f"response_format: {problems[0]}")
    return declared


def asked(request: RequestSubmitted) -> tuple[str, tuple[Constraint, ...]]:
    """A valid request's answer format and client-declared constraints, its
    ``response_format`` included: JSON asked for there makes the answer format JSON."""
    declared = request.constraints
    wanted = response_format(request.response_format) if request.response_format else None
    if wanted is None:
        return request.answer_format, declared
    if wanted.json_schema is None:
        return "json", declared
    return "json", (*declared, wanted)


def _content(r: RequestSubmitted, _now: datetime, p: IntakePolicy) -> Rejection | None:
    """The prompt, then each turn of its context: a model reads them all."""
    texts = [("the prompt", r.prompt)]
    texts += [(f"context turn {i + 1}", turn) for i, turn in enumerate(r.context)]
    for where, text in texts:
        rejection = _hidden_or_injected(where, text, p)
        if rejection is not None:
            return rejection
    return None


def _hidden_or_injected(where: str, text: str, p: IntakePolicy) -> Rejection | None:
    if _SMUGGLING.search(text):
        return Rejection(
            RejectCode.UNICODE_SMUGGLING,
            f"{where} holds invisible tag or bidirectional-override characters",
        )
    selectors = hidden_selectors(text)
    if selectors is not None:
        return Rejection(
            RejectCode.UNICODE_SMUGGLING,
            f"{where} hides text in variation selectors: {selectors}",
        )
    if p.reject_injection and any(_INJECTION.search(v) for v in _foldings(text)):
        return Rejection(RejectCode.PROMPT_INJECTION, f"{where} asks to override instructions")
    return None


def _foldings(text: str) -> tuple[str, str]:
    """The prompt as a reader sees it: compatibility forms folded (fullwidth letters),
    invisible format characters dropped or read as a space."""
    folded = unicodedata.normalize("NFKC", text)
    dropped = "".join(ch for ch in folded if unicodedata.category(ch) != "Cf")
    spaced = "".join(" " if unicodedata.category(ch) == "Cf" else ch for ch in folded)
    return dropped, spaced


_CHECKS = (
    _prompt_present,
    _prompt_size,
    _priority,
    _tenant,
    _deadline,
    _shape,
    _sampling,
    _constraints,
    _content,
)

_ADDED_LATER = {
    "constraints": (),
    "max_tokens": None,
    "temperature": None,
    "response_format": None,
    "context": (),
}
"""Request fields added after the first contract version, with their defaults: left out
of the digest while at the default, so a request keeps its digest across the upgrade."""


def payload_digest(request: RequestSubmitted) -> str:
    """What makes two submissions the same request: everything but the envelope."""
    body = request.model_dump(exclude={"event_id", "occurred_at", "config_version", "variant"})
    for name, default in _ADDED_LATER.items():
        if body[name] == default:
            del body[name]
    canonical = json.dumps(body, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
