"""The refine stage's decision, pure: a verdict or a deadline of a request, with the
request's state (or, once that has expired, its done marker), leads to the next
round's tasks or the final response. ``agents.refine`` holds the loop itself; this
adds what the stage does around it: the session's answer turn, the cache store, and
the answer again for a request that finished long ago."""

from __future__ import annotations

from datetime import datetime

from agents.config import PipelineConfig
from agents.effects import NOTHING, Effects, Refused, answer_turns, sent
from agents.experiment_plan import config_for
from agents.refine import RequestState, on_deadline, on_verdict
from agents.retention import DoneMarker
from schemas.request_events import DeadlinePassed, VerdictIssued

RefineInput = VerdictIssued | DeadlinePassed


def on_input(
    event: RefineInput,
    known: RequestState | None,
    marker: DoneMarker | None,
    now: datetime,
    config: PipelineConfig,
) -> Effects | Refused:
    """``config``: the configuration the request was admitted under (its arm is chosen
    here, as at intake)."""
    if known is None:
        if marker is None:
            return Refused("unknown_request", f"no refinement state for {event.request_id}")
        return NOTHING  # a late verdict or deadline of a request answered long ago
    if known.final_sent:
        return NOTHING  # redelivered after its final response was acknowledged
    if isinstance(event, VerdictIssued):
        step = on_verdict(known, event, now, config_for(config, known.variant))
    else:
        step = on_deadline(known, now)
    changed = step.state != known
    response = step.response
    return Effects(
        state=step.state if changed else None,
        # Again on a redelivery (the context maintainer counts it once): a crash may have
        # come between writing the final state and the broker taking the turn.
        turns=answer_turns(step.state, response) if response is not None else (),
        cache=(step.state, response) if response is not None and changed else None,
        emits=(*step.tasks, *((response,) if response is not None else ())),
        decided=response if changed else None,
        then=sent(step.state) if response is not None else None,
    )
