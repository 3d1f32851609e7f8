"""Intake decisions: is a request acceptable, and is it a resend of one already seen."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from agents.config import IntakePolicy
from agents.hidden_text import hidden_selectors, visible
from schemas.request_events import RequestSubmitted

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
    if len(r.prompt) > p.max_prompt_chars:
        return Rejection(
            RejectCode.PROMPT_TOO_LONG,
            f"the prompt has {len(r.prompt)} characters; the limit is {p.max_prompt_chars}",
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


def _content(r: RequestSubmitted, _now: datetime, p: IntakePolicy) -> Rejection | None:
    if _SMUGGLING.search(r.prompt):
        return Rejection(
            RejectCode.UNICODE_SMUGGLING,
            "the prompt holds invisible tag or bidirectional-override characters",
        )
    selectors = hidden_selectors(r.prompt)
    if selectors is not None:
        return Rejection(
            RejectCode.UNICODE_SMUGGLING,
            f"the prompt hides text in variation selectors: {selectors}",
        )
    if p.reject_injection and any(_INJECTION.search(v) for v in _foldings(r.prompt)):
        return Rejection(RejectCode.PROMPT_INJECTION, "the prompt asks to override instructions")
    return None


def _foldings(text: str) -> tuple[str, str]:
    """The prompt as a reader sees it: compatibility forms folded (fullwidth letters),
    invisible format characters dropped or read as a space."""
    folded = unicodedata.normalize("NFKC", text)
    dropped = "".join(ch for ch in folded if unicodedata.category(ch) != "Cf")
    spaced = "".join(" " if unicodedata.category(ch) == "Cf" else ch for ch in folded)
    return dropped, spaced


_CHECKS = (_prompt_present, _prompt_size, _priority, _tenant, _deadline, _shape, _content)


def payload_digest(request: RequestSubmitted) -> str:
    """What makes two submissions the same request: everything but the envelope."""
    body = request.model_dump(exclude={"event_id", "occurred_at", "config_version", "variant"})
    canonical = json.dumps(body, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
