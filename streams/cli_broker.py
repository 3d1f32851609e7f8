"""``guardian broker start|stop|status|fetch|address|env``: the local dev Kafka broker."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from connectors import broker
from connectors.broker import BrokerSettings
from connectors.broker_secure import exports
from connectors.errors import BrokerError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NOT_RUNNING = 3

Handler = Callable[[argparse.Namespace], int]


def add_broker_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``broker`` and its subcommands; each sets ``args.handler``."""
    parser = subparsers.add_parser(
        "broker",
        help="run a local Apache Kafka broker (KRaft, loopback only)",
        description="A single-node Apache Kafka broker for development and tests; "
        "settings come from GUARDIAN_BROKER_* variables, these flags override them.",
    )
    commands = parser.add_subparsers(dest="broker_command", required=True, metavar="COMMAND")
    _add(commands, "start", "fetch the jars if needed, start and wait until it answers", _start)
    _add(commands, "stop", "stop the broker (its data is kept)", _stop)
    _add(commands, "status", "exit 0 when running and answering, 3 otherwise", _status)
    _add(commands, "fetch", "download the broker jars from Maven Central once", _fetch)
    _add(commands, "address", "print the bootstrap address clients connect to", _address)
    _add(commands, "env", "print the client settings to export (a secured broker's too)", _env)


def _add(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    handler: Handler,
) -> None:
    command = commands.add_parser(name, help=help_text, description=help_text)
    command.add_argument("--port", type=int, help="client port (default 19092)")
    command.add_argument("--controller-port", type=int, help="KRaft controller port (19093)")
    command.add_argument("--kafka-version", help="Apache Kafka version (default 4.1.1)")
    command.add_argument(
        "--secure",
        action="store_true",
        default=None,
        help="SASL_SSL with a private CA, PLAIN and SCRAM users (GUARDIAN_BROKER_SECURE)",
    )
    command.add_argument("--mtls-port", type=int, help="secured: a mutual-TLS (SSL) port too")
    if name in {"start", "env"}:
        command.add_argument(
            "--login",
            choices=["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN", "mTLS"],
            default="SCRAM-SHA-512",
            help="secured: which login the printed settings use",
        )
    if name == "status":
        command.add_argument(
            "--answering",
            action="store_true",
            help="exit 0 when any broker answers at the address, whoever started it",
        )
    command.set_defaults(handler=_guarded(handler))


def _settings(args: argparse.Namespace) -> BrokerSettings:
    """Settings from the environment, with the flags that were given on top."""
    flags = {
        "port": args.port,
        "controller_port": args.controller_port,
        "kafka_version": args.kafka_version,
        "secure": args.secure,
        "mtls_port": args.mtls_port,
    }
    return BrokerSettings(**{key: value for key, value in flags.items() if value is not None})


def _guarded(handler: Handler) -> Handler:
    """Turn a broker error into a message on stderr and exit status 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except BrokerError as exc:
            print(f"guardian broker: {exc}", file=sys.stderr)
            return EXIT_FAILED

    return run


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _start(args: argparse.Namespace) -> int:
    settings = _settings(args)
    state = broker.start(settings, progress=_progress)
    if not settings.secure:
        print(state.bootstrap)
        return EXIT_OK
    return _env(args)


def _stop(args: argparse.Namespace) -> int:
    settings = _settings(args)
    stopped = broker.stop(settings)
    print("broker stopped" if stopped else f"no broker running from {settings.run_dir}")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    state = broker.status(_settings(args))
    running = f"running (pid {state.pid})" if state.running else "not running"
    answering = "answering" if state.answering else "not answering"
    print(f"Kafka {state.version} broker {running}; {state.bootstrap} {answering}")
    if args.answering:
        return EXIT_OK if state.answering else EXIT_NOT_RUNNING
    return EXIT_OK if state.running and state.answering else EXIT_NOT_RUNNING


def _fetch(args: argparse.Namespace) -> int:
    libs = broker.fetch(_settings(args), progress=_progress)
    print(libs)
    return EXIT_OK


def _env(args: argparse.Namespace) -> int:
    """The settings a client of this broker exports (secrets included: it is local)."""
    settings = _settings(args)
    for line in exports(broker.client_settings(settings, args.login)):
        print(line)
    return EXIT_OK


def _address(args: argparse.Namespace) -> int:
    print(broker.bootstrap(_settings(args)))
    return EXIT_OK
