"""A benchmark's own topic namespace: provisioned at the start, and every topic under it
(the pipeline's, the baseline's and faust's internal ones, all named ``<ns>.…``) deleted
at the end, also when the run fails, with the consumer groups named ``<ns>.…``."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from streams.settings import AppSettings
from streams.worker import provision

_log = logging.getLogger(__name__)
_TIMEOUT_S = 30.0


@contextmanager
def scratch_namespace(settings: AppSettings, prefix: str, partitions: int) -> Iterator[AppSettings]:
    """Settings for a fresh ``<prefix><uuid>`` namespace whose topics exist, with
    ``partitions`` per request-scoped topic; its topics are deleted on leaving."""
    scoped = settings.with_namespace(f"{prefix}{uuid.uuid4().hex[:8]}")
    kafka = scoped.kafka.model_copy(update={"partitions": partitions})
    scoped = scoped.model_copy(update={"kafka": kafka})
    try:
        provision(scoped)
        yield scoped
    finally:
        delete_namespace(scoped)
        delete_groups(scoped)


def delete_namespace(settings: AppSettings) -> list[str]:
    """Delete every topic named ``<namespace>.…``; return their names."""
    prefix = f"{settings.kafka.topic_namespace}."
    if prefix == ".":
        raise ValueError("refusing to delete topics without a namespace")
    admin = AdminClient(settings.kafka.confluent())
    names = [n for n in admin.list_topics(timeout=_TIMEOUT_S).topics if n.startswith(prefix)]
    if not names:
        return []
    futures = admin.delete_topics(names, operation_timeout=_TIMEOUT_S)
    for name, future in futures.items():
        try:
            future.result(timeout=_TIMEOUT_S)
        except KafkaException as exc:
            _log.warning("could not delete topic %s: %s", name, exc)
    _log.info("deleted %d topics under %s", len(names), prefix)
    return names


def delete_groups(settings: AppSettings) -> list[str]:
    """Delete the consumer groups named ``<namespace>.…`` (their members have stopped)."""
    prefix = f"{settings.kafka.topic_namespace}."
    if prefix == ".":
        raise ValueError("refusing to delete groups without a namespace")
    admin = AdminClient(settings.kafka.confluent())
    listed = admin.list_consumer_groups(request_timeout=_TIMEOUT_S).result(timeout=_TIMEOUT_S)
    names = [g.group_id for g in listed.valid if g.group_id.startswith(prefix)]
    if not names:
        return []
    for name, future in admin.delete_consumer_groups(names).items():
        try:
            future.result(timeout=_TIMEOUT_S)
        except KafkaException as exc:
            _log.warning("could not delete consumer group %s: %s", name, exc)
    return names
