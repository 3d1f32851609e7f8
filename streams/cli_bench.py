"""``guardian bench``: pipeline and raw-Kafka baseline under open-loop load, in one run;
``guardian bench priority``: latency per priority lane at saturation (``bench.priority``).

Each system gets a step-load sweep to find its sustainable rate (every request
answered, p99 under a bound), then repeated runs at half that rate for latency;
the pipeline also runs with a fixed model latency to show concurrency holds
throughput. Micro-benchmarks of the codec and the pure cores come last.
Results go to a JSON file and a summary on screen.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from connectors import broker
from streams.bench.cpu import CpuMeter
from streams.bench.loadgen import RunResult, Target, run_load
from streams.bench.micro import run_micro
from streams.bench.priority import DEFAULT_MIX, Plan, parse_mix, run_priority_bench
from streams.bench.procs import ready_target, spawn, stop, wait_for_line
from streams.settings import AppSettings
from streams.worker import provision

P99_BOUND_MS = 1000.0


def add_bench_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser("bench", help="benchmark the pipeline against a raw Kafka chain")
    bench.add_argument("--rates", default="100,200,400,700,1000,1400", help="sweep, req/s")
    bench.add_argument("--seconds", type=float, default=8.0, help="length of each load step")
    bench.add_argument("--repetitions", type=int, default=3, help="runs at half the max rate")
    bench.add_argument("--model-latency-ms", type=float, default=200.0)
    bench.add_argument("--latency-rate", type=float, default=50.0, help="rate of that run")
    bench.add_argument("--partitions", type=int, default=6)
    bench.add_argument("--workers", type=int, default=1, help="pipeline worker processes")
    bench.add_argument("--out", type=Path, default=Path(".run/bench"))
    bench.add_argument("--smoke", action="store_true", help="a few seconds, to check it works")
    bench.set_defaults(handler=_bench)
    kinds = bench.add_subparsers(dest="bench_kind", metavar="{priority}")
    _add_priority_command(kinds)


def _add_priority_command(kinds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    prio = kinds.add_parser("priority", help="latency per priority lane, one worker at saturation")
    prio.add_argument("--slots", type=int, default=2, help="model calls at once")
    prio.add_argument("--model-latency-ms", type=float, default=100.0)
    prio.add_argument("--overload", type=float, default=1.5, help="load / model capacity")
    prio.add_argument("--seconds", type=float, default=15.0, help="length of the load")
    prio.add_argument("--mix", default=DEFAULT_MIX, help="priority:share items")
    prio.add_argument("--partitions", type=int, default=6)
    prio.add_argument(
        "--compare",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the same load once more with a single lane (FIFO), for reference",
    )
    prio.add_argument("--out", type=Path, default=Path(".run/bench"))
    prio.add_argument("--smoke", action="store_true", help="a few seconds, to check it works")
    prio.set_defaults(handler=_bench_priority)


def _bench_priority(args: argparse.Namespace) -> int:
    plan = Plan(
        slots=args.slots,
        model_latency_ms=args.model_latency_ms,
        overload=args.overload,
        seconds=3.0 if args.smoke else args.seconds,
        mix=parse_mix(args.mix),
        partitions=args.partitions,
        compare=args.compare and not args.smoke,
    )
    results = asyncio.run(run_priority_bench(AppSettings.load(), plan, args.out, _progress))
    results["machine"] = _machine()
    _print_priority_summary(results)
    print(f"\nresults written to {_write(results, args.out, 'priority')}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    if args.smoke:
        args.rates, args.seconds, args.repetitions, args.latency_rate = "20", 2.0, 1, 10.0
    results = asyncio.run(run_bench(AppSettings.load(), args))
    _print_summary(results)
    print(f"\nresults written to {_write(results, args.out, 'results')}")
    return 0


def _write(results: dict[str, Any], out: Path, stem: str) -> Path:
    """The results as ``<out>/<stem>-<UTC time>.json``."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


