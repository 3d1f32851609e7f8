"""What one stage decision asks of the world, as data: the executor in
``streams/effects.py`` applies it, always in the order the fields are listed.

1. ``state``: the request's new state is written to the refinement table.
2. ``turns``: session turns are sent, and acknowledged by the broker before
   anything below (a follow-up sent after its client saw an answer must see it).
3. ``cache``: an approved answer is stored in the answer cache.
4. ``emits``: events are sent, in order.
5. ``then``: once every emit is acknowledged, the request's state is written again
   (a final response marked as sent).

Replay calls the same decision functions and compares their effects with the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from agents.context import SessionState, on_answer, on_prompt, render, touch
from agents.ids import stable_id
from agents.refine import RequestState
from schemas.envelope import Event
from schemas.request_events import (
    ContextProvided,
    RequestSubmitted,
    ResponseDelivered,
    SessionTurn,
)


@dataclass(frozen=True)
class Effects:
    state: RequestState | None = None
    """The request's new state (None: unchanged)."""
    turns: tuple[SessionTurn, ...] = ()
    cache: tuple[RequestState, ResponseDelivered] | None = None
    """An approved answer to keep, with the state whose prompt it answers."""
    emits: tuple[Event, ...] = ()
    decided: ResponseDelivered | None = None
    """The final response decided by this step (counted once, in metrics)."""
    then: RequestState | None = None
    """The state to write once the broker has acknowledged ``emits``."""
    cache_hit: bool = False
    decomposed: bool = False

    @property
    def response(self) -> ResponseDelivered | None:
        """The final response this step sends, new or again."""
        found = [e for e in self.emits if isinstance(e, ResponseDelivered)]
        return found[-1] if found else None


NOTHING = Effects()


def sent(state: RequestState) -> RequestState | None:
    """``state`` with its final response marked as acknowledged (None: already marked)."""
    return None if state.final_sent else state.model_copy(update={"final_sent": True})


@dataclass(frozen=True)
class Refused:
    """A record the stage cannot take: ``code`` is a closed label (dead-letter reason)."""

    code: str
    reason: str


_REMEMBERED = frozenset({"passed", "failed", "timeout"})
"""Statuses whose content joins the session (rejections and errors have none)."""


def prompt_turn(request: RequestSubmitted, now: datetime, config_version: int) -> SessionTurn:
    """An accepted session request's prompt, as its session's next user turn."""
    assert request.session_id is not None
    return SessionTurn(
        event_id=stable_id(request.request_id, "turn", "user"),
        request_id=request.request_id,
        occurred_at=now,
        config_version=config_version,
        variant=request.variant,
        session_id=request.session_id,
        role="user",
        content=request.prompt,
        tenant=request.tenant,
    )


def answer_turns(state: RequestState, response: ResponseDelivered) -> tuple[SessionTurn, ...]:
    """A session request's final answer as its session's assistant turn (none for a request
    outside a session, or a rejected one: its prompt never joined the session; none for a
    reply to another submission, such as a conflicting resend's rejection)."""
    if state.session_id is None or response.status == "rejected" or not response.is_final:
        return ()
    return (
        SessionTurn(
            event_id=stable_id(state.request_id, "turn", "assistant"),
            request_id=state.request_id,
            occurred_at=response.occurred_at,
            config_version=response.config_version,
            variant=state.variant,
            session_id=state.session_id,
            role="assistant",
            content=response.content,
            status=response.status,
            tenant=state.tenant,
        ),
    )


def remembered(turn: SessionTurn) -> str | None:
    """The answer a session keeps from an assistant turn (None: nothing to keep)."""
    if turn.status in _REMEMBERED and turn.content.strip():
        return turn.content
    return None


def on_turn(
    state: SessionState, turn: SessionTurn, now: datetime, config_version: int, budget: int
) -> tuple[SessionState | None, ContextProvided | None]:
    """The context maintainer's decision: a session's new state (None: unchanged) and,
    for a prompt, the context its request is planned with (the turns before it)."""
    if turn.role == "user":
        context = state.context
        provided = ContextProvided(
            event_id=stable_id(turn.request_id, "context"),
            request_id=turn.request_id,
            occurred_at=now,
            config_version=config_version,
            variant=turn.variant,
            session_id=turn.session_id,
            context=render(context),
            turns=len(context.turns),
            dropped=context.dropped,
        )
        return touch(on_prompt(state, turn.request_id, turn.content), now), provided
    updated = on_answer(state, turn.request_id, remembered(turn), max_tokens_budget=budget)
    return (touch(updated, now) if updated != state else None), None
