"""Intake's decisions on a request id it knows: the same record again, a client's resend
and a conflicting payload (answered with a rejection addressed to that submission)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agents import admission
from agents.config import PipelineConfig
from agents.effects import NOTHING, Effects, answer_turns
from agents.ids import stable_id
from agents.intake import payload_digest
from agents.refine import RequestState, closed, rejected
from agents.retention import DoneMarker
from schemas.request_events import ContextProvided, RequestSubmitted, ResponseDelivered

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


def conflicting(known: RequestState) -> tuple[RequestSubmitted, Effects]:
    other = REQUEST.model_copy(update={"event_id": "e-3", "prompt": "Something else?"})
    effects = decide(other, known)
    assert isinstance(effects, Effects)
    return other, effects


@pytest.mark.parametrize("sent", [True, False])
def test_a_resend_with_another_payload_gets_its_own_rejection_and_changes_nothing(
    sent: bool,
) -> None:
    known = answered(sent=sent)
    other, effects = conflicting(known)
    (response,) = effects.emits
    assert isinstance(response, ResponseDelivered)
    assert response.status == "rejected"
    assert response.reason_code == "conflict"
    assert response.reason is not None
    assert "different payload" in response.reason
    assert response.submission_id == other.event_id
    assert not response.is_final
    assert response.event_id == stable_id("r-1", "conflict", "e-3")
    assert known.final is not None
    assert response.event_id != known.final.event_id
    assert effects.decided == response, "counted as a rejected response"
    assert (effects.state, effects.then, effects.turns, effects.cache) == (None, None, (), None)


def test_a_redelivered_conflicting_resend_gets_the_same_rejection() -> None:
    _, first = conflicting(answered(sent=True))
    _, again = conflicting(answered(sent=True))
    assert first.emits == again.emits


def test_a_conflicting_resend_of_a_request_in_a_session_writes_no_turn() -> None:
    known = answered(sent=True).model_copy(update={"session_id": "s-1"})
    _, effects = conflicting(known)
    assert effects.turns == ()
    (response,) = effects.emits
    assert isinstance(response, ResponseDelivered)
    assert answer_turns(known, response) == ()


def test_a_conflicting_resend_of_a_request_only_a_done_marker_remembers() -> None:
    final = answered(sent=True).final
    assert final is not None
    marker = DoneMarker(payload_digest=payload_digest(REQUEST), response=final)
    other = REQUEST.model_copy(update={"event_id": "e-4", "prompt": "Another one?"})
    later = T0 + timedelta(seconds=5)
    effects = admission.on_request(other, payload_digest(other), None, marker, later, CONFIG)
    assert isinstance(effects, Effects)
    (response,) = effects.emits
    assert isinstance(response, ResponseDelivered)
    assert (response.reason_code, response.submission_id) == ("conflict", "e-4")
    assert effects.state is None


def test_the_clients_context_reaches_every_task_after_the_sessions_turns() -> None:
    own = ("System: Answer in French.", "User: Hi.\nAssistant: Bonjour.")
    request = REQUEST.model_copy(update={"context": own})
    admitted = admission.on_request(request, payload_digest(request), None, None, T0, CONFIG)
    assert isinstance(admitted, admission.Admitted)
    assert admitted.context == own
    begun = admission.begin(admitted, T0, CONFIG, cache_hit=None, route=lambda _: ("d-1", False))
    assert begun.emits
    assert all(task.context == own for task in begun.emits)  # type: ignore[attr-defined]

    in_session = request.model_copy(update={"session_id": "s-1"})
    held = admission.on_request(in_session, payload_digest(in_session), None, None, T0, CONFIG)
    assert isinstance(held, Effects)
    assert held.state is not None
    session = ContextProvided(
        event_id="c-1",
        request_id="r-1",
        occurred_at=T0,
        session_id="s-1",
        context=("User: Earlier?\nAssistant: Yes.",),
    )
    planned = admission.on_context(session, held.state, None)
    assert isinstance(planned, admission.Admitted)
    assert planned.context == ("User: Earlier?\nAssistant: Yes.", *own)
