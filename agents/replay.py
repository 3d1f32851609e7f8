"""Audits from the log: re-derive a request's final response from its recorded events with
the real decision functions, compare it with the recorded one, and re-decide recorded
requests under another guardian policy. Pure: no I/O, no model.

Time is taken from the log: intake decided at the ``occurred_at`` of the round-1 task (or
of the response of a request it rejected), and each verdict or deadline was decided at the
``occurred_at`` of what the refine stage emitted for it, so the re-derived events carry the
recorded timestamps and latencies. Verdicts and deadlines are taken oldest first: the log
does not say in which order the stage took a verdict and a deadline that reached it
together, so a verdict that lost that race shows as a divergence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final, Literal

from agents import admission, refinement
from agents.admission import Admitted
from agents.config import GuardianPolicy, PipelineConfig
from agents.effects import Effects, Refused
from agents.guardian import Signals, judge, verdict_for
from agents.intake import payload_digest
from agents.refine import RequestState, Step, on_deadline
from schemas.envelope import Event
from schemas.request_events import (
    DeadlinePassed,
    RequestSubmitted,
    ResponseDelivered,
    SpecialistAnswered,
    TaskAssigned,
    VerdictIssued,
)

DECISION_FIELDS: Final = (
    "status",
    "content",
    "confidence",
    "rounds",
    "best_round",
    "reason",
    "reason_code",
    "specialists",
    "models",
    "prompt_tokens",
    "completion_tokens",
    "config_version",
)
"""What a final response decided; ids, timestamps and latency are not decisions."""
WHAT_IF_FIELDS: Final = tuple(f for f in DECISION_FIELDS if f != "config_version")
"""What is compared when every request is re-derived under one given configuration."""
TASK_FIELDS: Final = (
    "specialist",
    "instruction",
    "system_prompt",
    "prompt_version",
    "critique",
    "previous_attempt",
    "temperature",
    "max_tokens",
    "answer_format",
    "priority",
    "deadline_at",
    "output_constraint",
    "constraints",
)
"""What a task asked of the specialist."""
NO_SIGNALS: Final = Signals(alignment=0.0, new_pii=())
"""What the guardian stage judges a failed or empty answer with (it measures nothing)."""

RefineInput = VerdictIssued | DeadlinePassed
TaskKey = tuple[str, int]
"""(subtask, round)."""


def decision_fields(response: ResponseDelivered) -> dict[str, object]:
    return {name: getattr(response, name) for name in DECISION_FIELDS}


@dataclass(frozen=True)
class Recorded:
    """One request's recorded events, sorted out by kind."""

    request: RequestSubmitted | None
    tasks: Mapping[TaskKey, TaskAssigned]
    """The first recorded task of each subtask and round."""
    answers: Mapping[str, SpecialistAnswered]
    """By event id."""
    inputs: tuple[RefineInput, ...]
    """The refine stage's inputs, oldest first (verdicts before deadlines on a tie)."""
    responses: tuple[ResponseDelivered, ...]

    @classmethod
    def of(cls, events: Sequence[Event]) -> Recorded:
        ordered = sorted(events, key=lambda e: e.occurred_at)
        # A conflicting resend and the rejection addressed to it are no part of the
        # request: neither its submission nor its final answer.
        answered = [e for e in ordered if isinstance(e, ResponseDelivered)]
        elsewhere = {r.submission_id for r in answered if not r.is_final}
        requests = [
            e for e in ordered if isinstance(e, RequestSubmitted) and e.event_id not in elsewhere
        ]
        accepted = requests[0].event_id if requests else None
        tasks: dict[TaskKey, TaskAssigned] = {}
        for task in (e for e in ordered if isinstance(e, TaskAssigned)):
            tasks.setdefault((task.subtask, task.round), task)
        inputs = [e for e in ordered if isinstance(e, RefineInput)]
        inputs.sort(key=lambda e: (e.occurred_at, isinstance(e, DeadlinePassed)))
        return cls(
            request=requests[0] if requests else None,
            tasks=tasks,
            answers={e.event_id: e for e in ordered if isinstance(e, SpecialistAnswered)},
            inputs=tuple(inputs),
            responses=tuple(r for r in answered if r.submission_id in (None, accepted)),
        )

    @property
    def intake_time(self) -> datetime | None:
        """When intake decided: its round-1 task, or the response of a rejection."""
        first = [t.occurred_at for (_, round_), t in self.tasks.items() if round_ == 1]
        if first:
            return min(first)
        return self.responses[0].occurred_at if self.responses else None

    @property
    def response(self) -> ResponseDelivered | None:
        return self.responses[0] if self.responses else None

    @property
    def config_version(self) -> int | None:
        """The configuration version intake admitted the request under: its round-1
        tasks, or its response when it has none (a rejection, a request that waited)."""
        firsts = [t for (_, round_), t in self.tasks.items() if round_ == 1]
        if firsts:
            return min(firsts, key=lambda t: t.occurred_at).config_version
        return self.response.config_version if self.response is not None else None


