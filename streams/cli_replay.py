"""``guardian replay``: one request's decision trail, or an audit of a time window that
re-derives every final response from the log (``--verify``) or re-decides it under
another guardian threshold (``--rescore``). No model is called: the model port is one
that refuses, and the summary reports how often it was asked (always 0).

Results go to stdout (JSON lines, or a readable timeline), progress to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from pydantic import ValidationError

from agents.config import GuardianPolicy, PipelineConfig
from agents.config_values import ConfigValueError, config_of
from agents.guardian import Signals, measure
from agents.ports import Embedder, PiiDetector
from agents.replay import Configs, Rescored, answers_to_measure, rescore, verify_report
from connectors.config_log import read_config_versions
from connectors.embeddings import HashingEmbedder, MiniLMEmbedder
from connectors.pii import PresidioPiiDetector
from connectors.refusing_llm import RefusingLLM
from connectors.replay_log import LogRead, Window, read_request, read_window
from connectors.trail import describe
from schemas.envelope import Event
from schemas.request_events import DeadLettered, ResponseDelivered
from streams.settings import AppSettings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_DIVERGED = 2


def add_replay_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``replay``; it sets ``args.handler``."""
    p = subparsers.add_parser(
        "replay",
        help="read decision trails back from the log and audit them, without calling a model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--request-id", help="one request: its timeline (or --verify/--rescore it)")
    p.add_argument("--since", type=instant, help="window start, ISO 8601 (UTC if no offset)")
    p.add_argument("--until", type=instant, help="window end, ISO 8601 (default: now)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--verify", action="store_true", help="re-derive and compare (exit 2 on a divergence)"
    )
    mode.add_argument(
        "--rescore", action="store_true", help="re-decide under --threshold/--min-alignment"
    )
    p.add_argument(
        "--config-version",
        type=int,
        help="re-derive every request under this config version (default: the version "
        "each request was admitted with, from the config history)",
    )
    p.add_argument("--threshold", type=float, help="pass threshold for --rescore")
    p.add_argument("--min-alignment", type=float, help="alignment gate for --rescore")
    p.add_argument("--json", action="store_true", help="the timeline as JSON lines")
    p.add_argument("--namespace", help="topic namespace (overrides the setting)")
    p.add_argument("--partitions", type=int, help="partitions of the request-scoped topics")
    p.add_argument(
        "--slack-minutes", type=float, default=10.0, help="read this far around the window"
    )
    p.add_argument(
        "--progress-every", type=int, default=10_000, help="records between progress lines"
    )
    p.set_defaults(handler=replay_command)


