"""Decisions of the cache of guardian-approved answers: the key, what is stored, and
the response a hit becomes. Storage itself is a connector's job.

The key covers the tenant (no answer crosses tenants), the config version (a new
model, prompt or threshold invalidates every entry), the answer format, the A/B
variant, the session context when there is one, and the normalised prompt.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime

from agents.ids import stable_id
from schemas.errors import GuardianError
from schemas.request_events import RequestSubmitted, ResponseDelivered

KEY_VERSION = "v1"
"""Bump when the normalisation changes: old entries then simply stop matching."""

_SPACE = re.compile(r"\s+")


class CacheMismatch(GuardianError):
    """A cached response that must not answer this request (a bug in the caller)."""

    retriable = False


def normalise(prompt: str) -> str:
    """NFKC, casefold, whitespace collapsed, trailing punctuation and spaces stripped."""
    text = _SPACE.sub(" ", unicodedata.normalize("NFKC", prompt).casefold()).strip()
    end = len(text)
    while end and (text[end - 1].isspace() or unicodedata.category(text[end - 1])[0] == "P"):
        end -= 1
    return text[:end]


def cache_key(
    prompt: str,
    answer_format: str,
    config_version: int,
    tenant: str,
    *,
    variant: str | None = None,
    context: Sequence[str] = (),
) -> str:
    """A 32-hex-digit key; equal for prompts that differ only in case, spacing, width
    forms or trailing punctuation."""
    parts = [KEY_VERSION, tenant, str(config_version), answer_format, variant or "", *context]
    parts.append(normalise(prompt))
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:  # length-prefixed: no two part lists hash alike
        data = part.encode()
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


def should_cache(response: ResponseDelivered) -> bool:
    """Only final answers that passed the guardians, with content, and not themselves hits."""
    return (
        response.is_final
        and response.status == "passed"
        and bool(response.content.strip())
        and not response.cache_hit
    )


def from_cache(
    cached: ResponseDelivered, request: RequestSubmitted, now: datetime
) -> ResponseDelivered:
    """The final response of ``request`` served from ``cached``: same content and
    confidence, no rounds and no tokens spent, the request's own id, tenant and latency."""
    if not should_cache(cached):
        raise CacheMismatch(f"response {cached.event_id} is not a cacheable answer")
    if cached.tenant != request.tenant:
        raise CacheMismatch(f"response {cached.event_id} belongs to another tenant")
    return ResponseDelivered(
        event_id=stable_id(request.request_id, "response"),
        request_id=request.request_id,
        occurred_at=now,
        config_version=cached.config_version,
        variant=request.variant,
        status="passed",
        content=cached.content,
        confidence=cached.confidence,
        rounds=0,
        best_round=0,
        specialists=cached.specialists,
        models=cached.models,
        latency_ms=max(0.0, (now - request.occurred_at).total_seconds() * 1000),
        cache_hit=True,
        tenant=request.tenant,
        session_id=request.session_id,
        cached_from=cached.event_id,
    )