Configs = PipelineConfig | Mapping[int, PipelineConfig]
"""One configuration for every request, or the configuration of each version (the
config history): a request is re-derived under the version it was admitted with."""


def config_of(recorded: Recorded, configs: Configs) -> PipelineConfig | None:
    """The configuration to re-derive ``recorded`` under (None: its version is unknown)."""
    if isinstance(configs, PipelineConfig):
        return configs
    version = recorded.config_version
    return configs.get(version) if version is not None else None


@dataclass(frozen=True)
class Replayed:
    """What the decision functions emit when fed a request's recorded inputs."""

    response: ResponseDelivered | None
    tasks: Mapping[TaskKey, TaskAssigned]


def replay(
    recorded: Recorded,
    config: PipelineConfig,
    *,
    verdicts: Mapping[str, VerdictIssued] | None = None,
    max_rounds: int | None = None,
) -> Replayed | None:
    """Feed intake, then every recorded verdict and deadline, through the stages' own
    decision functions (``agents.admission``, ``agents.refinement``) under ``config``,
    the configuration the request was admitted with (its experiment arm is chosen from
    it exactly as intake chose it).

    ``verdicts`` replaces recorded verdicts by event id (a what-if); ``max_rounds`` caps
    the request's rounds. None when the log lacks the request or intake's decision, and
    for a cache hit (its decision is the copied answer's, audited with that request).
    """
    request, at = recorded.request, recorded.intake_time
    if request is None or at is None:
        return None
    if recorded.response is not None and recorded.response.cache_hit:
        return None  # decided by the answer it copies (``cached_from``), not by these events
    firsts = {s: t for (s, round_), t in recorded.tasks.items() if round_ == 1}
    digest = payload_digest(request)
    # A session request was validated before its context came: no later than the
    # request and its tasks.
    when = min(at, request.occurred_at) if request.session_id and firsts else at
    decided = admission.on_request(request, digest, None, None, when, config)
    context = next(iter(firsts.values())).context if firsts else ()
    if isinstance(decided, Effects):
        if decided.response is not None:  # rejected at intake
            return Replayed(decided.response, {})
        held = decided.state
        assert held is not None
        assert held.awaiting is not None
        if not firsts:
            return _timed_out_waiting(recorded, held)
        decided = Admitted(held.awaiting, digest)
    admitted = replace(decided, context=context)
    if max_rounds is not None:
        capped = min(admitted.request.max_rounds or config.refine.max_rounds, max_rounds)
        admitted = replace(
            admitted, request=admitted.request.model_copy(update={"max_rounds": capped})
        )
    routes = {s: (t.deployment, t.degraded_route) for s, t in firsts.items()}
    begun = admission.begin(
        admitted, at, config, cache_hit=None, route=lambda s: routes.get(s, ("", False))
    )
    assert begun.state is not None
    state = begun.state
    tasks = {(t.subtask, t.round): t for t in begun.emits if isinstance(t, TaskAssigned)}
    for event in recorded.inputs:
        if state.done:
            break
        if isinstance(event, VerdictIssued) and verdicts is not None:
            event = verdicts.get(event.event_id, event)
        step = _decide(state, event, recorded, config)
        for task in step.tasks:
            tasks.setdefault((task.subtask, task.round), task)
        state = step.state
    return Replayed(state.final, tasks)


def _timed_out_waiting(recorded: Recorded, held: RequestState) -> Replayed:
    """A session request whose deadline passed before its context came: held, then
    finalized by the recorded deadline (its deadline is the one that event names)."""
    deadlines = [e for e in recorded.inputs if isinstance(e, DeadlinePassed)]
    state = held
    for passed in deadlines:
        state = state.model_copy(update={"deadline_at": passed.deadline_at})
        emitted = recorded.response.occurred_at if recorded.response else passed.occurred_at
        step = on_deadline(state, max(passed.occurred_at, emitted))
        if step.response is not None:
            return Replayed(step.response, {})
    return Replayed(None, {})


def _decide(
    state: RequestState, event: RefineInput, recorded: Recorded, config: PipelineConfig
) -> Step:
    """Decide at the event's time, then again at the time the live stage emitted the result
    (a verdict's decision does not depend on time; a deadline's holds from then on)."""
    step = _apply(state, event, event.occurred_at, config)
    emitted_at = _emitted_at(step, state, recorded)
    if emitted_at is None:
        return step
    if isinstance(event, DeadlinePassed) and emitted_at <= event.occurred_at:
        return step
    return _apply(state, event, emitted_at, config)


