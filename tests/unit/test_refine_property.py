"""Property: whatever the order of verdicts, deadlines, redeliveries and crashes, every
final response the decisions emit for a request is the same event with the same
content, and at least one is emitted. Drives the very functions the stages call
(agents.admission, agents.refinement) through an in-memory executor that applies the
effects in the executor's order and can crash between any two of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from agents import admission, refinement
from agents.admission import Admitted
from agents.config import PipelineConfig, RefinePolicy
from agents.effects import Effects, Refused
from agents.intake import payload_digest
from agents.refine import RequestState
from schemas.envelope import Event
from schemas.request_events import (
    DeadlinePassed,
    RequestSubmitted,
    ResponseDelivered,
    TaskAssigned,
    VerdictIssued,
)

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
CONFIG = PipelineConfig(version=2, refine=RefinePolicy(max_rounds=3, default_timeout_s=60))


class Crash(Exception):
    """The worker died between two effects."""


@dataclass
class World:
    """The table and the log, as the executor leaves them."""

    state: RequestState | None = None
    log: list[Event] = field(default_factory=list)
    crash_at: int | None = None
    steps: int = 0

    def _step(self) -> None:
        self.steps += 1
        if self.crash_at is not None and self.steps == self.crash_at:
            self.crash_at = None
            raise Crash

    def apply(self, effects: Effects | Admitted | Refused, now: datetime) -> None:
        if isinstance(effects, Admitted):
            effects = admission.begin(
                effects, now, CONFIG, cache_hit=None, route=lambda _s: ("dep", False)
            )
        assert not isinstance(effects, Refused), effects
        if effects.state is not None:
            self._step()
            self.state = effects.state
        for event in effects.emits:
            self._step()
            self.log.append(event)
        if effects.then is not None:
            self._step()
            self.state = effects.then


def verdict(task: TaskAssigned, passed: bool, at: datetime) -> VerdictIssued:
    return VerdictIssued(
        event_id=f"v-{task.task_id}", request_id=task.request_id, occurred_at=at,
        config_version=task.config_version, task_id=task.task_id, subtask=task.subtask,
        round=task.round, answer_event_id=f"a-{task.task_id}", passed=passed,
        score=0.9 if passed else 0.2, threshold=0.7, specialist=task.specialist,
        model="m", content=f"answer of round {task.round}",
    )  # fmt: skip


Action = tuple[str, int, bool]
actions = st.lists(
    st.tuples(
        st.sampled_from(["verdict", "deadline", "redeliver", "crash", "resend"]),
        st.integers(min_value=0, max_value=20),
        st.booleans(),
    ),
    max_size=25,
)


def run(world: World, request: RequestSubmitted, plan: list[Action]) -> list[Event]:
    delivered: list[Event] = []  # inputs the refine stage has seen, for redelivery
    now = T0
    for kind, n, flag in plan:
        now += timedelta(seconds=n)
        try:
            _act(world, request, kind, n, flag, now, delivered)
        except Crash:
            continue  # the record is redelivered later, or never: the deadline decides
    # The deadline timer always fires in the end.
    end = now + timedelta(seconds=120)
    while True:
        try:
            _refine(world, DeadlinePassed(
                event_id="d-end", request_id=request.request_id, occurred_at=end,
                deadline_at=end,
            ), end)  # fmt: skip
            _refine(world, DeadlinePassed(
                event_id="d-end", request_id=request.request_id, occurred_at=end,
                deadline_at=end,
            ), end)  # fmt: skip
            return delivered
        except Crash:
            continue


def _refine(world: World, event: VerdictIssued | DeadlinePassed, now: datetime) -> None:
    marker = None
    world.apply(refinement.on_input(event, world.state, marker, now, CONFIG), now)


def _act(
    world: World,
    request: RequestSubmitted,
    kind: str,
    n: int,
    flag: bool,
    now: datetime,
    delivered: list[Event],
) -> None:
    if kind == "crash":
        world.crash_at = world.steps + 1 + n % 3
    elif kind == "resend":
        decided = admission.on_request(
            request, payload_digest(request), world.state, None, now, CONFIG
        )
        world.apply(decided, now)
    elif kind == "redeliver" and delivered:
        event = delivered[n % len(delivered)]
        assert isinstance(event, VerdictIssued | DeadlinePassed)
        _refine(world, event, now)
    elif kind == "verdict":
        tasks = [e for e in world.log if isinstance(e, TaskAssigned)]
        if tasks:
            event = verdict(tasks[n % len(tasks)], flag, now)
            delivered.append(event)
            _refine(world, event, now)
    elif kind == "deadline" and world.state is not None:
        at = world.state.deadline_at if flag else now
        event = DeadlinePassed(
            event_id=f"d-{n}", request_id=request.request_id, occurred_at=now, deadline_at=at
        )
        delivered.append(event)
        _refine(world, event, max(now, at))


@settings(max_examples=300, deadline=None)
@given(plan=actions)
def test_every_final_response_is_identical_and_one_is_always_sent(plan: list[Action]) -> None:
    request = RequestSubmitted(
        event_id="e-1", request_id="r-1", occurred_at=T0, prompt="What is bread made of?"
    )
    world = World()
    while True:
        try:
            world.apply(
                admission.on_request(request, payload_digest(request), None, None, T0, CONFIG),
                T0,
            )
            break
        except Crash:
            world.state = None
    run(world, request, plan)
    finals = [e for e in world.log if isinstance(e, ResponseDelivered)]
    assert finals, "at least one final response"
    first = finals[0]
    for other in finals[1:]:
        assert (other.event_id, other.content, other.status) == (
            first.event_id,
            first.content,
            first.status,
        )
    assert world.state is not None
    assert world.state.final == first
