"""Weighted, health-aware choice of a model deployment for a subtask.

Among the deployments with a positive weight, a weighted choice over the healthy
ones; when none is healthy, a weighted choice over all of them, marked degraded
(the specialist's retries and breaker then decide). A deployment with no health
report yet counts as healthy. ``pick_for`` hashes (request_id, subtask) into the
random draw, so a replay of the same request picks the same deployment.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from schemas.errors import GuardianError


class NoDeployment(GuardianError):
    """No deployment with a positive weight serves the specialist: a configuration
    problem, so retrying the same request cannot help."""

    retriable = False


@dataclass(frozen=True)
class Deployment:
    """One model endpoint serving a specialist; ``weight`` is its share of the traffic."""

    name: str
    specialist: str
    weight: float
    model: str

    def __post_init__(self) -> None:
        if not math.isfinite(self.weight) or self.weight < 0:
            raise ValueError(f"deployment {self.name!r}: weight must be finite and >= 0")


@dataclass(frozen=True)
class Choice:
    deployment: Deployment
    degraded: bool
    """True when no candidate was healthy and the choice ignored health."""


def for_specialist(
    deployments: Sequence[Deployment], specialist: str, *, fallback: str = "general"
) -> tuple[Deployment, ...]:
    """The deployments serving ``specialist``; those of ``fallback`` when there are none."""
    own = tuple(d for d in deployments if d.specialist == specialist)
    return own or tuple(d for d in deployments if d.specialist == fallback)


def pick(deployments: Sequence[Deployment], *, healthy: Mapping[str, bool], rand: float) -> Choice:
    """A weighted choice by ``rand`` in [0, 1) among the healthy, positive-weight ones."""
    if not 0.0 <= rand < 1.0:
        raise ValueError(f"rand must be in [0, 1), got {rand}")
    weighted = sorted((d for d in deployments if d.weight > 0), key=lambda d: d.name)
    if not weighted:
        raise NoDeployment("no deployment with a positive weight")
    live = [d for d in weighted if healthy.get(d.name, True)]
    return Choice(deployment=_weighted(live or weighted, rand), degraded=not live)


def _weighted(candidates: Sequence[Deployment], rand: float) -> Deployment:
    target = rand * math.fsum(d.weight for d in candidates)
    total = 0.0
    for d in candidates:
        total += d.weight
        if target < total:
            return d
    return candidates[-1]  # rounding at the top end of the range


def pick_for(
    request_id: str,
    subtask: str,
    deployments: Sequence[Deployment],
    *,
    healthy: Mapping[str, bool],
) -> Choice:
    """``pick`` with the draw derived from (request_id, subtask): replays pick alike."""
    return pick(deployments, healthy=healthy, rand=draw(request_id, subtask))


def route(
    weights: Mapping[str, float],
    chain: Sequence[str],
    *,
    healthy: Mapping[str, bool],
    request_id: str,
    subtask: str,
    specialist: str = "general",
) -> Choice | None:
    """The deployment of the chain that serves this task by ``weights`` (None when no
    deployment of the chain has a positive weight: the chain's order decides)."""
    candidates = [
        Deployment(name, specialist, weights[name], "")
        for name in chain
        if weights.get(name, 0.0) > 0
    ]
    if not candidates:
        return None
    return pick_for(request_id, subtask, candidates, healthy=healthy)


def draw(request_id: str, subtask: str) -> float:
    """A uniform number in [0, 1) from a hash of the request and subtask."""
    digest = hashlib.blake2b(f"{request_id}\x1f{subtask}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 11) / 2.0**53  # 53 bits: never rounds to 1.0