def _apply(state: RequestState, event: RefineInput, now: datetime, config: PipelineConfig) -> Step:
    """The refine stage's decision for ``event``, as the state it leaves and what it sends."""
    effects = refinement.on_input(event, state, None, now, config)
    assert not isinstance(effects, Refused)
    tasks = tuple(e for e in effects.emits if isinstance(e, TaskAssigned))
    return Step(state=effects.state or state, tasks=tasks, response=effects.response)


def _emitted_at(step: Step, before: RequestState, recorded: Recorded) -> datetime | None:
    """When the live stage emitted what ``step`` emits, if the log has it."""
    if step.response is not None and not before.done:
        return recorded.response.occurred_at if recorded.response is not None else None
    waiting = {(t.subtask, t.round) for t in before.open_tasks}
    for new in (t for t in step.tasks if (t.subtask, t.round) not in waiting):
        task = recorded.tasks.get((new.subtask, new.round))
        return task.occurred_at if task is not None else None
    return None


def rederive(events: Sequence[Event], config: PipelineConfig) -> ResponseDelivered | None:
    """The final response the decision functions give for one request's recorded events."""
    replayed = replay(Recorded.of(events), config)
    return replayed.response if replayed is not None else None


# --- verify ------------------------------------------------------------------


@dataclass(frozen=True)
class Divergence:
    """A decision the log records differently from what its inputs re-derive to."""

    request_id: str
    field: str
    recorded: object
    rederived: object


@dataclass(frozen=True)
class VerifyReport:
    checked: int
    """Requests with a recorded request, intake decision and final response."""
    skipped: int
    """Requests the log holds only part of (in flight, or begun before what was read)."""
    divergences: tuple[Divergence, ...]


def compare(events: Sequence[Event], configs: Configs) -> list[Divergence] | None:
    """Divergences of one request; None when the log does not hold all of it (or the
    configuration version it was admitted with)."""
    recorded = Recorded.of(events)
    config = config_of(recorded, configs)
    if config is None:
        return None
    replayed = replay(recorded, config)
    if replayed is None or recorded.response is None:
        return None
    rid = recorded.response.request_id
    # Under one forced version (a what-if), the version itself differs by design.
    fields = DECISION_FIELDS if not isinstance(configs, PipelineConfig) else WHAT_IF_FIELDS
    found = _response_divergences(rid, recorded, replayed.response, fields)
    for key in sorted(set(recorded.tasks) | set(replayed.tasks)):
        found += _task_divergences(rid, key, recorded.tasks.get(key), replayed.tasks.get(key))
    return found


def _response_divergences(
    rid: str,
    recorded: Recorded,
    rederived: ResponseDelivered | None,
    fields: tuple[str, ...] = DECISION_FIELDS,
) -> list[Divergence]:
    assert recorded.response is not None
    if rederived is None:
        return [Divergence(rid, "response", recorded.response.status, None)]
    mine, theirs = decision_fields(rederived), decision_fields(recorded.response)
    found = [Divergence(rid, f, theirs[f], mine[f]) for f in fields if mine[f] != theirs[f]]
    distinct = {tuple(decision_fields(r).values()) for r in recorded.responses}
    if len(distinct) > 1:
        found.append(Divergence(rid, "responses", len(distinct), 1))
    return found


def _task_divergences(
    rid: str, key: TaskKey, recorded: TaskAssigned | None, rederived: TaskAssigned | None
) -> list[Divergence]:
    subtask, round_ = key
    name = f"task[{round_}]" if subtask == "main" else f"task[{subtask}/{round_}]"
    if recorded is None or rederived is None:
        return [Divergence(rid, name, recorded is not None, rederived is not None)]
    return [
        Divergence(rid, f"{name}.{f}", getattr(recorded, f), getattr(rederived, f))
        for f in TASK_FIELDS
        if getattr(recorded, f) != getattr(rederived, f)
    ]


def verify_report(
    events_by_request: Mapping[str, Sequence[Event]], configs: Configs
) -> VerifyReport:
    checked = skipped = 0
    found: list[Divergence] = []
    for events in events_by_request.values():
        divergences = compare(events, configs)
        if divergences is None:
            skipped += 1
            continue
        checked += 1
        found += divergences
    return VerifyReport(checked=checked, skipped=skipped, divergences=tuple(found))


