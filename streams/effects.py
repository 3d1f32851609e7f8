"""The one executor of decisions: applies ``agents.effects.Effects`` in the documented
order (table write, session turns acknowledged, cache store, emits, the state once the
emits are acknowledged), then counts."""

from __future__ import annotations

from agents.effects import Effects, Refused
from schemas import topics
from schemas.request_events import SessionTurn
from streams import answer_cache
from streams.refine_table import save_state
from streams.runtime import Runtime, sends_of_record
from streams.stage import StageError


async def apply(rt: Runtime, effects: Effects | Refused) -> None:
    """Carry out ``effects``; a refusal becomes the record's dead letter."""
    if isinstance(effects, Refused):
        raise StageError(effects.code, effects.reason)
    if effects.state is not None:
        save_state(rt, effects.state)
    for turn in effects.turns:
        await send_turn(rt, turn)
    if effects.cache is not None:
        await answer_cache.store(rt, *effects.cache)
    if effects.then is None:
        for event in effects.emits:
            await rt.emit(event)
    else:
        async with sends_of_record():  # these sends alone, acknowledged here
            for event in effects.emits:
                await rt.emit(event)
        save_state(rt, effects.then)
    _count(rt, effects)


async def send_turn(rt: Runtime, turn: SessionTurn) -> None:
    """A session turn, keyed by its session, acknowledged before this returns."""
    sent = await rt.topic(topics.SESSIONS).send(
        key=turn.session_id.encode(), value=rt.codec.encode(turn), force=True
    )
    await sent


def _count(rt: Runtime, effects: Effects) -> None:
    if effects.decided is not None:
        rt.count_response(effects.decided)
    if effects.cache_hit:
        rt.metrics.cache_hits.inc()
    if effects.decomposed:
        rt.metrics.decomposed.inc()
