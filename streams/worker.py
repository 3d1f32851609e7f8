"""Running a worker: provision topics, build the runtime, hand it to faust's Worker."""

from __future__ import annotations

import asyncio
import logging
import time

import faust

from connectors.admin import ensure_topics
from connectors.llm_embedded import EmbeddedLLM
from schemas import topics
from streams import probes
from streams.app import app_id, create_runtime
from streams.runtime import Ports
from streams.settings import AppSettings

_log = logging.getLogger(__name__)


def provision(settings: AppSettings) -> list[str]:
    return ensure_topics(
        settings.kafka,
        topics.ALL,
        partitions=settings.kafka.partitions or settings.worker.partitions,
        app_id=app_id(settings),
    )


def warm_up(ports: Ports) -> None:
    """Load the models before consuming, so the first requests do not pay for it."""
    started = time.perf_counter()
    for _, llm in ports.llm.models:
        if isinstance(llm, EmbeddedLLM):
            asyncio.run(llm.load())
    ports.embedder.embed(["warm up"])
    if ports.pii is not None:
        ports.pii.find("warm up")
    _log.info("models ready in %.1fs", time.perf_counter() - started)


def run_worker(settings: AppSettings, *, loglevel: str = "info") -> None:
    """Run until SIGTERM/SIGINT; faust commits and stops cleanly."""
    provision(settings)
    rt = create_runtime(settings)
    warm_up(rt.ports)
    if settings.worker.metrics_port:
        probes.serve(
            probes.register(rt),
            rt.metrics.registry,
            settings.worker.metrics_host,
            settings.worker.metrics_port,
        )
    _log.info(
        "worker %s: model %s, %d partitions, bootstrap %s",
        rt.app.conf.id,
        rt.ports.deployment,
        rt.partitions,
        settings.kafka.bootstrap_servers,
    )
    worker = faust.Worker(rt.app, loglevel=loglevel, quiet=True)
    # faust's terminal spinner would turn the root logger to DEBUG at quieter levels,
    # making every debug call in the hot path build a record; a service needs none.
    worker.spinner = None
    worker.execute_from_commandline()
