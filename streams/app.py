"""The faust application: topics, the refinement table and the four stages, wired
to the ports chosen by settings."""

from __future__ import annotations

import logging
from datetime import timedelta

import faust

from agents.breaker import BreakerPolicy
from agents.knowledge import KnowledgeStore
from agents.ports import LLM, Embedder
from agents.retry import RetryPolicy
from connectors.cache_store import build_cache
from connectors.embeddings import HashingEmbedder, MiniLMEmbedder
from connectors.knowledge_files import load_knowledge
from connectors.llm_embedded import EmbeddedLLM
from connectors.llm_openai import OpenAICompatibleLLM, OpenAISettings
from connectors.llm_scripted import ScriptedLLM
from connectors.pii import PresidioPiiDetector
from connectors.resilient import OnAttempt, ResilientLLM
from connectors.schema_registry import codec_for
from streams import (
    alerts,
    capacity,
    experiments,
    guardian,
    health,
    intake,
    lessons,
    live_config,
    load,
    meta_guardian,
    monitor,
    network,
    network_facts,
    refine,
    refine_store,
    sessions,
    specialist,
    transport,
    verdict_watch,
)
from streams.lean_monitor import LeanMonitor
from streams.metrics import Metrics
from streams.runtime import Ports, Runtime
from streams.settings import AppSettings

_log = logging.getLogger(__name__)
_NEVER = 2**62


def build_ports(settings: AppSettings, on_attempt: OnAttempt | None = None) -> Ports:
    """The model chain, embedder, PII detector, cache and knowledge store the settings ask for."""
    embedder: Embedder = (
        HashingEmbedder()
        if settings.guard.embedder == "hashing"
        else MiniLMEmbedder(settings.embedding)
    )
    pii = PresidioPiiDetector(settings.pii) if settings.guard.pii_check else None
    cache = build_cache(settings.cache, settings.kafka.topic_namespace)
    k = settings.knowledge
    knowledge = (
        load_knowledge(k.dir, embedder, max_chars=k.max_passage_chars)
        if k.dir is not None
        else KnowledgeStore()
    )
    return Ports(
        llm=build_chain(settings, on_attempt),
        embedder=embedder,
        pii=pii,
        cache=cache,
        knowledge=knowledge,
    )


def build_chain(settings: AppSettings, on_attempt: OnAttempt | None = None) -> ResilientLLM:
    m = settings.model
    retry = RetryPolicy(
        max_attempts=m.max_attempts,
        base_delay_s=m.retry_base_delay_s,
        max_delay_s=m.retry_max_delay_s,
        max_total_s=m.retry_budget_s,
    )
    breaker = BreakerPolicy(
        consecutive_failures=m.breaker_consecutive_failures,
        open_s=m.breaker_open_s,
        window_s=m.breaker_window_s,
    )
    chain = [(name, _model(settings, kind, arg)) for name, kind, arg in m.chain()]
    return ResilientLLM(chain, retry=retry, breaker_policy=breaker, on_attempt=on_attempt)


def _model(settings: AppSettings, kind: str, arg: str | None) -> LLM:
    if kind == "scripted":
        return ScriptedLLM.from_file(arg) if arg else ScriptedLLM()
    if kind == "openai":
        return OpenAICompatibleLLM(OpenAISettings())
    return EmbeddedLLM(settings.embedded)


def app_id(settings: AppSettings) -> str:
    ns = settings.kafka.topic_namespace
    return f"{ns}.{settings.worker.app_id}" if ns else settings.worker.app_id


def create_app(settings: AppSettings) -> faust.App:
    w = settings.worker
    w.data_dir.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    hosts = settings.kafka.bootstrap_servers.split(",")
    broker = (
        settings.kafka.faust_broker()
        if w.consumer == "threaded"
        else transport.broker_url(hosts, fetch_max_wait_ms=w.fetch_wait_ms)
    )
    return faust.App(
        app_id(settings),
        monitor=LeanMonitor(),
        broker=broker,
        # TLS context and SASL login of every faust client (consumer, producer, admin).
        broker_credentials=settings.kafka.faust_credentials(),
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.kafka.partitions or w.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        table_standby_replicas=0,
        datadir=str(w.data_dir),
        web_enabled=w.web_enabled,
        web_port=w.web_port,
        web_host="127.0.0.1",
        broker_session_timeout=w.session_timeout_s,
        broker_heartbeat_interval=w.heartbeat_s,
        consumer_auto_offset_reset="earliest",
        stream_wait_empty=False,
        # Commit on the interval only: a count would stall the drain loop mid-batch.
        broker_commit_every=_NEVER,
        broker_commit_interval=w.commit_interval_s,
        consumer_group_instance_id=w.instance_id,
        producer_linger=w.producer_linger_ms / 1000,
        producer_request_timeout=w.producer_timeout_s,
        stream_buffer_maxsize=1024,
        table_cleanup_interval=timedelta(minutes=5).total_seconds(),
    )


def create_runtime(settings: AppSettings, ports: Ports | None = None) -> Runtime:
    app = create_app(settings)
    metrics = Metrics()
    partitions = settings.kafka.partitions or settings.worker.partitions
    table = refine_store.create(app, partitions, metrics.refine_index_parsed.inc)

    def count_attempt(deployment: str, outcome: str) -> None:
        metrics.model_calls.labels(deployment, outcome).inc()

    rt = Runtime(
        settings=settings,
        app=app,
        codec=codec_for(settings.kafka, settings.registry),
        ports=ports or build_ports(settings, count_attempt),
        metrics=metrics,
        config=settings.pipeline_config(),
        table=table,
        open_deadlines=table.index.open_deadlines,
        open_tasks=table.index.open_tasks,
    )
    for stage in (intake, sessions, guardian, refine, monitor, health, alerts):
        stage.register(rt)
    answering = specialist.register(rt)
    live = live_config.register(rt)
    live.listeners.append(answering.apply)
    # Every version this worker runs under stays at hand for the requests admitted with it.
    rt.remember(rt.config)
    live.listeners.append(rt.remember)
    verdict_watch.register(rt)
    network.register(rt, live)
    experiments.register(rt)
    meta_guardian.register(rt)
    network_facts.register(rt)
    lessons.register(rt)
    load.register(rt, answering)
    capacity.register(rt)
    return rt
