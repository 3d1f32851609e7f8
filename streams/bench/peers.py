"""``guardian bench http``: our gateway with the pipeline behind it (one worker) side by
side with LiteLLM's proxy, both in front of the same instant model on loopback, driven
by the same open-loop HTTP generator: fixed rates, each one's sustainable rate, p50/p99
at half of it; and the raw Kafka chain's p50 at the common rate, the floor four hops set.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.gateway_access import key_digest
from streams.bench import http_load
from streams.bench.compare import BenchPlan, baseline_latency
from streams.bench.cpu import CpuMeter, settle
from streams.bench.fake_openai import MODEL as UPSTREAM
from streams.bench.http_load import Endpoint, HttpRunResult, SearchPlan, run_http_load
from streams.bench.litellm_proxy import LiteLLMProxy
from streams.bench.namespace import scratch_namespace
from streams.bench.procs import free_port, spawn, stop, wait_for_group, wait_for_line
from streams.bench.sweep import Plan as SweepPlan
from streams.bench.sweep import broker_pid
from streams.bench.workers import worker_cmd, worker_env
from streams.settings import AppSettings

Progress = Callable[[str], None]
GATEWAY_KEY = "sk-bench-gateway-0123456789abcdef0123456789"


@dataclass(frozen=True)
class PeersPlan:
    out: Path
    rates: tuple[float, ...] = (25.0, 50.0, 100.0)
    """The common fixed rates both systems are measured at."""
    seconds: float = 10.0
    search: SearchPlan = field(default_factory=SearchPlan)
    common_rate: float = 100.0
    """The rate of the p50 comparison with the raw Kafka chain."""
    warm_up_s: float = 3.0
    partitions: int = 6


async def run_peers(settings: AppSettings, plan: PeersPlan, progress: Progress) -> dict[str, Any]:
    plan.out.mkdir(parents=True, exist_ok=True)
    model_port = free_port()
    model = spawn(
        [sys.executable, "-m", "streams.bench.fake_openai", "--port", str(model_port)],
        plan.out / "model.log",
    )
    results: dict[str, Any] = {"plan": _plan(plan)}
    try:
        await wait_for_line(plan.out / "model.log", "model ready", model)
        model_url = f"http://127.0.0.1:{model_port}/v1"
        extra = {"model": model.pid} | _broker(settings)
        async with LiteLLMProxy(
            model_url, free_port(), plan.out / "litellm", upstream_model=UPSTREAM, progress=progress
        ) as proxy:
            assert proxy.pid is not None
            endpoint = Endpoint(proxy.base_url, proxy.api_key, "bench-model")
            progress("litellm proxy")
            results["litellm"] = await _characterize(
                endpoint, plan, {"litellm": proxy.pid} | extra, progress
            )
            results["litellm"]["settings"] = proxy.settings()
        results |= await _ours(settings, plan, model_url, extra, progress)
    finally:
        stop(model)
    results["ratios"] = _ratios(results)
    return results


async def _ours(
    settings: AppSettings,
    plan: PeersPlan,
    model_url: str,
    extra: dict[str, int],
    progress: Progress,
) -> dict[str, Any]:
    with scratch_namespace(settings, "peers", plan.partitions) as scoped:
        keys = plan.out / "gateway.keys"
        keys.write_text(f"{key_digest(GATEWAY_KEY)} bench\n")
        port = free_port()
        env = _worker_env(model_url, plan.partitions)
        worker = spawn(worker_cmd(scoped), plan.out / "worker.log", env)
        gateway_cmd = [sys.executable, "-m", "streams.cli", "serve", "--port", str(port)]
        gateway_cmd += ["--namespace", scoped.kafka.topic_namespace]
        gateway = spawn(
            gateway_cmd,
            plan.out / "gateway.log",
            {"GUARDIAN_GATEWAY_KEYS_FILE": str(keys), "GUARDIAN_GATEWAY_MAX_IN_FLIGHT": "4096"},
        )
        try:
            await wait_for_group(scoped, 1, [worker])
            await wait_for_line(plan.out / "gateway.log", "gateway listening", gateway)
            endpoint = Endpoint(f"http://127.0.0.1:{port}/v1", GATEWAY_KEY, "guardian")
            progress("gateway + pipeline (one worker)")
            pids = {"gateway": gateway.pid, "worker": worker.pid} | extra
            ours = await _characterize(endpoint, plan, pids, progress)
        finally:
            stop(gateway)
            stop(worker)
        progress(f"raw Kafka chain at {plan.common_rate:g} req/s")
        chain = await baseline_latency(scoped, _chain_plan(plan), progress)
    return {"gateway": ours, "kafka_chain": chain, "namespace": scoped.kafka.topic_namespace}


def _broker(settings: AppSettings) -> dict[str, int]:
    pid = broker_pid(settings.kafka.bootstrap_servers)
    return {} if pid is None else {"broker": pid}


def _worker_env(model_url: str, partitions: int) -> dict[str, str]:
    return worker_env(
        None,
        partitions,
        GUARDIAN_MODEL_BACKEND="openai",
        GUARDIAN_OPENAI_BASE_URL=model_url,
        GUARDIAN_OPENAI_MODEL=UPSTREAM,
    )


def _chain_plan(plan: PeersPlan) -> BenchPlan:
    sweep = SweepPlan(seconds=plan.seconds, latency_rate=plan.common_rate, repetitions=1)
    return BenchPlan(out=plan.out, sweep=sweep, partitions=plan.partitions)


async def _characterize(
    endpoint: Endpoint, plan: PeersPlan, pids: dict[str, int], progress: Progress
) -> dict[str, Any]:
    """Warm up; the fixed rates; the sustainable rate; p50/p99 at half of it. Every step
    meters the CPU of ``pids`` (and the broker's), listed per step in ``cpu``."""
    await run_http_load(endpoint, rate=min(plan.rates), seconds=plan.warm_up_s)
    cpu: list[dict[str, Any]] = []

    async def measure(rate: float) -> HttpRunResult:
        await settle(list(pids.values()))
        meter = CpuMeter(pids)
        meter.start()
        result = await run_http_load(endpoint, rate=rate, seconds=plan.seconds)
        ok = result.tally.ok
        per = {n: round(s * 1000 / ok, 2) for n, s in meter.stop().items()} if ok else {}
        cpu.append({"rate": rate, "cpu_ms_per_request": per})
        return result

    fixed = []
    for rate in plan.rates:
        step = await measure(rate)
        fixed.append(step.as_dict())
        progress(f"  fixed {rate:>6.1f} req/s: {http_load.brief(step)}")
    found = await http_load.find_sustainable_rate(measure, plan.search, progress)
    half = round(found["sustainable_rate"] / 2, 1)
    at_half = await measure(half) if half > 0 else None
    if at_half is not None:
        progress(f"  half   {half:>6.1f} req/s: {http_load.brief(at_half)}")
    return {
        "fixed": fixed,
        "search": found,
        "half_rate": half,
        "at_half": None if at_half is None else at_half.as_dict(),
        "cpu": cpu,
    }


def _ratios(results: dict[str, Any]) -> dict[str, Any]:
    ours, theirs = results.get("gateway"), results.get("litellm")
    if not ours or not theirs:
        return {}
    rate = theirs["search"]["sustainable_rate"]
    chain = results.get("kafka_chain", {})
    ours_p50 = _p50_at(ours, results["plan"]["common_rate"])
    return {
        "sustainable_rate_ratio": (
            round(ours["search"]["sustainable_rate"] / rate, 2) if rate else None
        ),
        "gateway_p50_ms_at_common_rate": ours_p50,
        "litellm_p50_ms_at_common_rate": _p50_at(theirs, results["plan"]["common_rate"]),
        "kafka_chain_p50_ms_at_common_rate": chain.get("p50_ms"),
        "gateway_minus_chain_p50_ms": (
            round(ours_p50 - chain["p50_ms"], 2)
            if ours_p50 is not None and chain.get("p50_ms") is not None
            else None
        ),
    }


def _p50_at(system: dict[str, Any], rate: float) -> float | None:
    for step in system["fixed"]:
        if step["rate"] == rate:
            return float(step["latency_ms"]["p50"])
    return None


def _plan(plan: PeersPlan) -> dict[str, Any]:
    return {
        "rates": list(plan.rates),
        "seconds": plan.seconds,
        "common_rate": plan.common_rate,
        "search_grid": list(plan.search.grid),
        "tolerance": plan.search.tolerance,
        "warm_up_s": plan.warm_up_s,
        "partitions": plan.partitions,
    }