def verify(events_by_request: Mapping[str, Sequence[Event]], configs: Configs) -> list[Divergence]:
    """Every divergence between the log's decisions and those its inputs re-derive to."""
    return list(verify_report(events_by_request, configs).divergences)


# --- rescore -----------------------------------------------------------------

Flip = Literal["pass_to_fail", "fail_to_pass", "content"]
Policy = GuardianPolicy | Callable[[PipelineConfig], GuardianPolicy]
"""The guardian policy to re-judge under: one for all, or one per request's config."""


@dataclass(frozen=True)
class Rescored:
    """One request's recorded final decision next to the what-if one."""

    request_id: str
    recorded: ResponseDelivered
    rescored: ResponseDelivered

    @property
    def flip(self) -> Flip | None:
        before, after = self.recorded.status == "passed", self.rescored.status == "passed"
        if before and not after:
            return "pass_to_fail"
        if after and not before:
            return "fail_to_pass"
        return "content" if self.recorded.content != self.rescored.content else None


@dataclass(frozen=True)
class RescoreSummary:
    requests: int
    """Requests re-decided (those with recorded answers and a final response)."""
    skipped: int
    """Rejected, incomplete, or without recorded verdicts."""
    outcomes: tuple[Rescored, ...]

    def count(self, flip: Flip) -> int:
        return sum(1 for o in self.outcomes if o.flip == flip)

    @property
    def flipped(self) -> tuple[Rescored, ...]:
        return tuple(o for o in self.outcomes if o.flip is not None)


def needs_signals(answer: SpecialistAnswered) -> bool:
    """Whether the guardian stage measures this answer (it skips failed and empty ones)."""
    return answer.status == "ok" and bool(answer.content.strip())


def answers_to_measure(
    events_by_request: Mapping[str, Sequence[Event]],
) -> list[SpecialistAnswered]:
    """The recorded answers whose signals ``rescore`` needs, once each."""
    seen: dict[str, SpecialistAnswered] = {}
    for events in events_by_request.values():
        for e in events:
            if isinstance(e, SpecialistAnswered) and needs_signals(e):
                seen.setdefault(e.event_id, e)
    return list(seen.values())


def rejudge(
    answer: SpecialistAnswered, recorded: VerdictIssued, signals: Signals, policy: GuardianPolicy
) -> VerdictIssued:
    """The verdict ``policy`` gives the answer, in place of (and timed as) the recorded one."""
    verdict = verdict_for(
        answer,
        judge(answer, signals, policy),
        policy,
        recorded.occurred_at,
        recorded.config_version,
    )
    return verdict.model_copy(update={"event_id": recorded.event_id})


def rescore_request(
    events: Sequence[Event],
    signals: Mapping[str, Signals],
    configs: Configs,
    policy: Policy,
) -> Rescored | None:
    """Re-judge a request's recorded answers under ``policy`` and re-decide it using only
    the recorded rounds, under the configuration ``configs`` gives it. None when the
    request is not re-scorable."""
    recorded = Recorded.of(events)
    config = config_of(recorded, configs)
    if config is None:
        return None
    policy = policy(config) if callable(policy) else policy
    verdicts = [e for e in recorded.inputs if isinstance(e, VerdictIssued)]
    if recorded.response is None or recorded.response.status == "rejected" or not verdicts:
        return None
    replaced: dict[str, VerdictIssued] = {}
    for v in verdicts:
        answer = recorded.answers.get(v.answer_event_id)
        if answer is None:
            return None
        measured = signals[answer.event_id] if needs_signals(answer) else NO_SIGNALS
        replaced[v.event_id] = rejudge(answer, v, measured, policy)
    replayed = replay(recorded, config, verdicts=replaced)
    if replayed is not None and replayed.response is None:
        # The recorded rounds ran out before the what-if finished: stop at the last one.
        last = max(v.round for v in verdicts)
        replayed = replay(recorded, config, verdicts=replaced, max_rounds=last)
    if replayed is None or replayed.response is None:
        return None
    return Rescored(recorded.response.request_id, recorded.response, replayed.response)


def rescore(
    events_by_request: Mapping[str, Sequence[Event]],
    signals: Mapping[str, Signals],
    configs: Configs,
    policy: Policy,
) -> RescoreSummary:
    """Re-decide every request under ``policy``: see ``rescore_request``.

    ``signals`` holds the re-measured signals of every answer ``answers_to_measure`` lists,
    by answer event id.
    """
    outcomes = [rescore_request(ev, signals, configs, policy) for ev in events_by_request.values()]
    done = tuple(o for o in outcomes if o is not None)
    return RescoreSummary(requests=len(done), skipped=len(outcomes) - len(done), outcomes=done)