def instant(text: str) -> datetime:
    """An ISO 8601 instant; one without an offset is UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def replay_command(args: argparse.Namespace) -> int:
    return run_replay(args, AppSettings.load())


@dataclass
class Session:
    """What one replay run works with. ``llm`` stands where a model port would: it refuses."""

    settings: AppSettings
    config: PipelineConfig
    """The live configuration (the latest version)."""
    configs: dict[int, PipelineConfig]
    """Every version of the config history, by number."""
    llm: RefusingLLM
    out: TextIO
    err: TextIO

    def emit(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def note(self, line: str) -> None:
        print(f"guardian replay: {line}", file=self.err, flush=True)


def run_replay(
    args: argparse.Namespace,
    settings: AppSettings,
    *,
    llm: RefusingLLM | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """The ``replay`` command on parsed ``args``."""
    if args.namespace is not None:
        settings = settings.with_namespace(args.namespace)
    err = err or sys.stderr
    problem = _usage_problem(args)
    if problem is not None:
        print(f"guardian replay: {problem}", file=err, flush=True)
        return EXIT_FAILED
    configs = config_history(settings)
    s = Session(
        settings, configs[max(configs)], configs, llm or RefusingLLM(), out or sys.stdout, err
    )
    problem = _version_problem(args, configs)
    if problem is not None:
        s.note(problem)
        return EXIT_FAILED
    if args.request_id is not None:
        return _one_request(args, s)
    return _window(args, s)


def config_history(settings: AppSettings) -> dict[int, PipelineConfig]:
    """Every version of the config history by number; version 0 comes from settings
    only when the history does not hold it (a deployment older than its history)."""
    events = asyncio.run(read_config_versions(settings.kafka))
    configs = {0: settings.pipeline_config()}
    for version, event in events.items():
        try:
            configs[version] = config_of(event)
        except ConfigValueError as exc:
            print(f"guardian replay: config version {version} unreadable: {exc}", file=sys.stderr)
    return configs


def _version_problem(args: argparse.Namespace, configs: Mapping[int, PipelineConfig]) -> str | None:
    if args.config_version is not None and args.config_version not in configs:
        known = ", ".join(str(v) for v in sorted(configs))
        return f"config version {args.config_version} is not in the history (versions: {known})"
    return None


def _configs(args: argparse.Namespace, s: Session) -> Configs:
    """What each request is re-derived under: one version, or each its own."""
    if args.config_version is not None:
        return s.configs[args.config_version]
    return s.configs


def _compared_with(args: argparse.Namespace) -> int | str:
    return args.config_version if args.config_version is not None else "recorded"


def _usage_problem(args: argparse.Namespace) -> str | None:
    if (args.request_id is None) == (args.since is None):
        return "give either --request-id or --since"
    if args.since is not None and not (args.verify or args.rescore):
        return "a window needs --verify or --rescore"
    if (args.threshold is not None or args.min_alignment is not None) and not args.rescore:
        return "--threshold and --min-alignment go with --rescore"
    return None


def _one_request(args: argparse.Namespace, s: Session) -> int:
    kafka = s.settings.kafka
    partitions = args.partitions or kafka.partitions or s.settings.worker.partitions
    slack = timedelta(minutes=args.slack_minutes)
    events = asyncio.run(read_request(kafka, args.request_id, partitions, slack=slack))
    if not events:
        s.note(f"no events of request {args.request_id!r}")
        return EXIT_FAILED
    by_request = {args.request_id: events}
    if args.verify:
        return _verify(LogRead(by_request, len(events)), args, s, time.perf_counter())
    if args.rescore:
        return _rescore(by_request, args, s)
    for event in events:
        s.emit(event_json(event) if args.json else timeline_line(event))
    return EXIT_OK


def _window(args: argparse.Namespace, s: Session) -> int:
    until = args.until or datetime.now(tz=UTC)
    window = Window(args.since, until, timedelta(minutes=args.slack_minutes))
    progress = ProgressLine(s.err, every=args.progress_every)
    started = time.perf_counter()
    read = asyncio.run(read_window(s.settings.kafka, window, progress=progress))
    progress.finish(read.records)
    if args.verify:
        return _verify(read, args, s, started)
    return _rescore(read.by_request, args, s)


def _verify(read: LogRead, args: argparse.Namespace, s: Session, started: float) -> int:
    report = verify_report(read.by_request, _configs(args, s))
    for d in report.divergences:
        s.emit(to_json(asdict(d)))
    seconds = time.perf_counter() - started
    s.emit(
        to_json(
            {
                "summary": "verify",
                "config_version": _compared_with(args),
                "config_versions": sorted(s.configs),
                "requests": report.checked,
                "skipped": report.skipped,
                "divergent_requests": len({d.request_id for d in report.divergences}),
                "divergences": len(report.divergences),
                "records": read.records,
                "events": read.events,
                "undecodable": read.undecodable,
                "seconds": round(seconds, 3),
                "events_per_s": round(read.events / seconds) if seconds > 0 else None,
                "model_calls": s.llm.calls,
            }
        )
    )
    return EXIT_DIVERGED if report.divergences else EXIT_OK


def _rescore(
    by_request: Mapping[str, Sequence[Event]], args: argparse.Namespace, s: Session
) -> int:
    base = s.configs[args.config_version] if args.config_version is not None else s.config
    policy = _policy(base.guardian, args)
    if policy is None:
        s.note("--threshold must be within 0..1 and --min-alignment within -1..1")
        return EXIT_FAILED
    signals = measure_all(by_request, *_measurers(s.settings, policy), note=s.note)

    def policy_of(config: PipelineConfig) -> GuardianPolicy:
        # Each request's own guardian policy, with the thresholds the flags give.
        return _policy(config.guardian, args) or config.guardian

    summary = rescore(by_request, signals, _configs(args, s), policy_of)
    for outcome in summary.flipped:
        s.emit(to_json(flip_record(outcome)))
    s.emit(
        to_json(
            {
                "summary": "rescore",
                "config_version": _compared_with(args),
                "requests": summary.requests,
                "skipped": summary.skipped,
                "flips": len(summary.flipped),
                "pass_to_fail": summary.count("pass_to_fail"),
                "fail_to_pass": summary.count("fail_to_pass"),
                "content_changed": summary.count("content"),
                "threshold": policy.pass_threshold,
                "min_alignment": policy.min_alignment,
                "answers_measured": len(signals),
                "model_calls": s.llm.calls,
            }
        )
    )
    return EXIT_OK


def _policy(live: GuardianPolicy, args: argparse.Namespace) -> GuardianPolicy | None:
    """The live policy with the thresholds the command line gives, or None if out of range."""
    update: dict[str, float] = {}
    if args.threshold is not None:
        update["pass_threshold"] = args.threshold
    if args.min_alignment is not None:
        update["min_alignment"] = args.min_alignment
    try:
        return GuardianPolicy.model_validate(live.model_dump() | update)
    except ValidationError:
        return None


def _measurers(
    settings: AppSettings, policy: GuardianPolicy
) -> tuple[Embedder, PiiDetector | None]:
    """The guardians' own signal sources (an embedding model and a PII scanner; no LLM)."""
    embedder: Embedder = (
        HashingEmbedder()
        if settings.guard.embedder == "hashing"
        else MiniLMEmbedder(settings.embedding)
    )
    return embedder, PresidioPiiDetector(settings.pii) if policy.pii_check else None


