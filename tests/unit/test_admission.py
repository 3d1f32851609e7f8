"""Intake's decisions on a request id it knows: the same record again, a client's resend
and a conflicting payload."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agents import admission
from agents.config import PipelineConfig
from agents.effects import NOTHING, Effects, Refused
from agents.intake import payload_digest
from agents.refine import RequestState, closed, rejected
from schemas.request_events import RequestSubmitted

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
CONFIG = PipelineConfig(version=4)
REQUEST = RequestSubmitted(event_id="e-1", request_id="r-1", occurred_at=T0, prompt="Hi?")


def answered(*, sent: bool) -> RequestState:
    response = rejected(REQUEST, "prompt_too_long", "too long", T0, CONFIG.version)
    state = closed(REQUEST, payload_digest(REQUEST), response)
    return state.model_copy(update={"final_sent": sent})


def decide(request: RequestSubmitted, known: RequestState) -> object:
    later = T0 + timedelta(seconds=5)
    return admission.on_request(request, payload_digest(request), known, None, later, CONFIG)


def test_the_same_record_after_its_answer_was_acknowledged_sends_nothing() -> None:
    assert decide(REQUEST, answered(sent=True)) == NOTHING


def test_the_same_record_before_the_acknowledgement_sends_the_same_answer_again() -> None:
    known = answered(sent=False)
    effects = decide(REQUEST, known)
    assert isinstance(effects, Effects)
    assert effects.emits == (known.final,)
    assert effects.then is not None
    assert effects.then.final_sent


def test_a_clients_resend_gets_the_same_answer_even_after_the_acknowledgement() -> None:
    known = answered(sent=True)
    resend = REQUEST.model_copy(update={"event_id": "e-2"})
    effects = decide(resend, known)
    assert isinstance(effects, Effects)
    assert effects.emits == (known.final,)
    assert effects.then is None, "already marked sent"


def test_a_resend_with_another_payload_is_a_conflict() -> None:
    other = REQUEST.model_copy(update={"event_id": "e-3", "prompt": "Something else?"})
    refused = decide(other, answered(sent=True))
    assert isinstance(refused, Refused)
    assert refused.code == "conflict"
