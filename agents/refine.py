"""The refinement loop as a state machine over one request: start, verdict, deadline.

A request runs as the subtasks of its plan (one ``main`` subtask unless the router
decomposed it). Each subtask has its own loop: its verdicts re-ask it with the
critique until it passes or runs out of rounds, and it settles on its best attempt.
A subtask starts once everything it depends on has settled (``synthesis`` gets their
results in its instruction), and the last subtask's best attempt is the response.

Pure: the stage passes the state, the event and the time in, and emits what
comes back. Every emitted event has a deterministic id, so a re-emission after
a crash is the same event, and a finished request only ever re-emits its one
final response.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from agents.config import PipelineConfig, RefinePolicy
from agents.ids import stable_id, task_id
from agents.intake import asked
from agents.lessons import scope_of, with_lessons
from agents.router import EARLIER_RESULTS, Complexity, Plan, Subtask, synthesis_instruction
from agents.specialists import profile_for
from schemas.envelope import Millis
from schemas.request_events import (
    Constraint,
    RequestSubmitted,
    ResponseDelivered,
    ResponseStatus,
    TaskAssigned,
    VerdictIssued,
)


class Attempt(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    round: int
    passed: bool
    score: float
    content: str
    ok: bool
    specialist: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    verdict_event_id: str
    critique: str = ""
    constraints_met: float = 1.0
    """Share of the request's verifiable constraints the answer met (1.0: none failed)."""
    unsafe: tuple[str, ...] = ()
    """The safety gate's failures that make the answer unfit to return (``WITHHELD``)."""


WITHHELD = frozenset({"pii", "leak"})
"""Safety-gate failures whose content is never returned: personal data the question did
not hold, the system prompt repeated (a refusal is a failure, not a danger)."""

SubtaskStatus = Literal["passed", "failed", "error"]