async def run_bench(settings: AppSettings, args: argparse.Namespace) -> dict[str, Any]:
    rates = [float(r) for r in args.rates.split(",")]
    ns = f"bench{uuid.uuid4().hex[:8]}"
    settings = settings.with_namespace(ns)
    kafka = settings.kafka.model_copy(update={"partitions": args.partitions})
    settings = settings.model_copy(update={"kafka": kafka})
    provision(settings)
    results: dict[str, Any] = {"machine": _machine(), "settings": _settings_of(args)}
    results["baseline"] = await _measure_baseline(settings, args, rates)
    results["pipeline"] = await _measure_pipeline(settings, args, rates, model_latency_ms=0)
    results["pipeline_model_latency"] = await _measure_pipeline(
        settings, args, [args.latency_rate], model_latency_ms=args.model_latency_ms, sweep=False
    )
    results["ratios"] = _ratios(results["pipeline"], results["baseline"])
    results["micro_us"] = run_micro()
    return results


def _machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _settings_of(args: argparse.Namespace) -> dict[str, Any]:
    keys = (
        "rates",
        "seconds",
        "repetitions",
        "model_latency_ms",
        "latency_rate",
        "partitions",
        "workers",
    )
    return {k: getattr(args, k) for k in keys}


async def _measure_baseline(
    settings: AppSettings, args: argparse.Namespace, rates: list[float]
) -> dict[str, Any]:
    chain = [f"{settings.kafka.topic_namespace}.baseline.hop{i}" for i in range(5)]
    _create_topics(settings, chain, args.partitions)
    proc = spawn(
        [
            sys.executable,
            "-m",
            "streams.bench.baseline",
            "--bootstrap",
            settings.kafka.bootstrap_servers,
            "--chain",
            ",".join(chain),
            "--group",
            chain[0],
        ],
        Path(args.out) / "baseline.log",
    )
    try:
        await wait_for_line(Path(args.out) / "baseline.log", "baseline ready", proc)
        target = Target(settings.kafka.bootstrap_servers, chain[0], chain[-1], args.partitions)
        await _warm_up(target, rates)
        return await _sweep_and_repeat(target, args, rates, {"baseline": proc.pid})
    finally:
        stop(proc)


async def _measure_pipeline(
    settings: AppSettings,
    args: argparse.Namespace,
    rates: list[float],
    *,
    model_latency_ms: float,
    sweep: bool = True,
) -> dict[str, Any]:
    script = Path(args.out) / f"script-{int(model_latency_ms)}.json"
    script.write_text(json.dumps({"default": {"latency_ms": model_latency_ms}}))
    env = {
        "GUARDIAN_MODEL_BACKEND": "scripted",
        "GUARDIAN_MODEL_SCRIPT_PATH": str(script),
        "GUARDIAN_GUARD_EMBEDDER": "hashing",
        "GUARDIAN_GUARD_PII_CHECK": "false",
        # Every request must reach the model: the cache would answer repeats at once.
        "GUARDIAN_CACHE_BACKEND": "off",
        "GUARDIAN_WORKER_METRICS_PORT": "0",
        "GUARDIAN_WORKER_SPECIALIST_CONCURRENCY": "64",
        "GUARDIAN_KAFKA_PARTITIONS": str(args.partitions),
    }
    cmd = [sys.executable, "-m", "streams.cli", "worker", "--namespace"]
    cmd += [settings.kafka.topic_namespace]
    procs = [
        spawn(cmd, Path(args.out) / f"worker-{int(model_latency_ms)}-{i}.log", env)
        for i in range(args.workers)
    ]
    try:
        target = await ready_target(settings, procs, args.partitions)
        pids = {f"worker{i}" if i else "worker": p.pid for i, p in enumerate(procs)}
        await _warm_up(target, rates)
        if not sweep:
            return {
                "model_latency_ms": model_latency_ms,
                **await _runs(target, args, rates[0], pids),
            }
        return await _sweep_and_repeat(target, args, rates, pids)
    finally:
        for proc in procs:
            stop(proc)


async def _warm_up(target: Target, rates: list[float]) -> None:
    """A short unmeasured load, so neither system's first step pays for connections and
    metadata."""
    await run_load(target, rate=min(rates), seconds=2.0, drain_s=20)


