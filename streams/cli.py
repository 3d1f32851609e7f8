"""The ``guardian`` command: broker, topics, worker, ask, tail, demo."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from connectors import kafka_connect
from connectors.client import GuardianClient
from schemas.envelope import Event
from schemas.request_events import Constraint, ResponseDelivered
from streams.cli_anomalies import add_anomalies_command
from streams.cli_bench import add_bench_command
from streams.cli_broker import add_broker_commands
from streams.cli_chaos import add_chaos_command
from streams.cli_config import add_config_commands
from streams.cli_errors import read_prompt, run_reporting
from streams.cli_eval import add_eval_command
from streams.cli_gateway import add_gateway_commands
from streams.cli_lessons import add_lessons_command
from streams.cli_optimizer import add_optimizer_command
from streams.cli_replay import add_replay_commands
from streams.settings import AppSettings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="guardian", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    add_broker_commands(sub)
    add_bench_command(sub)
    add_chaos_command(sub)
    add_eval_command(sub)
    add_replay_commands(sub)
    add_config_commands(sub)
    add_gateway_commands(sub)
    add_anomalies_command(sub)
    add_optimizer_command(sub)
    add_lessons_command(sub)
    _add_pipeline_commands(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        logging.getLogger("aiokafka").setLevel(logging.WARNING)
        # Fetches retried while a new topic's leaders settle; nothing for a user to do.
        logging.getLogger("aiokafka.consumer.fetcher").setLevel(logging.CRITICAL)
        if args.command not in {"worker", "serve"}:
            # A client command reports a failure to connect as one typed line itself.
            logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    return run_reporting(args.handler, args)


def _add_pipeline_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    topics = sub.add_parser("topics", help="create the pipeline's topics (idempotent)")
    topics.set_defaults(handler=_topics)
    worker = sub.add_parser("worker", help="run a pipeline worker until interrupted")
    worker.add_argument("--loglevel", default="info")
    worker.add_argument("--namespace", help="topic namespace (overrides the setting)")
    worker.set_defaults(handler=_worker)
    ask = sub.add_parser("ask", help="submit a prompt and print the final answer")
    ask.add_argument("prompt", nargs="?", help="the prompt, or - to read it from stdin")
    ask.add_argument("--prompt-file", type=Path, help="read the prompt from this file")
    ask.add_argument("--timeout", type=float, default=120.0)
    ask.add_argument("--priority", type=int, default=5)
    ask.add_argument("--format", dest="answer_format", default="text")
    ask.add_argument(
        "--constraint",
        dest="constraints",
        action="append",
        default=[],
        metavar="JSON",
        help='a requirement checked exactly, repeatable: \'{"kind": "words", "relation": '
        '"at_most", "count": 50}\' (kinds: docs/constraints.md)',
    )
    ask.add_argument("--max-tokens", type=int, help="cap on tokens per model call")
    ask.add_argument("--temperature", type=float, help="sampling temperature of round 1")
    ask.add_argument(
        "--response-format", metavar="JSON", help='OpenAI style, e.g. \'{"type": "json_object"}\''
    )
    ask.add_argument("--json", action="store_true", help="print the response as JSON")
    ask.set_defaults(handler=_ask)
    trail = sub.add_parser("trail", help="print a request's decision trail from the log")
    trail.add_argument("request_id")
    trail.add_argument("--json", action="store_true", help="one event per line, as JSON")
    trail.set_defaults(handler=_trail)
    tail = sub.add_parser("tail", help="follow final responses")
    tail.add_argument("--from-beginning", action="store_true")
    tail.add_argument("--json", action="store_true")
    tail.set_defaults(handler=_tail)
    feedback = sub.add_parser("feedback", help="rate an answer or report a signal")
    feedback.add_argument("request_id")
    feedback.add_argument("--rating", type=float, help="0.0 (bad) to 1.0 (good)")
    feedback.add_argument("--signal", help="accepted, copied, regenerated, abandoned, edited")
    feedback.add_argument("--comment")
    feedback.set_defaults(handler=_feedback)
    demo = sub.add_parser("demo", help="run the pipeline end to end on sample requests")
    demo.set_defaults(handler=_demo)


def _topics(_args: argparse.Namespace) -> int:
    from streams.worker import provision

    settings = AppSettings.load()
    asyncio.run(kafka_connect.wait_until_reachable(settings.kafka, deadline_s=30))
    created = provision(settings)
    print(f"created {len(created)} topics" + (f": {', '.join(created)}" if created else ""))
    return 0


def _worker(args: argparse.Namespace) -> int:
    from streams.worker import run_worker

    settings = AppSettings.load()
    if args.namespace is not None:
        settings = settings.with_namespace(args.namespace)
    # Refused credentials or an untrusted certificate end the worker here with one line;
    # a broker not up yet is waited for.
    asyncio.run(kafka_connect.wait_until_reachable(settings.kafka))
    run_worker(settings, loglevel=args.loglevel)
    return 0


def format_response(r: ResponseDelivered) -> str:
    head = f"[{r.status}] confidence {r.confidence:.2f}, rounds {r.rounds}"
    if r.reason:
        head += f" - {r.reason}"
    return f"{head}\n{r.content}" if r.content else head


def _ask(args: argparse.Namespace) -> int:
    if args.prompt is not None and args.prompt_file is not None:
        raise SystemExit("guardian ask: give a prompt or --prompt-file, not both")
    prompt = read_prompt(args.prompt, args.prompt_file)
    settings = AppSettings.load()
    declared = [_constraint(text) for text in args.constraints]

    async def go() -> ResponseDelivered:
        limit = settings.refine.max_prompt_chars
        async with GuardianClient(settings.kafka, max_prompt_chars=limit) as client:
            return await client.ask(
                prompt,
                timeout_s=args.timeout,
                priority=args.priority,
                answer_format=args.answer_format,
                constraints=declared,
                max_tokens=args.max_tokens,
                temperature=args.temperature,
                response_format=args.response_format,
            )

    response = asyncio.run(go())
    print(response.model_dump_json(indent=2) if args.json else format_response(response))
    return 0 if response.status == "passed" else 1


def _constraint(text: str) -> Constraint:
    try:
        return Constraint.model_validate_json(text)
    except ValueError as exc:
        raise SystemExit(
            f"guardian ask: --constraint {text!r} is not a constraint: {exc}"
        ) from None


def _tail(args: argparse.Namespace) -> int:
    async def go() -> None:
        async with GuardianClient(AppSettings.load().kafka) as client:
            async for r in client.responses(from_beginning=args.from_beginning):
                line = r.model_dump_json() if args.json else f"{r.request_id} {format_response(r)}"
                print(line, flush=True)

    try:
        asyncio.run(go())
    except KeyboardInterrupt:
        return 0
    return 0


def _trail(args: argparse.Namespace) -> int:
    """Reads the request's home partition of every request-scoped topic from the start:
    fine for an audit, and what the gateway's bounded lookup avoids."""
    from connectors.topic_reader import partitions_of
    from connectors.trail import describe, read_trail
    from schemas import topics as specs
    from schemas.topics import qualified

    settings = AppSettings.load().kafka

    async def go() -> list[Event]:
        requests = qualified(specs.REQUESTS, settings.topic_namespace)
        partitions = len(await partitions_of(settings, requests))
        if not partitions:
            raise SystemExit(f"guardian trail: topic {requests} does not exist")
        return await read_trail(settings, args.request_id, partitions)

    events = asyncio.run(go())
    for event in events:
        print(event.model_dump_json() if args.json else describe(event))
    if not events:
        print(f"no event of request {args.request_id}")
        return 1
    return 0


def _feedback(args: argparse.Namespace) -> int:
    async def go() -> None:
        async with GuardianClient(AppSettings.load().kafka) as client:
            await client.feedback(
                args.request_id, rating=args.rating, signal=args.signal, comment=args.comment
            )

    try:
        asyncio.run(go())
    except ValueError as exc:
        print(f"refused: {exc}")
        return 1
    print("feedback recorded")
    return 0


def _demo(_args: argparse.Namespace) -> int:
    from streams.cli_demo import run_demo

    return run_demo(AppSettings.load())


if __name__ == "__main__":
    sys.exit(main())