class SubtaskRun(BaseModel):
    """One subtask of the plan and its own refinement loop."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subtask: str
    specialist: str
    instruction: str
    """The plan's instruction; a subtask with dependencies gets their results added when
    it starts."""
    depends_on: tuple[str, ...] = ()
    deployment: str
    degraded_route: bool = False
    round: int = 0
    """0 until it starts (its dependencies are done)."""
    current_task: TaskAssigned | None = None
    attempts: tuple[Attempt, ...] = ()
    status: SubtaskStatus | None = None
    """Set when it is done: its best attempt passed, failed, or there is none."""
    started_by: str = ""
    """The verdict whose subtask settled last among its dependencies (none: intake)."""

    @property
    def started(self) -> bool:
        return self.round > 0

    @property
    def done(self) -> bool:
        return self.status is not None

    @property
    def best(self) -> Attempt | None:
        return best_attempt(self.attempts)


class RequestState(BaseModel):
    """What the loop remembers about one request (the refinement table's value)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str
    request_event_id: str
    payload_digest: str
    submitted_at: Millis
    deadline_at: Millis
    max_rounds: int
    tenant: str
    session_id: str | None
    variant: str | None = None
    config_version: int
    prompt: str = ""
    answer_format: str = "text"
    constraints: tuple[Constraint, ...] = ()
    """The client-declared constraints (``response_format``'s schema included)."""
    max_tokens: int | None = None
    temperature: float | None = None
    priority: int = 5
    task_class: str = ""
    complexity_level: str = ""
    complexity_score: float = 0.0
    context: tuple[str, ...] = ()
    runs: tuple[SubtaskRun, ...] = ()
    """The plan's subtasks in plan order; the last one's answer is the response."""
    awaiting: RequestSubmitted | None = None
    """A session request waiting for its session's context before it is planned."""
    final: ResponseDelivered | None = None
    final_sent: bool = False
    """The broker acknowledged the final response: redeliveries of this request's
    verdicts, deadlines and context are dropped, not answered again."""

    @property
    def done(self) -> bool:
        return self.final is not None

    @property
    def single(self) -> bool:
        """Not decomposed: one subtask answers."""
        return len(self.runs) <= 1

    @property
    def final_run(self) -> SubtaskRun | None:
        return self.runs[-1] if self.runs else None

    @property
    def round(self) -> int:
        """The round of the subtask that answers (``main``, or ``synthesis``)."""
        return self.final_run.round if self.final_run else 0

    @property
    def current_task(self) -> TaskAssigned | None:
        return self.final_run.current_task if self.final_run else None

    @property
    def attempts(self) -> tuple[Attempt, ...]:
        return self.final_run.attempts if self.final_run else ()

    @property
    def open_tasks(self) -> tuple[TaskAssigned, ...]:
        """The tasks assigned and still waiting for their verdict."""
        return tuple(
            r.current_task
            for r in self.runs
            if r.started and not r.done and r.current_task is not None
        )

    @model_validator(mode="before")
    @classmethod
    def _one_loop_layout(cls, data: Any) -> Any:
        """Read a state stored before requests had subtasks: its one loop (``round``,
        ``current_task``, ``attempts`` at the top) becomes the ``main`` run."""
        if not isinstance(data, dict) or not {"round", "current_task", "attempts"} & data.keys():
            return data
        data = dict(data)
        round_, task = data.pop("round", 0), data.pop("current_task", None)
        attempts = data.pop("attempts", ())
        if not isinstance(task, dict):
            return data
        data.setdefault("prompt", task.get("instruction", ""))
        data.setdefault("answer_format", task.get("answer_format", "text"))
        data.setdefault("priority", task.get("priority", 5))
        main = {
            "subtask": "main",
            "specialist": task.get("specialist", "general"),
            "instruction": task.get("instruction", ""),
            "deployment": task.get("deployment", ""),
            "degraded_route": task.get("degraded_route", False),
            "round": round_,
            "current_task": task,
            "attempts": attempts,
        }
        data["runs"] = [main]
        return data

    @property
    def unanswered(self) -> bool:
        """Planned, and no verdict counted yet on any subtask."""
        return bool(self.runs) and not any(r.attempts for r in self.runs)

    def run(self, subtask: str) -> SubtaskRun | None:
        return next((r for r in self.runs if r.subtask == subtask), None)

    def with_run(self, run: SubtaskRun) -> RequestState:
        runs = tuple(run if r.subtask == run.subtask else r for r in self.runs)
        return self.model_copy(update={"runs": runs})


@dataclass(frozen=True)
class Step:
    """The new state and what to emit (nothing, tasks, or the final response)."""

    state: RequestState
    tasks: tuple[TaskAssigned, ...] = ()
    response: ResponseDelivered | None = None

    @property
    def task(self) -> TaskAssigned | None:
        """The first task emitted, if any."""
        return self.tasks[0] if self.tasks else None


Route = tuple[str, bool]
"""(deployment, degraded): where a subtask's tasks go, and whether that pick was made
although no weighted deployment was healthy."""


def start(
    request: RequestSubmitted,
    digest: str,
    now: datetime,
    config: PipelineConfig,
    *,
    deployment: str,
    degraded_route: bool = False,
    plan: Plan | None = None,
    routes: Mapping[str, Route] | None = None,
) -> Step:
    """Accept a validated request: record its plan (one ``main`` subtask when none is
    given) and assign round 1 of every subtask without dependencies. A subtask goes to
    its entry in ``routes``, else to ``deployment``."""
    routed = plan is not None
    plan = plan or single_plan(request.prompt)
    routes = routes or {}
    runs = tuple(
        SubtaskRun(
            subtask=s.subtask,
            specialist=s.specialist,
            instruction=s.instruction,
            depends_on=s.depends_on,
            deployment=routes.get(s.subtask, (deployment, degraded_route))[0],
            degraded_route=routes.get(s.subtask, (deployment, degraded_route))[1],
        )
        for s in plan.subtasks
    )
    state = awaiting_context(request, digest, now, config).model_copy(
        update={
            "awaiting": None,
            "task_class": plan.task_class if routed else "",
            "complexity_level": plan.complexity.level if routed else "",
            "complexity_score": plan.complexity.score if routed else 0.0,
            "context": plan.context,
            "runs": runs,
        }
    )
    return _advance(state, now, config)


def awaiting_context(
    request: RequestSubmitted, digest: str, now: datetime, config: PipelineConfig
) -> RequestState:
    """A validated session request, held until the context maintainer answers (or its
    deadline passes: it then times out like any request). ``start`` begins from it."""
    timeout = timedelta(seconds=config.refine.default_timeout_s)
    answer_format, declared = asked(request)
    return RequestState(
        request_id=request.request_id,
        request_event_id=request.event_id,
        payload_digest=digest,
        submitted_at=request.occurred_at,
        deadline_at=request.deadline_at or (now + timeout),
        max_rounds=request.max_rounds or config.refine.max_rounds,
        tenant=request.tenant,
        session_id=request.session_id,
        variant=request.variant,
        config_version=config.version,
        prompt=request.prompt,
        answer_format=answer_format,
        constraints=declared,
        max_tokens=request.max_tokens,
        temperature=request.temperature,
        priority=request.priority,
        awaiting=request,
    )


def single_plan(prompt: str) -> Plan:
    """The plan of a request that is not decomposed: one ``main`` subtask, as asked."""
    main = Subtask(subtask="main", specialist="general", instruction=prompt)
    return Plan(task_class="conversation", complexity=SIMPLE, subtasks=(main,))


SIMPLE = Complexity(
    score=0.0, level="simple", words=0, questions=0, asks=1, reasoning_cues=0, structure=0
)


def _advance(state: RequestState, now: datetime, config: PipelineConfig, cause: str = "") -> Step:
    """Assign round 1 of every subtask whose dependencies are all done (``cause``: the
    verdict that settled the last of them)."""
    done = {r.subtask for r in state.runs if r.done}
    tasks: list[TaskAssigned] = []
    for run in state.runs:
        if run.started or not set(run.depends_on) <= done:
            continue
        if run.depends_on:
            run = run.model_copy(update={"instruction": _with_results(state, run)})
        task = _task(state, run, 1, now, config)
        started = {"round": 1, "current_task": task, "started_by": cause}
        state = state.with_run(run.model_copy(update=started))
        tasks.append(task)
    return Step(state=state, tasks=tuple(tasks))


def _with_results(state: RequestState, run: SubtaskRun) -> str:
    """The instruction of a subtask that depends on others, with their results in it."""
    results = {}
    for dep in run.depends_on:
        done = state.run(dep)
        best = done.best if done is not None else None
        results[dep] = best.content if best is not None else ""
    if run.specialist == "synthesis":
        return synthesis_instruction(state.prompt, results)
    notes = "\n\n".join(f"[{sid}]\n{text or '(no answer)'}" for sid, text in results.items())
    return f"{run.instruction}{EARLIER_RESULTS}{notes}"


def _task(
    state: RequestState,
    run: SubtaskRun,
    round_: int,
    now: datetime,
    config: PipelineConfig,
    *,
    critique: str | None = None,
    previous: str | None = None,
    constraint: str | None = None,
    reasked_for: tuple[str, ...] = (),
) -> TaskAssigned:
    profile = profile_for(config.specialist, run.specialist)
    tid = task_id(state.request_id, run.subtask, round_)
    answers = state.final_run is not None and run.subtask == state.final_run.subtask
    answer_format = state.answer_format if answers else "text"
    lessons = config.specialist.lessons.get(scope_of(answer_format, state.task_class), [])
    return TaskAssigned(
        event_id=stable_id(tid, "task"),
        request_id=state.request_id,
        occurred_at=now,
        config_version=config.version,
        variant=state.variant,
        task_id=tid,
        subtask=run.subtask,
        round=round_,
        specialist=profile.name,
        deployment=run.deployment,
        instruction=run.instruction,
        system_prompt=with_lessons(profile.system_prompt, lessons),
        prompt_version=profile.prompt_version,
        context=state.context,
        critique=critique,
        previous_attempt=previous,
        temperature=round_temperature(
            profile.temperature if state.temperature is None else state.temperature,
            round_,
            config.refine,
        ),
        max_tokens=state.max_tokens or profile.max_tokens,
        answer_format=answer_format,
        constraints=state.constraints if answers else (),
        priority=state.priority,
        deadline_at=state.deadline_at,
        output_constraint=constraint,
        task_class=state.task_class,
        complexity_level=state.complexity_level,
        complexity_score=state.complexity_score,
        depends_on=run.depends_on,
        degraded_route=run.degraded_route,
        reasked_for=reasked_for,
    )


def round_temperature(base: float, round_: int, policy: RefinePolicy) -> float:
    """Later rounds sample wider: a re-ask at the same temperature tends to repeat itself."""
    return min(policy.max_temperature, base + policy.temperature_step * (round_ - 1))


def on_verdict(
    state: RequestState, verdict: VerdictIssued, now: datetime, config: PipelineConfig
) -> Step:
    """Record a verdict on one subtask; re-ask it with the critique, or settle it on its
    best attempt, start what waited for it, and finalize once the answering one settles."""
    if state.done:
        return Step(state=state, response=state.final)
    run = state.run(verdict.subtask)
    if (
        run is None
        or verdict.round != run.round
        or any(a.round == verdict.round for a in run.attempts)
    ):
        return _duplicate(state, run, verdict)
    run = run.model_copy(update={"attempts": (*run.attempts, _attempt(verdict))})
    if not verdict.passed and run.round < state.max_rounds and _worth_reasking(verdict, config):
        return _reask(state, run, verdict, now, config)
    run = run.model_copy(update={"status": _settled(run)})
    state = state.with_run(run)
    if state.final_run is not None and run.subtask == state.final_run.subtask:
        return _finalize(state, now, run.status or "error")
    return _advance(state, now, config, cause=verdict.event_id)


EXACT_FAILURES = frozenset(
    {"constraint", "format", "pii", "leak", "refusal", "empty", "model_error"}
)
"""Failures found by an exact check, not by a similarity or a score."""


def _worth_reasking(verdict: VerdictIssued, config: PipelineConfig) -> bool:
    if config.refine.reask_on == "any":
        return True
    return bool(EXACT_FAILURES & set(verdict.failure_classes))


def _reask(
    state: RequestState,
    run: SubtaskRun,
    verdict: VerdictIssued,
    now: datetime,
    config: PipelineConfig,
) -> Step:
    current = run.current_task
    assert current is not None
    if not config.refine.critique:
        # Resampling only: the same question again, nothing said about the last try.
        task = _task(state, run, run.round + 1, now, config, reasked_for=verdict.failure_classes)
        run = run.model_copy(update={"round": run.round + 1, "current_task": task})
        return Step(state=state.with_run(run), tasks=(task,))
    previous = verdict.content if verdict.content else current.previous_attempt
    if not config.refine.show_previous and not _constraint(current, verdict):
        previous = None
    task = _task(
        state,
        run,
        run.round + 1,
        now,
        config,
        critique=verdict.critique
        or current.critique
        or "The previous attempt failed; answer the question again.",
        previous=previous,
        constraint=_constraint(current, verdict),
        reasked_for=verdict.failure_classes,
    )
    run = run.model_copy(update={"round": run.round + 1, "current_task": task})
    return Step(state=state.with_run(run), tasks=(task,))


def _settled(run: SubtaskRun) -> SubtaskStatus:
    best = run.best
    if best is None:
        return "error"
    return "passed" if best.passed else "failed"


def _constraint(task: TaskAssigned, verdict: VerdictIssued) -> str | None:
    """Escalate to constrained JSON decoding once a JSON answer failed on its format."""
    if task.output_constraint is not None:
        return task.output_constraint
    if task.answer_format == "json" and "format" in verdict.failure_classes:
        return "json"
    return None


def _duplicate(state: RequestState, run: SubtaskRun | None, verdict: VerdictIssued) -> Step:
    """A verdict already counted (or for no subtask of this request). Re-emit the tasks
    it led to when they still wait for their verdicts: a redelivery after a crash may
    have lost those sends."""
    last = run.attempts[-1] if run is not None and run.attempts else None
    if run is None or last is None or last.verdict_event_id != verdict.event_id:
        return Step(state=state)
    waiting = state.open_tasks
    led_to = tuple(
        t
        for t in waiting
        if (t.subtask == run.subtask and not run.done)
        or (
            t.round == 1
            and (r := state.run(t.subtask)) is not None
            and r.started_by == verdict.event_id
        )
    )
    return Step(state=state, tasks=led_to)


def on_deadline(state: RequestState, now: datetime) -> Step:
    if state.done or now < state.deadline_at:
        return Step(state=state, response=state.final)
    return _finalize(state, now, "timeout")


def _attempt(v: VerdictIssued) -> Attempt:
    return Attempt(
        round=v.round,
        passed=v.passed,
        score=v.score,
        content=v.content,
        ok="model_error" not in v.failure_classes,
        specialist=v.specialist,
        model=v.model,
        prompt_tokens=v.prompt_tokens,
        completion_tokens=v.completion_tokens,
        verdict_event_id=v.event_id,
        critique=v.critique,
        constraints_met=next((s.score for s in v.scores if s.guardian == "constraints"), 1.0),
        unsafe=tuple(c for c in v.failure_classes if c in WITHHELD),
    )


def best_attempt(attempts: tuple[Attempt, ...]) -> Attempt | None:
    """Passing beats failing, then safe beats unsafe, then more of the request's exact
    constraints met (an exact signal beats the weighted score), then the higher score,
    then the earlier round."""
    usable = [a for a in attempts if a.ok]
    if not usable:
        return None
    return max(usable, key=lambda a: (a.passed, not a.unsafe, a.constraints_met, a.score, -a.round))


def _finalize(state: RequestState, now: datetime, status: ResponseStatus) -> Step:
    """The response: the answering subtask's best attempt, with the specialists, models
    and tokens of every subtask, and any subtask that did not pass named in the reason."""
    best = best_attempt(state.attempts)
    if best is None and status != "timeout":
        status = "error"
    reason, code = _reason(status, best, _unsettled(state))
    if best is not None and best.unsafe:
        # Never returned: the reason says why there is no content.
        failed = ", ".join(best.unsafe)
        reason = f"the best attempt failed the safety gate ({failed}) and is withheld; {reason}"
    spent = tuple(a for r in state.runs for a in r.attempts)
    response = ResponseDelivered(
        event_id=stable_id(state.request_id, "response"),
        request_id=state.request_id,
        occurred_at=now,
        config_version=state.config_version,
        variant=state.variant,
        status=status,
        content=best.content if best and not best.unsafe else "",
        confidence=best.score if best else 0.0,
        rounds=len(state.attempts),
        best_round=best.round if best else 0,
        reason=reason,
        reason_code=code,
        specialists=tuple(sorted({a.specialist for a in spent if a.specialist})),
        models=tuple(sorted({a.model for a in spent if a.model})),
        prompt_tokens=sum(a.prompt_tokens for a in spent),
        completion_tokens=sum(a.completion_tokens for a in spent),
        latency_ms=max(0.0, (now - state.submitted_at).total_seconds() * 1000),
        tenant=state.tenant,
        session_id=state.session_id,
    )
    done = state.model_copy(update={"final": response, "awaiting": None})
    return Step(state=done, response=response)


def _unsettled(state: RequestState) -> str:
    """The subtasks before the answering one that did not pass, e.g. ``facts (failed)``."""
    return ", ".join(
        f"{r.subtask} ({r.status or 'unfinished'})" for r in state.runs[:-1] if r.status != "passed"
    )


def _reason(
    status: ResponseStatus, best: Attempt | None, unsettled: str
) -> tuple[str | None, str | None]:
    if status == "passed":
        if unsettled:
            return f"answered without a passing result from: {unsettled}", "subtask_failed"
        return None, None
    suffix = f"; subtasks without a passing result: {unsettled}" if unsettled else ""
    if status == "timeout":
        return f"the deadline passed; returning the best attempt so far{suffix}", "deadline"
    if status == "error":
        return f"no specialist produced an answer{suffix}", "model_error"
    critique = best.critique if best else ""
    return f"no attempt passed the guardians: {critique}".strip() + suffix, "guardians_failed"


def rejected(
    request: RequestSubmitted, code: str, reason: str, now: datetime, config_version: int
) -> ResponseDelivered:
    """The one final response of a request intake refused."""
    return ResponseDelivered(
        event_id=stable_id(request.request_id, "response"),
        request_id=request.request_id,
        occurred_at=now,
        config_version=config_version,
        variant=request.variant,
        status="rejected",
        reason=reason,
        reason_code=code,
        latency_ms=max(0.0, (now - request.occurred_at).total_seconds() * 1000),
        tenant=request.tenant,
        session_id=request.session_id,
    )


def closed(request: RequestSubmitted, digest: str, response: ResponseDelivered) -> RequestState:
    """The state of a request answered at intake (rejected): resends get the same answer."""
    return RequestState(
        request_id=request.request_id,
        request_event_id=request.event_id,
        payload_digest=digest,
        submitted_at=request.occurred_at,
        deadline_at=response.occurred_at,
        max_rounds=0,
        tenant=request.tenant,
        session_id=request.session_id,
        variant=request.variant,
        config_version=response.config_version,
        final=response,
    )
