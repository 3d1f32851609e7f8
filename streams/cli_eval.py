"""``guardian eval``: does refinement improve answers? Arms through the real pipeline,
scored by a verifier that never reads the prompt."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

from streams.eval.project_set import tasks as project_tasks
from streams.eval.run import ARMS, EvalPlan, Task, only, recorded, run_eval, spread, summary
from streams.settings import AppSettings


def add_eval_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ev = sub.add_parser(
        "eval",
        help="measure refinement: single shot, resampling and refinement arms on a task set",
        description="Runs each arm with its own worker and namespace on the same model "
        "(whatever GUARDIAN_MODEL_* names) and tasks, then scores every final answer with "
        "the task set's verifier. Arms: "
        + "; ".join(f"{a.name}: {a.about}" for a in ARMS.values())
        + ". The last line compares C with A.",
    )
    ev.add_argument("--arms", default="A,R,B,C", help="comma-separated, from A R B C C+")
    ev.add_argument(
        "--set",
        dest="task_set",
        choices=("project", "ifbench"),
        default="project",
        help="the project's task set, or IFBench's test set (its verifiable prompts, scored "
        "by its official verifiers; needs `make eval-deps`)",
    )
    ev.add_argument(
        "--only",
        choices=("declared", "stated"),
        help="only the tasks whose constraints translate into client-declared ones (what "
        "C+ sends), or only those where the constraint guardian finds a constraint stated "
        "in the prompt",
    )
    size = ev.add_mutually_exclusive_group()
    size.add_argument("--tasks", type=int, help="the first N tasks of the set (after --only)")
    size.add_argument(
        "--spread",
        type=int,
        metavar="N",
        help="N tasks spread evenly over the set (after --only): IFBench's prompts come "
        "grouped by instruction type, so its first N cover only a few types",
    )
    ev.add_argument(
        "--max-tokens",
        type=int,
        help="tokens per model call each request asks for (default: 512 for ifbench, the "
        "specialist's default otherwise)",
    )
    ev.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    ev.add_argument("--timeout", type=float, default=600.0, help="seconds per request")
    ev.add_argument("--out", type=Path, help="worker logs (default .run/eval/<time>)")
    ev.add_argument(
        "--summarize",
        type=Path,
        nargs="+",
        metavar="DIR",
        help="run nothing: print the summary of the arms recorded in these --out folders",
    )
    ev.set_defaults(handler=_eval)
    probe = sub.add_parser(
        "eval-json",
        help="the embedded model on the demo's JSON re-ask, in each message layout",
        description="Asks the embedded model the demo's JSON re-ask directly (no pipeline) "
        "under JSON-constrained decoding, once per layout and sample, and counts the answers "
        "that are valid JSON about the question.",
    )
    probe.add_argument("--per-temperature", type=int, default=4, help="samples per temperature")
    probe.add_argument("--max-tokens", type=int, default=256)
    probe.set_defaults(handler=_eval_json)


def _eval(args: argparse.Namespace) -> int:
    if args.summarize:
        found = [r for folder in args.summarize for r in recorded(folder)]
        if not found:
            print(f"no arm-*.jsonl in {', '.join(map(str, args.summarize))}")
            return 2
        for line in summary(found):
            print(line)
        return 0
    arms = [a.strip().upper() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        print(f"unknown arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")
        return 2
    chosen = only(_tasks(args.task_set), args.only)
    if not chosen:
        print(f"no task of the {args.task_set} set is {args.only}")
        return 2
    chosen = chosen[: args.tasks] if args.tasks else chosen
    chosen = spread(chosen, args.spread) if args.spread else chosen
    out = args.out or Path(".run/eval") / time.strftime("%Y%m%d-%H%M%S")
    max_tokens = args.max_tokens or (512 if args.task_set == "ifbench" else None)
    plan = EvalPlan(
        out=out,
        arms=arms,
        concurrency=args.concurrency,
        timeout_s=args.timeout,
        max_tokens=max_tokens,
    )
    results = asyncio.run(
        run_eval(AppSettings.load(), plan, chosen, lambda line: print(line, flush=True))
    )
    for line in summary(results):
        print(line)
    return 0


def _tasks(task_set: str) -> Sequence[Task]:
    if task_set == "project":
        return project_tasks()
    from streams.eval import ifbench

    try:
        loaded, coverage = ifbench.load()
    except ifbench.IFBenchNotInstalled as exc:
        raise SystemExit(f"guardian eval: {exc}") from None
    print(ifbench.describe(coverage), flush=True)
    return loaded


def _eval_json(args: argparse.Namespace) -> int:
    from streams.eval.json_probe import probe

    for line in asyncio.run(probe(args.per_temperature, args.max_tokens)):
        print(line)
    return 0
