"""An evaluation run: each arm gets its own namespace and worker, the same model and the
same tasks through the real pipeline; a verifier that never reads the prompt scores
every final answer.

The arms (at most 3 rounds each):

- **A**, single shot: one round.
- **R**, resampling: up to 3 rounds under the guardians, each round the same question
  again with no critique; the best attempt is kept.
- **B**, refinement with the guardians but without the constraint guardian.
- **C**, refinement with every guardian, the constraint guardian included; it sees only
  the prompt text.
- **C+**, as C, with the task set's own constraints sent as client-declared
  ``constraints`` (where the set can express them): an upper bound, reported apart.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agents.constraints import stated_in
from connectors.client import GuardianClient
from connectors.errors import ResponseTimeoutError
from schemas.request_events import Constraint, ResponseDelivered
from streams.bench.namespace import scratch_namespace
from streams.chaos.procs import Workers, namespace_env
from streams.settings import AppSettings


class Task(Protocol):
    """A task of a set: the prompt as a user sends it, and the set's own verifier."""

    @property
    def task_id(self) -> str: ...
    @property
    def prompt(self) -> str: ...
    @property
    def answer_format(self) -> str: ...
    def passes(self, answer: str) -> bool: ...
    def declared(self) -> tuple[Constraint, ...]: ...


Progress = Callable[[str], None]
_PARTITIONS = 3


@dataclass(frozen=True)
class Arm:
    name: str
    about: str
    env: dict[str, str]
    declares: bool = False
    """Sends the task set's constraints as the request's ``constraints``."""

    @property
    def slug(self) -> str:
        """The name as it may appear in a topic name (``C+`` is ``cplus``)."""
        return self.name.lower().replace("+", "plus")


ARMS: dict[str, Arm] = {
    "A": Arm("A", "single shot", {"GUARDIAN_REFINE_MAX_ROUNDS": "1"}),
    "R": Arm(
        "R",
        "resampling, best of 3, no critique",
        {"GUARDIAN_REFINE_MAX_ROUNDS": "3", "GUARDIAN_REFINE_CRITIQUE": "false"},
    ),
    "B": Arm(
        "B",
        "refinement, guardians without constraints",
        {"GUARDIAN_REFINE_MAX_ROUNDS": "3", "GUARDIAN_GUARD_CONSTRAINTS": "false"},
    ),
    "C": Arm("C", "refinement, constraint guardian", {"GUARDIAN_REFINE_MAX_ROUNDS": "3"}),
    "C+": Arm(
        "C+",
        "as C, with the set's constraints declared (upper bound)",
        {"GUARDIAN_REFINE_MAX_ROUNDS": "3"},
        declares=True,
    ),
}


@dataclass(frozen=True)
class Outcome:
    task_id: str
    passed: bool
    """The task set's verifier passes the final answer."""
    status: str
    rounds: int
    tokens: int
    seconds: float
    reason_code: str = ""
    content: str = ""
    """The final answer (kept in the arm's record file)."""
    best_round: int = 0
    """The round whose answer is the final one (0: none, or a record from before)."""


@dataclass(frozen=True)
class ArmResult:
    arm: Arm
    outcomes: list[Outcome]

    @property
    def pass_rate(self) -> float:
        return _share([o.passed for o in self.outcomes])

    def flips_to_worse(self, single: ArmResult) -> float:
        """Share of the tasks that pass single shot and fail in this arm."""
        before = {o.task_id: o.passed for o in single.outcomes}
        return _share([before.get(o.task_id, False) and not o.passed for o in self.outcomes])

    def first_rounds_alike(self, single: ArmResult) -> tuple[int, int]:
        """Of the tasks whose final answer is this arm's first round, as single shot's
        is, how many give single shot's answer word for word. Sampling is seeded by the
        messages and round, so nearly all should (llama.cpp reuses a cached prompt
        prefix, and a different history of calls can change a float and so a token):
        the arms then differ in what refinement chose, not in what they sampled. An arm
        that declares constraints decodes its first round under them: not compared."""
        if self.arm.declares or self.arm.name == single.arm.name:
            return 0, 0
        before = {o.task_id: o.content for o in single.outcomes if o.best_round == 1}
        kept = [o for o in self.outcomes if o.best_round == 1 and o.task_id in before]
        return sum(o.content == before[o.task_id] for o in kept), len(kept)

    def mean(self, what: Callable[[Outcome], float]) -> float:
        return sum(map(what, self.outcomes)) / len(self.outcomes) if self.outcomes else 0.0


