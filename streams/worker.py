"""Running a worker: provision topics, build the runtime, hand it to faust's Worker."""

from __future__ import annotations

import logging

import faust

from connectors.admin import ensure_topics
from schemas import topics
from streams.app import create_runtime
from streams.settings import AppSettings

_log = logging.getLogger(__name__)


def provision(settings: AppSettings) -> list[str]:
    return ensure_topics(
        settings.kafka,
        topics.ALL,
        partitions=settings.kafka.partitions or settings.worker.partitions,
    )


def run_worker(settings: AppSettings, *, loglevel: str = "info") -> None:
    """Run until SIGTERM/SIGINT; faust commits and stops cleanly."""
    provision(settings)
    rt = create_runtime(settings)
    _log.info(
        "worker %s: model %s, %d partitions, bootstrap %s",
        rt.app.conf.id,
        rt.ports.deployment,
        rt.partitions,
        settings.kafka.bootstrap_servers,
    )
    worker = faust.Worker(rt.app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
