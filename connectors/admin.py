"""Idempotent topic provisioning through the Kafka admin client."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from connectors.errors import TopicProvisioningError
from connectors.kafka import KafkaSettings
from schemas.topics import TopicSpec, qualified

_log = logging.getLogger(__name__)


def ensure_topics(
    settings: KafkaSettings,
    specs: Iterable[TopicSpec],
    *,
    partitions: int | None = None,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created.

    ``partitions`` overrides request-scoped topics' counts (every topic keyed by
    ``request_id`` must share one count so stages and tables stay co-partitioned).
    """
    admin = AdminClient(settings.confluent())
    wanted = [_new_topic(s, settings, partitions) for s in specs]
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise TopicProvisioningError(f"cannot list topics: {exc}") from exc
    missing = [t for t in wanted if t.topic not in existing]
    if not missing:
        return []
    created: list[str] = []
    for name, future in admin.create_topics(missing, request_timeout=timeout_s).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise TopicProvisioningError(f"cannot create {name}: {exc}") from exc
    _log.info("created %d topics: %s", len(created), ", ".join(created))
    _wait_for_leaders(admin, [t.topic for t in missing], timeout_s)
    return created


def _wait_for_leaders(admin: AdminClient, names: list[str], timeout_s: float) -> None:
    """New topics are usable once every partition has a leader."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        meta = admin.list_topics(timeout=timeout_s).topics
        if all(
            n in meta
            and meta[n].partitions
            and all(p.leader >= 0 for p in meta[n].partitions.values())
            for n in names
        ):
            return
        time.sleep(0.1)  # polling metadata inside a deadline loop
    raise TopicProvisioningError(f"partitions of {names} got no leader within {timeout_s:.0f}s")


def _new_topic(spec: TopicSpec, settings: KafkaSettings, partitions: int | None) -> NewTopic:
    count = spec.partitions
    if spec.scales_with_workers:
        count = partitions or settings.partitions or spec.partitions
    return NewTopic(
        qualified(spec, settings.topic_namespace),
        num_partitions=count,
        replication_factor=settings.replication_factor,
        config=spec.config(),
    )
