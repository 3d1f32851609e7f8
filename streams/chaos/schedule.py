"""The fault schedule of a chaos run: worker kills every ``kill_every`` seconds (a random
pick within the range, seeded), from a quiet start, until a quiet end; and, where the
run owns its broker, one broker SIGKILL and one broker SIGSTOP placed between them.
Pure: a list of (second of the run, fault)."""

from __future__ import annotations

import random
from dataclasses import dataclass

WORKER_KILL = "worker-kill"
BROKER_KILL = "broker-kill"
BROKER_STOP = "broker-stop"


@dataclass(frozen=True)
class Planned:
    at_s: float
    kind: str


@dataclass(frozen=True)
class FaultPlan:
    run_s: float
    """How long the load runs."""
    kill_every_s: tuple[float, float] = (20.0, 30.0)
    worker_kills: int | None = None
    """At most this many worker kills (None: as many as fit)."""
    broker_faults: bool = False
    quiet_start_s: float = 30.0
    """No fault before this: the latency before it is the baseline."""
    quiet_end_s: float = 20.0
    broker_stop_s: float = 20.0
    seed: int = 14


def plan(p: FaultPlan) -> list[Planned]:
    """The faults, in order; the two broker faults take the place of the worker kill
    nearest to 40% and 70% of the run."""
    rng = random.Random(p.seed)
    low, high = p.kill_every_s
    at, kills = p.quiet_start_s, list[Planned]()
    while at <= p.run_s - p.quiet_end_s and (p.worker_kills is None or len(kills) < p.worker_kills):
        kills.append(Planned(round(at, 1), WORKER_KILL))
        at += rng.uniform(low, high)
    if not p.broker_faults or len(kills) < 3:
        return kills
    for share, kind in ((0.4, BROKER_KILL), (0.7, BROKER_STOP)):
        target = p.run_s * share
        i = min(
            (i for i, k in enumerate(kills) if k.kind == WORKER_KILL),
            key=lambda i: abs(kills[i].at_s - target),
        )
        kills[i] = Planned(kills[i].at_s, kind)
    return kills
