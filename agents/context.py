"""The context maintainer's core: a session's recent turns, kept within a token budget,
and the table value that follows a session's prompts and answers.

The budget is measured on the rendered strings ``TaskAssigned.context`` carries,
with a token counter passed in. The newest turn is always kept, its answer cut
short if it alone is over budget; older turns are dropped oldest first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from schemas.envelope import Millis

TokenCounter = Callable[[str], int]
CUT_MARK = " …"


def word_count(text: str) -> int:
    """A cheap token estimate: whitespace-separated words."""
    return len(text.split())


class SessionContext(BaseModel):
    """The turns of one session, oldest first, as (user, assistant) pairs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    turns: tuple[tuple[str, str], ...] = ()
    dropped: int = Field(default=0, ge=0)
    """Turns dropped so far to stay within the budget."""


def render_turn(user: str, assistant: str) -> str:
    return f"User: {user}\nAssistant: {assistant}"


def render(ctx: SessionContext) -> tuple[str, ...]:
    """The context strings for ``TaskAssigned.context``, oldest first."""
    return tuple(render_turn(u, a) for u, a in ctx.turns)


def add_turn(
    ctx: SessionContext,
    user: str,
    assistant: str,
    *,
    max_tokens_budget: int,
    count_tokens: TokenCounter = word_count,
) -> SessionContext:
    """Append a turn, then keep the most recent turns whose rendering fits the budget."""
    if max_tokens_budget < 0:
        raise ValueError("max_tokens_budget must be >= 0")
    newest = _fit(user, assistant, max_tokens_budget, count_tokens)
    if newest is None:
        return SessionContext(dropped=ctx.dropped + len(ctx.turns) + 1)
    kept = [newest]
    used = count_tokens(render_turn(*newest))
    for turn in reversed(ctx.turns):
        cost = count_tokens(render_turn(*turn))
        if used + cost > max_tokens_budget:
            break
        kept.append(turn)
        used += cost
    dropped = ctx.dropped + len(ctx.turns) + 1 - len(kept)
    return SessionContext(turns=tuple(reversed(kept)), dropped=dropped)


def _fit(user: str, assistant: str, budget: int, count: TokenCounter) -> tuple[str, str] | None:
    """The turn, its answer cut to the longest prefix that fits; None if nothing fits."""
    if count(render_turn(user, assistant)) <= budget:
        return user, assistant
    if count(render_turn(user, CUT_MARK.strip())) > budget:
        return None
    low, high = 0, len(assistant)  # invariant: a prefix of length `low` fits
    while low < high:
        mid = (low + high + 1) // 2
        if count(render_turn(user, _cut(assistant, mid))) <= budget:
            low = mid
        else:
            high = mid - 1
    return user, _cut(assistant, low)


def _cut(text: str, length: int) -> str:
    """The first ``length`` characters, back to a word boundary, and the cut mark."""
    head = text[:length]
    if length < len(text) and not text[length].isspace() and " " in head:
        head = head.rsplit(" ", 1)[0]
    return (head.rstrip() + CUT_MARK).strip()


MAX_PENDING = 32
"""Requests of one session awaiting their answer that are remembered; beyond that the
oldest is forgotten (its answer will not join the context)."""
MAX_SEEN = 64
"""Recent request ids remembered per session, so a redelivered turn is not counted twice."""


class SessionState(BaseModel):
    """The context maintainer's table value: a session's context, and the requests whose
    prompt arrived but whose answer has not."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    context: SessionContext = SessionContext()
    pending: tuple[tuple[str, str], ...] = ()
    """(request_id, prompt), oldest first."""
    seen: tuple[str, ...] = ()
    """Request ids whose prompt arrived, newest last."""
    active_at: Millis | None = None
    """The session's last prompt or answer (None: stored before sessions expired)."""


def touch(state: SessionState, now: datetime) -> SessionState:
    """The session as of a prompt or answer at ``now``: its idle time starts again."""
    return state.model_copy(update={"active_at": now})


def idle_sessions(active: Mapping[str, datetime], now: datetime, idle: timedelta) -> list[str]:
    """The sessions (id -> last activity) idle for at least ``idle``: they expire."""
    cutoff = now - idle
    return [sid for sid, at in active.items() if at <= cutoff]


def on_prompt(state: SessionState, request_id: str, prompt: str) -> SessionState:
    """A request of the session was accepted: its prompt waits for its answer. The
    request sees ``state.context`` as it is now, without the turns still pending."""
    if request_id in state.seen:
        return state
    pending = (*state.pending, (request_id, prompt))[-MAX_PENDING:]
    seen = (*state.seen, request_id)[-MAX_SEEN:]
    return state.model_copy(update={"pending": pending, "seen": seen})


def on_answer(
    state: SessionState,
    request_id: str,
    answer: str | None,
    *,
    max_tokens_budget: int,
    count_tokens: TokenCounter = word_count,
) -> SessionState:
    """A request of the session was answered: its prompt and answer become a turn
    (``answer`` None: it ended without one, and leaves no turn). An answer with no
    pending prompt (already counted, or forgotten) changes nothing."""
    prompt = next((p for rid, p in state.pending if rid == request_id), None)
    if prompt is None:
        return state
    pending = tuple(item for item in state.pending if item[0] != request_id)
    if answer is None:
        return state.model_copy(update={"pending": pending})
    context = add_turn(
        state.context,
        prompt,
        answer,
        max_tokens_budget=max_tokens_budget,
        count_tokens=count_tokens,
    )
    return state.model_copy(update={"pending": pending, "context": context})
