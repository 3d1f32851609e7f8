"""``guardian bench``: pipeline and raw-Kafka baseline under open-loop load, in one run
(``bench.compare``); ``guardian bench priority``: latency per priority lane at saturation
(``bench.priority``); ``guardian bench soak``: one worker's memory and restart under a long
steady load (``bench.soak``). Results go to a JSON file and a summary on screen.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streams.bench.compare import BenchPlan, run_bench
from streams.bench.priority import DEFAULT_MIX, Plan, parse_mix, run_priority_bench
from streams.bench.soak import SoakPlan, run_soak
from streams.bench.summary import bench_lines, soak_lines
from streams.bench.sweep import Plan as SweepPlan
from streams.settings import AppSettings

SMOKE_SWEEP = SweepPlan(
    grid=(50, 200),
    cap=3200,
    factor=4.0,
    tolerance=0.25,
    max_probes=2,
    seconds=1.0,
    drain_s=15.0,
    latency_rate=20.0,
    repetitions=2,
)
"""A few seconds per system: the sweep still runs until a failure, the bisection is short."""


def add_bench_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser("bench", help="benchmark the pipeline against a raw Kafka chain")
    bench.add_argument("--rates", default="100,200,400,700,1000,1400", help="sweep, req/s")
    bench.add_argument("--max-rate", type=float, default=20_000.0, help="sweep cap, req/s")
    bench.add_argument("--tolerance", type=float, default=0.05, help="of the sustainable rate")
    bench.add_argument("--seconds", type=float, default=8.0, help="length of each load step")
    bench.add_argument("--latency-rate", type=float, default=100.0, help="for both systems")
    bench.add_argument("--repetitions", type=int, default=3, help="runs at the latency rate")
    bench.add_argument("--p99-bound-ms", type=float, default=1000.0, help="to count as held")
    bench.add_argument(
        "--growth-bound-ms", type=float, default=150.0, help="median latency growth in a step"
    )
    bench.add_argument("--model-latency-ms", type=float, default=200.0)
    bench.add_argument("--model-latency-rate", type=float, default=50.0, help="rate of that run")
    bench.add_argument("--partitions", type=int, default=6)
    bench.add_argument("--workers", type=int, default=1, help="pipeline worker processes")
    bench.add_argument("--out", type=Path, default=Path(".run/bench"))
    bench.add_argument("--smoke", action="store_true", help="a few seconds, to check it works")
    bench.set_defaults(handler=_bench)
    kinds = bench.add_subparsers(dest="bench_kind", metavar="{priority,soak,http,scale}")
    _add_priority_command(kinds)
    _add_soak_command(kinds)
    _add_http_command(kinds)
    _add_scale_command(kinds)


def _add_scale_command(kinds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    scale = kinds.add_parser(
        "scale", help="a backlog drained by 1, 2, 3 workers, the model the bottleneck"
    )
    scale.add_argument("--workers", default="1,2,3", help="worker counts to compare")
    scale.add_argument("--slots", type=int, default=4, help="model calls at once per worker")
    scale.add_argument("--model-latency-ms", type=float, default=200.0)
    scale.add_argument("--backlog", type=int, default=300, help="requests in the backlog")
    scale.add_argument("--partitions", type=int, default=6)
    scale.add_argument("--repetitions", type=int, default=2, help="runs per configuration")
    scale.add_argument("--out", type=Path, default=Path(".run/bench"))
    scale.add_argument("--smoke", action="store_true", help="a small backlog, 1 and 2 workers")
    scale.set_defaults(handler=_bench_scale)


def _bench_scale(args: argparse.Namespace) -> int:
    from streams.bench.scale import ScalePlan, run_scale

    plan = ScalePlan(
        out=args.out / "scale",
        workers=(1, 2) if args.smoke else tuple(int(n) for n in args.workers.split(",")),
        slots=args.slots,
        model_latency_ms=args.model_latency_ms,
        backlog=24 if args.smoke else args.backlog,
        partitions=args.partitions,
        repetitions=1 if args.smoke else args.repetitions,
    )
    results = {"machine": _machine(), "smoke": args.smoke}
    results |= asyncio.run(run_scale(AppSettings.load(), plan, _progress))
    print("\n== summary")
    for run in results["runs"]:
        print(
            f"{run['workers']} worker(s) x {run['slots']} slots: {run['throughput']} req/s "
            f"(capacity {run['capacity']:.0f}; runs "
            f"{', '.join(str(r['throughput']) for r in run['repeats'])}), backlog of "
            f"{run['sent']} drained in {run['drained_s']} s, speedup {run['speedup']}"
        )
    print(f"\nresults written to {_write(results, args.out, 'scale')}")
    return 0


def _add_http_command(kinds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    http = kinds.add_parser(
        "http", help="our gateway and pipeline side by side with LiteLLM's proxy"
    )
    http.add_argument("--rates", default="25,50,100", help="common fixed rates, req/s")
    http.add_argument("--seconds", type=float, default=10.0, help="length of each load step")
    http.add_argument("--grid", default="50,100,200,400", help="search sweep, req/s")
    http.add_argument("--tolerance", type=float, default=0.1, help="of the sustainable rate")
    http.add_argument("--common-rate", type=float, default=100.0, help="p50 vs the Kafka chain")
    http.add_argument("--out", type=Path, default=Path(".run/bench"))
    http.add_argument("--smoke", action="store_true", help="a few seconds, to check it works")
    http.set_defaults(handler=_bench_http)


def _bench_http(args: argparse.Namespace) -> int:
    from streams.bench.http_load import SearchPlan
    from streams.bench.peers import PeersPlan, run_peers
    from streams.bench.summary import peers_lines

    rates = tuple(float(r) for r in args.rates.split(","))
    grid = tuple(float(r) for r in args.grid.split(","))
    plan = PeersPlan(
        out=args.out / "http",
        rates=(10.0, 20.0) if args.smoke else rates,
        seconds=2.0 if args.smoke else args.seconds,
        search=SearchPlan(
            grid=(20.0, 40.0) if args.smoke else grid,
            cap=80.0 if args.smoke else 10_000.0,
            tolerance=0.5 if args.smoke else args.tolerance,
            max_probes=1 if args.smoke else 6,
        ),
        common_rate=20.0 if args.smoke else args.common_rate,
        warm_up_s=1.0 if args.smoke else 3.0,
    )
    results = {"machine": _machine(), "smoke": args.smoke}
    results |= asyncio.run(run_peers(AppSettings.load(), plan, _progress))
    print("\n".join(peers_lines(results)))
    print(f"\nresults written to {_write(results, args.out, 'peers')}")
    return 0


def _add_soak_command(kinds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    soak = kinds.add_parser("soak", help="one worker's memory and restart under a long load")
    soak.add_argument("--requests", type=int, default=100_000)
    soak.add_argument("--rate", type=float, default=100.0, help="req/s, open loop")
    soak.add_argument("--retain-s", type=float, default=30.0, help="refinement-table retention")
    soak.add_argument("--partitions", type=int, default=6)
    soak.add_argument("--out", type=Path, default=Path(".run/bench"))
    soak.add_argument("--smoke", action="store_true", help="300 requests at 50/s")
    soak.set_defaults(handler=_soak)


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
    plan = _bench_plan(args)
    results = {"machine": _machine(), "settings": _settings_of(args, plan)}
    results |= asyncio.run(run_bench(AppSettings.load(), plan, _progress))
    print("\n".join(bench_lines(results)))
    print(f"\nresults written to {_write(results, args.out, 'results')}")
    return 0


def _bench_plan(args: argparse.Namespace) -> BenchPlan:
    sweep = (
        SMOKE_SWEEP
        if args.smoke
        else SweepPlan(
            grid=tuple(float(r) for r in args.rates.split(",")),
            cap=args.max_rate,
            tolerance=args.tolerance,
            seconds=args.seconds,
            p99_bound_ms=args.p99_bound_ms,
            growth_bound_ms=args.growth_bound_ms,
            latency_rate=args.latency_rate,
            repetitions=args.repetitions,
        )
    )
    return BenchPlan(
        out=args.out,
        sweep=sweep,
        partitions=args.partitions,
        workers=args.workers,
        model_latency_ms=args.model_latency_ms,
        model_latency_rate=10.0 if args.smoke else args.model_latency_rate,
        warm_up_s=1.0 if args.smoke else 2.0,
        micro_s=0.05 if args.smoke else 0.5,
    )


def _soak(args: argparse.Namespace) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a request per metrics sample
    plan = SoakPlan(
        out=args.out,
        requests=300 if args.smoke else args.requests,
        rate=50.0 if args.smoke else args.rate,
        retain_s=args.retain_s,
        partitions=args.partitions,
        sample_s=0.5 if args.smoke else 1.0,
        drain_s=20.0 if args.smoke else 60.0,
    )
    results = {"machine": _machine()} | asyncio.run(run_soak(AppSettings.load(), plan, _progress))
    path = _write(results, args.out, "soak")
    print(f"results written to {path}")
    print("\n".join(soak_lines(results)))
    return 0


def _write(results: dict[str, Any], out: Path, stem: str) -> Path:
    """The results as ``<out>/<stem>-<UTC time>.json``."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def _machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _settings_of(args: argparse.Namespace, plan: BenchPlan) -> dict[str, Any]:
    sweep = plan.sweep
    return {
        "smoke": args.smoke,
        "rates": list(sweep.grid),
        "max_rate": sweep.cap,
        "tolerance": sweep.tolerance,
        "seconds": sweep.seconds,
        "p99_bound_ms": sweep.p99_bound_ms,
        "growth_bound_ms": sweep.growth_bound_ms,
        "latency_rate": sweep.latency_rate,
        "repetitions": sweep.repetitions,
        "model_latency_ms": plan.model_latency_ms,
        "model_latency_rate": plan.model_latency_rate,
        "partitions": plan.partitions,
        "workers": plan.workers,
    }


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
