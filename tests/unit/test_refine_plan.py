"""A decomposed request in the refinement state machine: subtasks in parallel, each with
its own verdicts and rounds, a guarded synthesis over their results, one response."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from agents.config import PipelineConfig
from agents.refine import RequestState, Step, awaiting_context, on_deadline, on_verdict, start
from agents.replay import compare, rederive
from agents.router import Plan, route_request
from agents.specialists import ROLES
from schemas.envelope import Event
from schemas.request_events import (
    DeadlinePassed,
    RequestSubmitted,
    ResponseDelivered,
    TaskAssigned,
    VerdictIssued,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
CONFIG = PipelineConfig(version=2)
PROMPT = (
    "Explain how photosynthesis works and why it matters for climate, "
    "then compare C3 and C4 plants."
)
WORK = ("facts", "ask-1", "ask-2", "pitfalls")


def submitted(**fields: Any) -> RequestSubmitted:
    base: dict[str, Any] = {
        "event_id": "e-1",
        "request_id": "req-9",
        "occurred_at": T0,
        "prompt": PROMPT,
        "answer_format": "markdown",
        "priority": 8,
    }
    return RequestSubmitted(**{**base, **fields})


def the_plan(context: tuple[str, ...] = ()) -> Plan:
    return route_request(PROMPT, context)


def begin(context: tuple[str, ...] = ()) -> Step:
    routes = {"facts": ("dep-b", False), "synthesis": ("dep-c", True)}
    return start(
        submitted(), "d" * 64, T0, CONFIG, deployment="dep-a", plan=the_plan(context), routes=routes
    )


def verdict(task: TaskAssigned, *, passed: bool = True, n: int = 1, **fields: Any) -> VerdictIssued:
    base: dict[str, Any] = {
        "event_id": f"v-{task.task_id}",
        "request_id": task.request_id,
        "occurred_at": T0 + timedelta(seconds=n),
        "task_id": task.task_id,
        "subtask": task.subtask,
        "round": task.round,
        "answer_event_id": f"a-{task.task_id}",
        "passed": passed,
        "score": 0.9 if passed else 0.4,
        "threshold": 0.7,
        "critique": "" if passed else f"critique of {task.task_id}",
        "specialist": task.specialist,
        "deployment": task.deployment,
        "model": "m",
        "content": f"result of {task.task_id}",
        "prompt_tokens": 10,
        "completion_tokens": 5,
    }
    return VerdictIssued(**{**base, **fields})


def feed(state: RequestState, *verdicts: VerdictIssued) -> tuple[RequestState, list[Step]]:
    steps = []
    for v in verdicts:
        step = on_verdict(state, v, v.occurred_at, CONFIG)
        steps.append(step)
        state = step.state
    return state, steps


def by_subtask(tasks: tuple[TaskAssigned, ...]) -> dict[str, TaskAssigned]:
    return {t.subtask: t for t in tasks}


def test_start_assigns_every_subtask_without_dependencies_in_parallel() -> None:
    step = begin()
    tasks = by_subtask(step.tasks)
    assert list(tasks) == list(WORK)
    assert step.state.run("synthesis") is not None
    assert not step.state.run("synthesis").started  # type: ignore[union-attr]
    assert {t.task_id for t in step.tasks} == {f"req-9/{s}/1" for s in WORK}
    assert tasks["facts"].specialist == "retrieval"
    assert tasks["facts"].system_prompt == ROLES["retrieval"]
    assert tasks["pitfalls"].specialist == "qa"
    assert tasks["ask-2"].specialist == "reasoning"
    assert tasks["facts"].deployment == "dep-b"
    assert tasks["ask-1"].deployment == "dep-a"
    # notes are plain text; only the answering subtask takes the request's format
    assert {t.answer_format for t in step.tasks} == {"text"}
    assert {(t.task_class, t.complexity_level, t.priority) for t in step.tasks} == {
        ("reasoning", "complex", 8)
    }
    assert step.state.open_tasks == step.tasks


def test_synthesis_starts_once_every_result_is_in_and_carries_them_all() -> None:
    first = begin()
    tasks = by_subtask(first.tasks)
    state, steps = feed(first.state, *(verdict(tasks[s], n=i) for i, s in enumerate(WORK, 1)))
    assert [s.tasks for s in steps[:-1]] == [(), (), ()]
    (synthesis,) = steps[-1].tasks
    assert (synthesis.subtask, synthesis.round, synthesis.specialist) == (
        "synthesis",
        1,
        "synthesis",
    )
    assert synthesis.depends_on == WORK
    assert synthesis.answer_format == "markdown"
    assert (synthesis.deployment, synthesis.degraded_route) == ("dep-c", True)
    for s in WORK:
        assert f"result of req-9/{s}/1" in synthesis.instruction
    assert PROMPT in synthesis.instruction
    # facts come first in the notes, pitfalls last, whatever order they arrived in
    assert synthesis.instruction.index("[facts]") < synthesis.instruction.index("[ask-1]")
    assert synthesis.instruction.index("[ask-2]") < synthesis.instruction.index("[pitfalls]")

    _, steps2 = feed(
        first.state, *(verdict(tasks[s], n=i) for i, s in enumerate(reversed(WORK), 1))
    )
    assert steps2[-1].tasks[0].instruction == synthesis.instruction

    done = on_verdict(state, verdict(synthesis, n=9), T0 + timedelta(seconds=9), CONFIG)
    response = done.response
    assert response is not None
    assert response.status == "passed"
    assert response.content == "result of req-9/synthesis/1"
    assert response.specialists == ("qa", "reasoning", "retrieval", "synthesis")
    assert (response.prompt_tokens, response.completion_tokens) == (50, 25)
    assert (response.rounds, response.reason_code) == (1, None)


def test_a_failing_subtask_is_refined_on_its_own() -> None:
    first = begin()
    tasks = by_subtask(first.tasks)
    state, (step,) = feed(first.state, verdict(tasks["ask-1"], passed=False))
    (again,) = step.tasks
    assert (again.subtask, again.round) == ("ask-1", 2)
    assert again.critique == "critique of req-9/ask-1/1"
    assert again.previous_attempt is None  # a fresh sample told what to fix (the default)
    assert again.temperature > tasks["ask-1"].temperature
    assert {t.task_id for t in state.open_tasks} == {
        "req-9/facts/1",
        "req-9/ask-1/2",
        "req-9/ask-2/1",
        "req-9/pitfalls/1",
    }
    # the other subtasks' rounds are untouched
    assert state.run("facts").round == 1  # type: ignore[union-attr]


def test_a_subtask_that_never_passes_is_reported_not_dropped() -> None:
    first = begin()
    tasks = by_subtask(first.tasks)
    state = first.state
    pending = [verdict(tasks[s], n=1) for s in ("facts", "ask-2", "pitfalls")]
    ask = tasks["ask-1"]
    for round_ in range(1, 4):  # max_rounds = 3, every round fails
        state, (step,) = feed(state, verdict(ask, passed=False, score=0.1 * round_, n=round_))
        if step.tasks:
            ask = step.tasks[0]
    assert state.run("ask-1").status == "failed"  # type: ignore[union-attr]
    state, steps = feed(state, *pending)
    (synthesis,) = steps[-1].tasks
    assert "result of req-9/ask-1/3" in synthesis.instruction  # its best attempt still counts
    done = on_verdict(state, verdict(synthesis, n=9), T0 + timedelta(seconds=9), CONFIG)
    assert done.response is not None
    assert done.response.status == "passed"
    assert done.response.reason_code == "subtask_failed"
    assert "ask-1 (failed)" in (done.response.reason or "")


def test_a_subtask_without_any_answer_shows_as_an_error_note() -> None:
    first = begin()
    tasks = by_subtask(first.tasks)
    state = first.state
    facts = tasks["facts"]
    for _ in range(3):
        broken = verdict(
            facts, passed=False, score=0.0, content="", failure_classes=("model_error",)
        )
        state, (step,) = feed(state, broken)
        facts = step.tasks[0] if step.tasks else facts
    state, steps = feed(state, *(verdict(tasks[s]) for s in ("ask-1", "ask-2", "pitfalls")))
    (synthesis,) = steps[-1].tasks
    assert "[facts]\n(no answer)" in synthesis.instruction
    done = on_verdict(state, verdict(synthesis, passed=False), T0, CONFIG)
    assert done.tasks[0].round == 2  # the synthesis is refined like any task
    assert done.tasks[0].subtask == "synthesis"
    assert done.state.run("facts").status == "error"  # type: ignore[union-attr]


def test_a_redelivered_verdict_re_emits_what_it_started_and_a_stale_one_nothing() -> None:
    first = begin()
    tasks = by_subtask(first.tasks)
    verdicts = [verdict(tasks[s], n=i) for i, s in enumerate(WORK, 1)]
    state, steps = feed(first.state, *verdicts)
    synthesis = steps[-1].tasks
    again = on_verdict(state, verdicts[-1], T0, CONFIG)
    assert (again.state, again.tasks) == (state, synthesis)
    older = on_verdict(state, verdicts[0], T0, CONFIG)
    assert (older.state, older.tasks, older.response) == (state, (), None)
    unknown = on_verdict(state, verdict(tasks["facts"], subtask="nope"), T0, CONFIG)
    assert (unknown.state, unknown.tasks) == (state, ())


def test_the_deadline_names_the_subtasks_left_unfinished() -> None:
    first = begin()
    tasks = by_subtask(first.tasks)
    state, _ = feed(first.state, verdict(tasks["facts"]))
    step = on_deadline(state, state.deadline_at)
    assert step.response is not None
    assert (step.response.status, step.response.reason_code) == ("timeout", "deadline")
    assert "ask-1 (unfinished)" in (step.response.reason or "")
    assert "facts" not in (step.response.reason or "")


def test_session_context_reaches_every_subtask() -> None:
    context = ("User: hi\nAssistant: hello",)
    step = begin(context)
    assert {t.context for t in step.tasks} == {context}
    assert all("continues the conversation" in t.instruction for t in step.tasks)


def test_replay_rederives_a_decomposed_request_without_divergence() -> None:
    first = begin()
    events: list[Event] = [submitted(), *first.tasks]
    state = first.state
    queue = list(first.tasks)
    n = 0
    while queue:
        task = queue.pop(0)
        n += 1
        v = verdict(task, passed=task.subtask != "ask-2" or task.round > 1, n=n)
        step = on_verdict(state, v, v.occurred_at, CONFIG)
        events.append(v)
        events.extend(step.tasks)
        queue.extend(step.tasks)
        state = step.state
        if step.response is not None:
            events.append(step.response)
    assert state.final is not None
    rederived = rederive(events, CONFIG)
    assert rederived == state.final
    assert compare(events, CONFIG) == []
    # a changed synthesis task in the log is a divergence the audit names
    tampered = [
        e.model_copy(update={"instruction": "x"})
        if isinstance(e, TaskAssigned) and e.subtask == "synthesis"
        else e
        for e in events
    ]
    fields = [d.field for d in compare(tampered, CONFIG) or []]
    assert "task[synthesis/1].instruction" in fields


def test_replay_rederives_a_session_request_that_timed_out_waiting_for_its_context() -> None:
    request = submitted(session_id="s-1", prompt="What did I say?")
    held = awaiting_context(request, "d" * 64, T0, CONFIG)
    passed = DeadlinePassed(
        event_id="d", request_id="req-9", occurred_at=held.deadline_at, deadline_at=held.deadline_at
    )
    final = on_deadline(held, held.deadline_at).response
    assert final is not None
    assert final.status == "timeout"
    events: list[Event] = [request, passed, final]
    assert rederive(events, CONFIG) == final
    assert compare(events, CONFIG) == []


def test_replay_leaves_a_cache_hit_to_the_answer_it_copies() -> None:
    request = submitted(prompt="What is the capital of France?")
    hit = ResponseDelivered(
        event_id="r",
        request_id="req-9",
        occurred_at=T0,
        status="passed",
        content="Paris",
        cache_hit=True,
        cached_from="other",
    )
    assert compare([request, hit], CONFIG) is None
