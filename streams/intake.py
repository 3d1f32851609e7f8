"""intake_stage: decode, co-locate, dedupe, validate, answer from the cache, or plan the
request (route and decompose it) and assign its first tasks; or reject it. A session
request first asks the context maintainer for its session's turns and is planned when
``ContextProvided`` comes back (on the contexts topic, which this stage also reads)."""

from __future__ import annotations

import logging

from agents import admission
from agents.admission import Admitted
from agents.config import PipelineConfig
from agents.effects import Effects, Refused
from agents.intake import payload_digest
from connectors.kafka import partition_for
from schemas import topics
from schemas.errors import DecodeError, DecodeReason
from schemas.request_events import ContextProvided, RequestSubmitted
from streams import answer_cache, effects
from streams.refine_table import load_marker, load_state
from streams.routing import choose
from streams.runtime import Runtime
from streams.stage import Record, run

_log = logging.getLogger(__name__)


def register(rt: Runtime) -> None:
    source = rt.sources(topics.REQUESTS, topics.CONTEXTS)

    @rt.app.agent(source, name="intake_stage")
    async def intake_stage(stream: object) -> None:
        await run(rt, "intake", stream, lambda record: handle(rt, record))


async def handle(rt: Runtime, record: Record) -> None:
    event = rt.codec.decode_any(record.value)
    if isinstance(event, ContextProvided):
        known = load_state(rt, event.request_id)
        marker = load_marker(rt, event.request_id) if known is None else None
        # Planned under the configuration it was admitted with.
        config = rt.config_at(known.config_version) if known else rt.live_config()
        await _carry_out(rt, admission.on_context(event, known, marker), config)
        return
    if not isinstance(event, RequestSubmitted):
        raise DecodeError(DecodeReason.WRONG_RECORD, f"intake does not take {event.record_name}")
    home = partition_for(event.request_id.encode(), rt.partitions)
    if record.partition != home:
        # Produced with another partitioner: move it where its request_id's other
        # events (and its table entry) live, then handle it there.
        await rt.forward(topics.REQUESTS, event.request_id.encode(), record.value, home)
        return
    known = load_state(rt, event.request_id)
    marker = load_marker(rt, event.request_id) if known is None else None
    config = rt.live_config()
    decision = admission.on_request(event, payload_digest(event), known, marker, rt.clock(), config)
    await _carry_out(rt, decision, config)


async def _carry_out(
    rt: Runtime, decision: Effects | Admitted | Refused, config: PipelineConfig
) -> None:
    """Apply a decision; an admitted request is looked up in the cache, then begun."""
    if isinstance(decision, Admitted):
        hit = await answer_cache.lookup(rt, decision.request, decision.context)
        decision = admission.begin(
            decision,
            rt.clock(),
            config,
            cache_hit=hit,
            route=lambda subtask: choose(rt, decision.request.request_id, subtask),
        )
    await effects.apply(rt, decision)
