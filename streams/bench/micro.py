"""Micro-benchmarks: the codec and the pure cores, in microseconds per call."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from agents.config import PipelineConfig
from agents.guardian import Signals, judge
from agents.intake import payload_digest, validate
from agents.refine import on_verdict, start
from schemas.codec import Codec
from schemas.request_events import (
    GuardianScore,
    RequestSubmitted,
    SpecialistAnswered,
    VerdictIssued,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
REQUEST = RequestSubmitted(
    event_id="e" * 32,
    request_id="r" * 32,
    occurred_at=NOW,
    prompt="What is the boiling point of water at sea level, and why does it change with altitude?",
)
ANSWER = SpecialistAnswered(
    event_id="a" * 32,
    request_id="r" * 32,
    occurred_at=NOW,
    task_id="r/main/1",
    round=1,
    specialist="general",
    deployment="scripted",
    model="scripted",
    instruction=REQUEST.prompt,
    system_prompt="You are a careful assistant.",
    status="ok",
    content="Water boils at 100 degrees Celsius at sea level; lower pressure at "
    "altitude lowers the boiling point.",
    prompt_tokens=40,
    completion_tokens=20,
)
VERDICT = VerdictIssued(
    event_id="v" * 32,
    request_id="r" * 32,
    occurred_at=NOW,
    task_id="r/main/1",
    round=1,
    answer_event_id="a" * 32,
    passed=True,
    score=0.92,
    threshold=0.7,
    scores=tuple(GuardianScore(guardian=g, score=0.9, passed=True) for g in ("a", "c", "f", "s")),
    content=ANSWER.content,
    specialist="general",
    model="scripted",
)


def per_call_us(fn: Callable[[], object], *, seconds: float = 0.5) -> float:
    """Mean microseconds per call over about ``seconds`` (after a short warm-up)."""
    for _ in range(200):
        fn()
    n, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(100):
            fn()
        n += 100
    return round(elapsed / n * 1_000_000, 2)


def run_micro(seconds: float = 0.5) -> dict[str, float]:
    codec = Codec()
    config = PipelineConfig()
    request_bytes, verdict_bytes = codec.encode(REQUEST), codec.encode(VERDICT)
    signals = Signals(alignment=0.7, new_pii=())
    state = start(REQUEST, "d", NOW, config, deployment="scripted").state
    later = NOW + timedelta(seconds=1)
    cases: dict[str, Callable[[], object]] = {
        "codec_encode_request": lambda: codec.encode(REQUEST),
        "codec_decode_request": lambda: codec.decode(request_bytes, RequestSubmitted),
        "codec_encode_verdict": lambda: codec.encode(VERDICT),
        "codec_decode_verdict": lambda: codec.decode(verdict_bytes, VerdictIssued),
        "intake_validate": lambda: validate(REQUEST, NOW, config.intake),
        "intake_digest": lambda: payload_digest(REQUEST),
        "guardian_judge": lambda: judge(ANSWER, signals, config.guardian),
        "refine_start": lambda: start(REQUEST, "d", NOW, config, deployment="scripted"),
        "refine_on_verdict": lambda: on_verdict(state, VERDICT, later, config),
    }
    results = {name: per_call_us(fn, seconds=seconds) for name, fn in cases.items()}
    results["codec_round_trip_request"] = round(
        results["codec_encode_request"] + results["codec_decode_request"], 2
    )
    return results
