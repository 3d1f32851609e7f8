"""Recording a fact on the guardian network's single-partition topic."""

from __future__ import annotations

from schemas import topics
from schemas.network_events import NetworkFactRecorded
from schemas.topics import NETWORK_SCOPE, qualified
from streams.runtime import Runtime


def facts_topic(rt: Runtime) -> str:
    return qualified(topics.NETWORK_FACTS, rt.settings.kafka.topic_namespace)


async def send_fact(rt: Runtime, fact: NetworkFactRecorded) -> None:
    """Record ``fact`` under the one constant key; returns once the broker has it."""
    acked = await rt.app.producer.send(
        facts_topic(rt), NETWORK_SCOPE.encode(), rt.codec.encode(fact), None, None, None
    )
    await acked
