"""The chaos checker: from what was sent, what the topics hold afterwards, the calls the
model server counted and when each fault happened, what the faults cost. Pure: the
runner reads the topics and passes everything in."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from agents.stats import percentile as nearest_rank
from schemas.request_events import DeadLettered, ResponseDelivered, TaskAssigned

WINDOW_S = 5.0
"""Recovery: p99 over windows of requests sent in this many seconds."""
RECOVERED_WITHIN = 2.0
"""Recovered once a window's p99 is at most this many times the pre-fault p99."""
STEP_S = 1.0


@dataclass(frozen=True)
class Answer:
    """A response record and when it was written (epoch seconds)."""

    response: ResponseDelivered
    at: float


@dataclass(frozen=True)
class Fault:
    kind: str
    started: float
    ended: float
    """When the restarted process was answering again (epoch seconds)."""


@dataclass(frozen=True)
class Observed:
    sent: Mapping[str, float]
    """request_id -> when it was due to be sent (epoch seconds)."""
    answers: Sequence[Answer]
    tasks: Sequence[TaskAssigned]
    dead_letters: Sequence[DeadLettered]
    model_calls: int
    faults: Sequence[Fault] = ()


@dataclass(frozen=True)
class Recovery:
    fault: Fault
    seconds: float | None
    """From the fault's end until a window's p99 is back (None: not before the next fault
    or the end of the run)."""
    had_s: float = 0.0
    """From the fault's end to the next fault's start (or the last request sent): the
    time there was to recover in."""
    before: str = "the next fault"
    """What ended the time there was: the next fault, or the end of the load."""


@dataclass(frozen=True)
class Report:
    requests: int
    lost: list[str]
    duplicated: list[str]
    conflicting: list[str]
    round_gaps: list[str]
    extra_model_calls: int
    model_calls: int
    tasks: int
    statuses: dict[str, int]
    dead_letters: int
    latency_s: dict[str, float]
    baseline_p99_s: float | None
    recoveries: list[Recovery] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.conflicting or self.round_gaps)

    def last_line(self) -> str:
        return (
            f"chaos: {self.requests} requests, lost {len(self.lost)}, conflicting "
            f"{len(self.conflicting)}, duplicate responses {len(self.duplicated)}, extra model "
            f"calls {self.extra_model_calls}, round gaps {len(self.round_gaps)}"
        )


def check(seen: Observed) -> Report:
    # A reply to another submission (a conflicting resend's rejection) is not an answer
    # to the request: never its first, a duplicate or a conflicting one.
    ours = [a for a in seen.answers if a.response.request_id in seen.sent and a.response.is_final]
    by_request: dict[str, list[Answer]] = defaultdict(list)
    for a in sorted(ours, key=lambda a: a.at):
        by_request[a.response.request_id].append(a)
    first = {rid: answers[0] for rid, answers in by_request.items()}
    distinct_tasks = len({t.task_id for t in seen.tasks})
    latencies = {rid: first[rid].at - seen.sent[rid] for rid in first}
    baseline = _baseline_p99(seen.sent, latencies, seen.faults)
    return Report(
        requests=len(seen.sent),
        lost=sorted(set(seen.sent) - set(first)),
        duplicated=sorted(rid for rid, a in by_request.items() if len(a) > 1),
        conflicting=sorted(rid for rid, a in by_request.items() if _conflict(a)),
        round_gaps=sorted(round_gaps(seen.tasks, [a.response for a in first.values()])),
        extra_model_calls=max(0, seen.model_calls - distinct_tasks),
        model_calls=seen.model_calls,
        tasks=distinct_tasks,
        statuses=dict(Counter(a.response.status for a in first.values())),
        dead_letters=len(seen.dead_letters),
        latency_s=percentiles(list(latencies.values())),
        baseline_p99_s=baseline,
        recoveries=recoveries(seen.sent, latencies, seen.faults, baseline),
    )


def _conflict(answers: Sequence[Answer]) -> bool:
    kinds = {(a.response.event_id, a.response.status, a.response.content) for a in answers}
    return len(kinds) > 1


def round_gaps(tasks: Iterable[TaskAssigned], finals: Iterable[ResponseDelivered]) -> list[str]:
    """Requests whose subtasks skipped a round (rounds seen are not 1..n), or whose final
    response counts more rounds than any of its subtasks was assigned."""
    rounds: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for t in tasks:
        rounds[t.request_id][t.subtask].add(t.round)
    gaps = {
        rid
        for rid, subtasks in rounds.items()
        if any(seen != set(range(1, max(seen) + 1)) for seen in subtasks.values())
    }
    for r in finals:
        assigned = max((max(s) for s in rounds.get(r.request_id, {}).values()), default=0)
        if r.status in {"passed", "failed"} and r.rounds > assigned and not r.cache_hit:
            gaps.add(r.request_id)
    return sorted(gaps)


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p`` percentile of ``values`` (0.0 when empty)."""
    found = nearest_rank(values, p)
    return 0.0 if found is None else found


def percentiles(values: Sequence[float]) -> dict[str, float]:
    return {f"p{p:g}": round(percentile(values, p), 3) for p in (50, 90, 99, 99.9, 100)}


def _baseline_p99(
    sent: Mapping[str, float], latencies: Mapping[str, float], faults: Sequence[Fault]
) -> float | None:
    """p99 of the requests sent before the first fault began."""
    start = min((f.started for f in faults), default=float("inf"))
    before = [lat for rid, lat in latencies.items() if sent[rid] < start]
    return percentile(before, 99) if before else None


def recoveries(
    sent: Mapping[str, float],
    latencies: Mapping[str, float],
    faults: Sequence[Fault],
    baseline: float | None,
) -> list[Recovery]:
    """For each fault, seconds from its end to the first ``WINDOW_S`` window of sent
    requests whose p99 is within ``RECOVERED_WITHIN`` times the baseline (lost requests
    count as never answered)."""
    if baseline is None:
        return [Recovery(f, None) for f in faults]
    ordered = sorted(faults, key=lambda f: f.started)
    last_sent = max(sent.values(), default=0.0)
    out = []
    for i, fault in enumerate(ordered):
        last = i + 1 == len(ordered)
        until = last_sent if last else ordered[i + 1].started
        took = _recovered_after(sent, latencies, fault.ended, until, baseline)
        before = "the end of the load" if last else "the next fault"
        out.append(Recovery(fault, took, round(max(0.0, until - fault.ended), 1), before))
    return out


def _recovered_after(
    sent: Mapping[str, float],
    latencies: Mapping[str, float],
    start: float,
    until: float,
    baseline: float,
) -> float | None:
    limit = RECOVERED_WITHIN * baseline
    t = start
    while t + WINDOW_S <= until + STEP_S:
        window = [
            latencies.get(rid, float("inf")) for rid, at in sent.items() if t <= at < t + WINDOW_S
        ]
        if window and percentile(window, 99) <= limit:
            return round(t - start, 1)
        t += STEP_S
    return None
