"""The context maintainer's core: a session's recent turns, kept within a token budget.

The budget is measured on the rendered strings ``TaskAssigned.context`` carries,
with a token counter passed in. The newest turn is always kept, its answer cut
short if it alone is over budget; older turns are dropped oldest first.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

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
