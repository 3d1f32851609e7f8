"""A benchmark's own topic namespace: provisioned at the start, and every topic under it
(the pipeline's, the baseline's and faust's internal ones, all named ``<ns>.…``) deleted
at the end, also when the run fails, with the consumer groups named ``<ns>.…``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from connectors.admin import delete_namespace, delete_namespace_groups
from streams.settings import AppSettings
from streams.worker import provision


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
        delete_namespace(scoped.kafka)
        delete_namespace_groups(scoped.kafka)