def measure_all(
    by_request: Mapping[str, Sequence[Event]],
    embedder: Embedder,
    pii: PiiDetector | None,
    *,
    note: Callable[[str], None],
) -> dict[str, Signals]:
    """Re-measure the signals of every answer the guardians measured, by answer event id."""
    answers = answers_to_measure(by_request)
    started = time.perf_counter()
    signals = {a.event_id: measure(a, embedder, pii) for a in answers}
    note(f"measured {len(answers)} answers in {time.perf_counter() - started:.1f}s")
    return signals


def flip_record(outcome: Rescored) -> dict[str, Any]:
    def side(r: ResponseDelivered) -> dict[str, Any]:
        return {
            "status": r.status,
            "rounds": r.rounds,
            "best_round": r.best_round,
            "confidence": r.confidence,
            "content": r.content,
        }

    return {
        "request_id": outcome.request_id,
        "flip": outcome.flip,
        "recorded": side(outcome.recorded),
        "rescored": side(outcome.rescored),
    }


class ProgressLine:
    """``read N/M records`` on stderr every ``every`` records or every second."""

    def __init__(
        self,
        err: TextIO,
        *,
        every: int,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._err, self._every, self._interval, self._clock = err, max(1, every), interval_s, clock
        self._shown, self._at, self._total = 0, clock(), 0

    def __call__(self, read: int, total: int) -> None:
        self._total = total
        now = self._clock()
        if read - self._shown < self._every and now - self._at < self._interval:
            return
        self._shown, self._at = read, now
        self._line(read)

    def finish(self, read: int) -> None:
        if read != self._shown or read == 0:
            self._line(read)

    def _line(self, read: int) -> None:
        share = f" ({100 * read / self._total:.0f}%)" if self._total else ""
        print(f"replay: read {read}/{self._total} records{share}", file=self._err, flush=True)


def timeline_line(event: Event) -> str:
    """One line of a request's readable timeline."""
    if isinstance(event, DeadLettered):
        at = event.occurred_at.strftime("%H:%M:%S.%f")[:-3]
        return f"{at}  {event.record_name:<18} {event.stage}: {event.reason_code} - {event.reason}"
    return describe(event)


def event_json(event: Event) -> str:
    """One event as a JSON line, its record name first."""
    return to_json({"record": event.record_name, **event.model_dump()})


def to_json(value: Mapping[str, Any]) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
