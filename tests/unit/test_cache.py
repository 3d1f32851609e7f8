"""The cache of guardian-approved answers: keys, what is stored, and what a hit becomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents.cache import CacheMismatch, cache_key, from_cache, normalise, should_cache
from agents.ids import stable_id
from schemas.request_events import RequestSubmitted, ResponseDelivered

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
KEY = cache_key("What is Kafka?", "text", 4, "acme")


def response(**fields: Any) -> ResponseDelivered:
    base: dict[str, Any] = {
        "event_id": "resp-1",
        "request_id": "req-1",
        "occurred_at": T0,
        "config_version": 4,
        "variant": "a",
        "status": "passed",
        "content": "A distributed log.",
        "confidence": 0.91,
        "rounds": 2,
        "best_round": 2,
        "specialists": ("general",),
        "models": ("smollm2",),
        "prompt_tokens": 120,
        "completion_tokens": 40,
        "latency_ms": 5300.0,
        "tenant": "acme",
        "session_id": "s-1",
    }
    return ResponseDelivered(**{**base, **fields})


def request(**fields: Any) -> RequestSubmitted:
    base: dict[str, Any] = {
        "event_id": "e-2",
        "request_id": "req-2",
        "occurred_at": T0 + timedelta(hours=1),
        "prompt": "what is kafka",
        "tenant": "acme",
        "session_id": "s-9",
        "variant": "b",
    }
    return RequestSubmitted(**{**base, **fields})


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("What is Kafka?", "what is kafka"),
        ("  WHAT   is\tKafka ?!  ", "what is kafka"),
        ("ＷＨＡＴ is Kafka？", "what is kafka"),  # full-width forms (NFKC)
        ("Straße", "strasse"),  # casefold, not lower
        ("Is 3.5 > 3?", "is 3.5 > 3"),  # inner punctuation is kept
        ("Say “hi”.", "say “hi"),  # trailing quotes are punctuation too
        ("?!", ""),
    ],
)
def test_normalise(prompt: str, expected: str) -> None:
    assert normalise(prompt) == expected


@pytest.mark.parametrize(
    "prompt", ["What is Kafka?", "what is kafka", " What  is KAFKA ?? ", "ＷＨＡＴ is Kafka"]
)
def test_prompts_differing_only_in_form_share_a_key(prompt: str) -> None:
    assert cache_key(prompt, "text", 4, "acme") == KEY


@pytest.mark.parametrize(
    "other",
    [
        cache_key("What is Kafka 2?", "text", 4, "acme"),
        cache_key("What is Kafka?", "json", 4, "acme"),
        cache_key("What is Kafka?", "text", 5, "acme"),
        cache_key("What is Kafka?", "text", 4, "globex"),
        cache_key("What is Kafka?", "text", 4, "acme", variant="b"),
        cache_key("What is Kafka?", "text", 4, "acme", context=("User: hi\nAssistant: hello",)),
    ],
)
def test_anything_else_changes_the_key(other: str) -> None:
    assert other != KEY


def test_parts_cannot_run_into_each_other() -> None:
    assert cache_key("x", "text", 4, "ab") != cache_key("x", "text", 4, "a", context=("b",))
    assert cache_key("b c", "text", 4, "a", context=("a",)) != cache_key(
        "c", "text", 4, "a", context=("a b",)
    )


def test_the_key_is_32_hex_digits() -> None:
    assert len(KEY) == 32
    int(KEY, 16)


@pytest.mark.parametrize(
    ("fields", "cacheable"),
    [
        ({}, True),
        ({"status": "failed"}, False),
        ({"status": "timeout"}, False),
        ({"status": "rejected", "content": ""}, False),
        ({"content": "   "}, False),
        ({"cache_hit": True}, False),
    ],
)
def test_should_cache(fields: dict[str, Any], cacheable: bool) -> None:
    assert should_cache(response(**fields)) is cacheable


def test_a_hit_is_a_new_response_for_the_new_request() -> None:
    now = T0 + timedelta(hours=1, milliseconds=250)
    hit = from_cache(response(), request(), now)
    assert hit.event_id == stable_id("req-2", "response")  # the request's one final response
    assert (hit.request_id, hit.occurred_at, hit.status, hit.cache_hit) == (
        "req-2",
        now,
        "passed",
        True,
    )
    assert (hit.content, hit.confidence) == ("A distributed log.", 0.91)
    assert (hit.rounds, hit.best_round, hit.prompt_tokens, hit.completion_tokens) == (0, 0, 0, 0)
    assert hit.latency_ms == pytest.approx(250.0)
    assert (hit.tenant, hit.session_id, hit.variant) == ("acme", "s-9", "b")
    assert (hit.specialists, hit.models, hit.config_version) == (("general",), ("smollm2",), 4)


def test_a_hit_is_deterministic_and_never_cached_again() -> None:
    now = T0 + timedelta(hours=2)
    hit = from_cache(response(), request(), now)
    assert from_cache(response(), request(), now) == hit
    assert not should_cache(hit)


def test_latency_is_never_negative() -> None:
    assert from_cache(response(), request(), T0).latency_ms == 0.0


@pytest.mark.parametrize(
    ("cached", "match"),
    [
        (response(status="failed"), "not a cacheable"),
        (response(cache_hit=True), "not a cacheable"),
        (response(tenant="globex"), "another tenant"),
    ],
)
def test_a_hit_that_must_not_answer_is_refused(cached: ResponseDelivered, match: str) -> None:
    with pytest.raises(CacheMismatch, match=match) as info:
        from_cache(cached, request(), T0)
    assert info.value.retriable is False
