"""Deployment health as events: each worker publishes its breakers' view of every
deployment to the compacted health topic on a timer."""

from __future__ import annotations

from agents.ids import stable_id
from connectors.resilient import DeploymentHealth
from schemas.network_events import SpecialistHealth
from streams import background
from streams.runtime import Runtime


def register(rt: Runtime) -> None:
    @background.timer(rt, rt.settings.model.health_interval_s, "health_timer")
    async def health_timer() -> None:
        await publish_health(rt)


def health_event(rt: Runtime, h: DeploymentHealth) -> SpecialistHealth:
    now = rt.clock()
    return SpecialistHealth(
        event_id=stable_id(h.deployment, "health", now.isoformat()),
        request_id=h.deployment,
        occurred_at=now,
        config_version=rt.config.version,
        specialist=rt.config.specialist.name,
        deployment=h.deployment,
        model=h.model,
        state=h.state,
        breaker=h.breaker,
        error_rate=h.error_rate,
        window_s=h.window_s,
        calls=h.calls,
        failures=h.failures,
        last_success_at=h.last_success_at,
    )


async def publish_health(rt: Runtime) -> list[SpecialistHealth]:
    events = [health_event(rt, h) for h in rt.ports.llm.health()]
    for event in events:
        await rt.emit(event)
    return events