async def _sweep_and_repeat(
    target: Target, args: argparse.Namespace, rates: list[float], pids: dict[str, int]
) -> dict[str, Any]:
    steps = []
    sustainable = 0.0
    for rate in rates:
        step = await _measured(target, args, rate, pids)
        steps.append(step)
        print(f"   {rate:>6.0f} req/s: {_brief(step)}", file=sys.stderr, flush=True)
        if not _kept_up(step):
            break
        sustainable = rate
    half = max(sustainable / 2, min(rates) / 2)
    return {
        "sweep": steps,
        "sustainable_rate": sustainable,
        **await _runs(target, args, half, pids),
    }


async def _runs(
    target: Target, args: argparse.Namespace, rate: float, pids: dict[str, int]
) -> dict[str, Any]:
    runs = [await _measured(target, args, rate, pids) for _ in range(args.repetitions)]
    return {"latency_rate": rate, "runs": runs}


async def _measured(
    target: Target, args: argparse.Namespace, rate: float, pids: dict[str, int]
) -> dict[str, Any]:
    meter = CpuMeter(pids | _broker_pid() | {"generator": os.getpid()})
    meter.start()
    result: RunResult = await run_load(target, rate=rate, seconds=args.seconds, drain_s=20)
    return result.as_dict() | {"cpu_seconds": meter.stop()}


def _kept_up(step: dict[str, Any]) -> bool:
    return bool(step["received"] == step["sent"] and step["latency_ms"]["p99"] <= P99_BOUND_MS)


def _brief(step: dict[str, Any]) -> str:
    lat = step["latency_ms"]
    return (
        f"{step['received']}/{step['sent']} answered, {step['throughput']}/s, "
        f"p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, cpu {step['cpu_seconds']}"
    )


def _ratios(pipeline: dict[str, Any], baseline: dict[str, Any]) -> dict[str, float | None]:
    def p99(section: dict[str, Any]) -> float:
        return float(min(r["latency_ms"]["p99"] for r in section["runs"]))

    base_rate = baseline["sustainable_rate"]
    return {
        "throughput": round(pipeline["sustainable_rate"] / base_rate, 3) if base_rate else None,
        "p99_latency_at_own_half_rate": round(p99(pipeline) / p99(baseline), 2),
    }


def _broker_pid() -> dict[str, int]:
    state = broker.status(broker.BrokerSettings())
    return {"broker": state.pid} if state.pid else {}


def _create_topics(settings: AppSettings, names: list[str], partitions: int) -> None:
    admin = AdminClient(settings.kafka.confluent())
    futures = admin.create_topics([NewTopic(n, num_partitions=partitions) for n in names])
    for future in futures.values():
        future.result(timeout=30)


def _print_summary(results: dict[str, Any]) -> None:
    print("\n== summary")
    for name in ("baseline", "pipeline"):
        section = results[name]
        best = min(section["runs"], key=lambda r: r["latency_ms"]["p99"])
        print(
            f"{name:<9} sustainable {section['sustainable_rate']:.0f} req/s; at "
            f"{section['latency_rate']:.0f} req/s: {_brief(best)}"
        )
    slow = results["pipeline_model_latency"]
    print(f"pipeline with {slow['model_latency_ms']:.0f} ms model: {_brief(slow['runs'][0])}")
    print(f"ratios: {results['ratios']}")
    print("micro (us/call): " + ", ".join(f"{k} {v}" for k, v in results["micro_us"].items()))


def _progress(line: str) -> None:
    print(f"   {line}", file=sys.stderr, flush=True)


def _print_priority_summary(results: dict[str, Any]) -> None:
    plan = results["plan"]
    print(
        f"\n== priority at saturation: {plan['slots']} slots x {plan['model_latency_ms']:.0f} ms"
        f" model, {plan['rate']:.0f} req/s offered ({plan['overload']}x capacity)"
        f" for {plan['seconds']:.0f} s"
    )
    for run in results["runs"].values():
        print(
            f"{run['lanes']} lane(s): {run['received']}/{run['sent']} answered,"
            f" {run['throughput']}/s over send and drain"
        )
        print(f"  {'lane':<8}{'requests':>9}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}")
        for name, lat in run["by_lane"].items():
            print(
                f"  {name:<8}{lat['requests']:>9}{lat['p50']:>10.1f}{lat['p95']:>10.1f}"
                f"{lat['p99']:>10.1f}"
            )
