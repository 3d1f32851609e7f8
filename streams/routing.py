"""Which deployment a task goes to: weighted by the live config's routing shares,
skipping deployments this worker's breakers see as down."""

from __future__ import annotations

from agents.balancer import route
from streams.runtime import Runtime


def choose(rt: Runtime, request_id: str, subtask: str = "main") -> tuple[str, bool]:
    """(deployment, degraded): the weighted pick, or the chain's first deployment when
    no weights are configured; ``degraded`` when no weighted deployment was healthy."""
    llm = rt.ports.llm
    healthy = {h.deployment: h.state != "down" for h in llm.health()}
    choice = route(
        rt.config.routing.weights,
        llm.deployments,
        healthy=healthy,
        request_id=request_id,
        subtask=subtask,
    )
    if choice is None:
        return rt.ports.deployment, False
    return choice.deployment.name, choice.degraded