def _share(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if flags else 0.0


def only(tasks: Sequence[Task], which: str | None) -> list[Task]:
    """The tasks ``which`` names: ``declared``, those whose constraints translate into
    client-declared ones (what arm C+ sends); ``stated``, those where the constraint
    guardian finds a constraint stated in the prompt; None, all of them."""
    if which == "declared":
        return [t for t in tasks if t.declared()]
    if which == "stated":
        return [t for t in tasks if stated_in(t.prompt)]
    if which is None:
        return list(tasks)
    raise ValueError(f"no such subset {which!r}: choose declared or stated")


def spread(tasks: Sequence[Task], n: int) -> list[Task]:
    """``n`` of ``tasks`` at even steps from the first, in order (all when ``n`` is the
    count or more)."""
    if n <= 0:
        raise ValueError(f"cannot spread {n} tasks: ask for one or more")
    count = len(tasks)
    n = min(n, count)
    return [tasks[i * count // n] for i in range(n)]


def verify(task: Task, response: ResponseDelivered | None) -> bool:
    """The external verdict: the task set's own verifier on the final answer."""
    if response is None or response.status not in {"passed", "failed"}:
        return False
    return task.passes(response.content)


@dataclass
class EvalPlan:
    out: Path
    arms: Sequence[str] = ("A", "R", "B", "C")
    concurrency: int = 4
    timeout_s: float = 600.0
    max_tokens: int | None = None
    """Tokens per model call each request asks for (None: the specialist's default)."""
    model_timeout_s: float = 300.0
    worker_env: dict[str, str] = field(default_factory=dict)


async def run_eval(
    settings: AppSettings, plan: EvalPlan, tasks: Sequence[Task], progress: Progress
) -> list[ArmResult]:
    results = []
    for name in plan.arms:
        arm = ARMS[name]
        progress(f"arm {arm.name} ({arm.about}): {len(tasks)} tasks")
        started = time.monotonic()
        outcomes = await _run_arm(settings, plan, arm, tasks, progress)
        result = ArmResult(arm, outcomes)
        record = _record_path(plan.out, arm)
        _record(record, outcomes)
        progress(
            f"arm {arm.name}: {result.pass_rate:.1%} pass in {time.monotonic() - started:.0f}s "
            f"(every answer in {record})"
        )
        results.append(result)
    return results


async def _run_arm(
    settings: AppSettings, plan: EvalPlan, arm: Arm, tasks: Sequence[Task], progress: Progress
) -> list[Outcome]:
    with scratch_namespace(settings, f"eval{arm.slug}", _PARTITIONS) as scoped:
        # No shared answer cache: every arm answers every task itself.
        env = {
            **namespace_env(scoped),
            "GUARDIAN_REFINE_DEFAULT_TIMEOUT_S": str(plan.timeout_s),
            # A local model answers one call at a time: a call's wait for its turn counts
            # against the model timeout, which must not cut long answers short.
            "GUARDIAN_WORKER_MODEL_TIMEOUT_S": str(plan.model_timeout_s),
            # Every arm answers under one configuration: the network's experiments and
            # parameter tests would change it halfway through an arm.
            "GUARDIAN_NETWORK_APPLY_CHANGES": "false",
            **plan.worker_env,
            **arm.env,
        }
        workers = Workers(scoped, env, plan.out / f"arm-{arm.slug}", 1)
        workers.start_all()
        try:
            await workers.joined()
            return await _ask_all(scoped, plan, arm, tasks, progress)
        finally:
            workers.stop_all()


async def _ask_all(
    settings: AppSettings,
    plan: EvalPlan,
    arm: Arm,
    tasks: Sequence[Task],
    progress: Progress,
) -> list[Outcome]:
    """Every task's outcome, in task order; each is also appended to the arm's record as
    it comes, so a long arm cut short keeps what it measured (the record is rewritten
    in task order at the end)."""
    slots = asyncio.Semaphore(plan.concurrency)
    done = 0
    record = _record_path(plan.out, arm)
    _record(record, [])

    async def one(client: GuardianClient, task: Task) -> Outcome:
        nonlocal done
        async with slots:
            started = time.monotonic()
            response: ResponseDelivered | None
            fields: dict[str, Any] = {"answer_format": task.answer_format}
            if plan.max_tokens is not None:
                fields["max_tokens"] = plan.max_tokens
            if arm.declares:
                fields["constraints"] = task.declared()
            try:
                response = await client.ask(task.prompt, timeout_s=plan.timeout_s, **fields)
            except (TimeoutError, ResponseTimeoutError):
                response = None
            seconds = time.monotonic() - started
        done += 1
        if done % 10 == 0 or done == len(tasks):
            progress(f"  answered {done} of {len(tasks)}")
        outcome = Outcome(
            task_id=task.task_id,
            passed=verify(task, response),
            status=response.status if response else "no answer",
            rounds=response.rounds if response else 0,
            tokens=response.completion_tokens if response else 0,
            seconds=seconds,
            reason_code=(response.reason_code or "") if response else "",
            content=response.content if response else "",
            best_round=response.best_round if response else 0,
        )
        _record(record, [outcome], append=True)
        return outcome

    async with GuardianClient(settings.kafka) as client:
        return list(await asyncio.gather(*(one(client, t) for t in tasks)))


def _record_path(folder: Path, arm: Arm) -> Path:
    return folder / f"arm-{arm.slug}.jsonl"


def _record(path: Path, outcomes: Sequence[Outcome], *, append: bool = False) -> None:
    """One JSON line per task: the verdict, the response's status, rounds, the round
    kept, tokens, time and the final answer, so a run can be audited and compared task
    by task. Appended to, or replaced whole (through a file renamed over it, so an
    interruption never leaves it half written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(asdict(o), ensure_ascii=False) + "\n" for o in outcomes)
    if append:
        with path.open("a", encoding="utf-8") as out:
            out.write(lines)
        return
    partial = path.with_name(path.name + ".partial")
    partial.write_text(lines, encoding="utf-8")
    partial.replace(path)


def recorded(folder: Path) -> list[ArmResult]:
    """The arms recorded in ``folder`` (``arm-<name>.jsonl`` of one or more runs), in
    the order of ``ARMS``: a run's summary again, or several partial runs' together."""
    results = []
    for arm in ARMS.values():
        path = _record_path(folder, arm)
        if path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            results.append(ArmResult(arm, [Outcome(**json.loads(line)) for line in lines]))
    return results


def summary(results: Sequence[ArmResult]) -> list[str]:
    """A line per arm, then the last line: C against A."""
    by_name = {r.arm.name: r for r in results}
    single = by_name.get("A")
    lines = []
    for r in results:
        flips = f", flips to worse {r.flips_to_worse(single):.1%}" if single else ""
        alike, kept = r.first_rounds_alike(single) if single else (0, 0)
        same = f", first round kept in {kept} tasks, {alike} as single shot's" if kept else ""
        lines.append(
            f"arm {r.arm.name} ({r.arm.about}): pass {r.pass_rate:.1%}{flips}, "
            f"mean rounds {r.mean(lambda o: o.rounds):.2f}, "
            f"mean tokens {r.mean(lambda o: o.tokens):.0f}, "
            f"mean time {r.mean(lambda o: o.seconds):.1f}s{same}"
        )
    refined = by_name.get("C")
    if single is not None and refined is not None:
        gain = (refined.pass_rate - single.pass_rate) * 100
        lines.append(
            f"eval: {len(refined.outcomes)} tasks, single-shot {single.pass_rate:.1%}, "
            f"refined {refined.pass_rate:.1%}, gain {gain:+.1f} points, "
            f"flips to worse {refined.flips_to_worse(single):.1%}"
        )
    return lines
