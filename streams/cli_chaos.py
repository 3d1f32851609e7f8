"""``guardian chaos``: run the pipeline under a fault schedule and check what it cost."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from connectors import broker
from streams.bench.procs import free_port
from streams.chaos.check import Report
from streams.chaos.procs import OwnBroker
from streams.chaos.run import ChaosPlan, Timeline, run_chaos
from streams.settings import AppSettings


def add_chaos_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    chaos = sub.add_parser(
        "chaos",
        help="run workers under load and a fault schedule, then check every topic",
        description="Starts its own workers (and with --own-broker its own broker), sends "
        "open-loop load through a loopback model server, kills workers (and faults the "
        "broker it started), waits for quiescence and checks every topic. Exits non-zero "
        "on any lost request, conflicting responses or refinement-round gap.",
    )
    chaos.add_argument("--requests", type=int, default=300)
    chaos.add_argument("--rate", type=float, default=20.0, help="requests per second")
    chaos.add_argument("--workers", type=int, default=2)
    chaos.add_argument("--partitions", type=int, default=6)
    chaos.add_argument("--latency-ms", type=float, default=200.0, help="model latency")
    chaos.add_argument("--worker-kills", type=int, help="at most this many worker kills")
    chaos.add_argument(
        "--kill-every", type=float, nargs=2, default=(20.0, 30.0), metavar=("MIN_S", "MAX_S")
    )
    chaos.add_argument("--quiet-start", type=float, default=30.0, help="seconds before a fault")
    chaos.add_argument(
        "--own-broker",
        action="store_true",
        help="start a private broker (own run dir and ports) and fault it too: "
        "one SIGKILL and restart, one SIGSTOP",
    )
    chaos.add_argument("--broker-stop", type=float, default=20.0, help="SIGSTOP seconds")
    chaos.add_argument("--drain", type=float, default=240.0, help="seconds to wait for answers")
    chaos.add_argument("--seed", type=int, default=14)
    chaos.add_argument("--keep-topics", action="store_true", help="do not delete the topics")
    chaos.add_argument(
        "--static-membership",
        action="store_true",
        help="give each worker slot its own GUARDIAN_WORKER_INSTANCE_ID, kept across "
        "restarts (as a StatefulSet would)",
    )
    chaos.add_argument("--out", type=Path, help="logs (default .run/chaos/<time>)")
    chaos.set_defaults(handler=_chaos)


def _plan(args: argparse.Namespace, out: Path) -> ChaosPlan:
    return ChaosPlan(
        out=out,
        requests=args.requests,
        rate=args.rate,
        workers=args.workers,
        partitions=args.partitions,
        latency_s=args.latency_ms / 1000,
        worker_kills=args.worker_kills,
        kill_every_s=tuple(args.kill_every),
        quiet_start_s=args.quiet_start,
        broker_stop_s=args.broker_stop,
        drain_s=args.drain,
        seed=args.seed,
        keep_topics=args.keep_topics,
        static_membership=args.static_membership,
    )


def _chaos(args: argparse.Namespace) -> int:
    out = args.out or Path(".run/chaos") / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    settings = AppSettings.load()
    own = None
    if args.own_broker:
        own = OwnBroker(
            settings.broker.model_copy(
                update={
                    "run_dir": out / "broker",
                    "port": free_port(),
                    "controller_port": free_port(),
                }
            )
        )
        print(f"starting a private broker in {out / 'broker'}", flush=True)
        broker.start(own.settings)
        settings = settings.model_copy(update={"kafka": broker.client_settings(own.settings)})
    try:
        report, timeline = asyncio.run(
            run_chaos(settings, _plan(args, out), own, lambda line: print(line, flush=True))
        )
    finally:
        if own is not None:
            broker.stop(own.settings)
    for line in summary(report, timeline):
        print(line)
    return 0 if report.ok else 1


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def summary(report: Report, timeline: Timeline) -> list[str]:
    """The checker's report, its last line exactly ``Report.last_line``."""
    lines = [
        f"statuses: {report.statuses}",
        f"dead letters: {report.dead_letters}",
        f"model calls: {report.model_calls} for {report.tasks} tasks",
        f"latency (s): {report.latency_s}",
        f"baseline p99 (s): {_rounded(report.baseline_p99_s)}",
    ]
    for r in report.recoveries:
        took = (
            f"not recovered in the {r.had_s:g}s before {r.before}"
            if r.seconds is None
            else f"{r.seconds:g}s"
        )
        at = r.fault.started - timeline.t0
        lines.append(f"recovery after {r.fault.kind} at t+{at:.0f}s: {took}")
    if report.lost:
        lines.append(f"lost: {', '.join(report.lost[:20])}")
    if report.conflicting:
        lines.append(f"conflicting: {', '.join(report.conflicting[:20])}")
    if report.round_gaps:
        lines.append(f"round gaps: {', '.join(report.round_gaps[:20])}")
    lines.append(report.last_line())
    return lines
