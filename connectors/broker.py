"""The local dev broker: one real Apache Kafka KRaft node on loopback.

Jars come from Maven Central (see :mod:`connectors.broker_fetch`); data, logs
and the pid file live in a run folder, so topics survive a stop and a start.
Secured (``secure``), it serves SASL_SSL instead of PLAINTEXT (see
:mod:`connectors.broker_secure`).
"""

from __future__ import annotations

import base64
import logging
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Annotated, Self

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors import broker_fetch as jvm
from connectors import broker_secure as tls
from connectors.broker_fetch import Progress
from connectors.broker_fetch import fetch as fetch
from connectors.errors import (
    BrokerError,
    BrokerExitedError,
    BrokerPortInUseError,
    BrokerStartTimeoutError,
)
from connectors.kafka import KafkaSettings

_log = logging.getLogger(__name__)

_RECIPE_DIR = Path(__file__).resolve().parents[1] / "deploy" / "kafka"
_POLL_S = 0.2
_PROBE_TIMEOUT_S = 2.0
_LOG_TAIL = 40
_KILL_WAIT_S = 10.0
_HOST = "127.0.0.1"

Port = Annotated[int, Field(ge=1, le=65535)]


class BrokerSettings(BaseSettings):
    """Where the local broker's jars, data and ports are (env prefix GUARDIAN_BROKER_)."""

    model_config = SettingsConfigDict(env_prefix="GUARDIAN_BROKER_", frozen=True)

    kafka_version: str = Field(default="4.1.1", pattern=r"^(3\.9|4\.\d+)\.\d+$")
    port: Port = 19092
    controller_port: Port = 19093
    home: Path = Field(default_factory=lambda: Path.home() / ".cache/guardian-cluster/kafka")
    run_dir: Path = Path(".run/broker")
    heap: str = Field(default="512m", pattern=r"^\d+[kKmMgG]?$")
    start_timeout_s: float = Field(default=60.0, gt=0)
    fetch_timeout_s: float = Field(default=900.0, gt=0)
    auto_create_topics: bool = False
    recipe_dir: Path = _RECIPE_DIR
    secure: bool = False
    """SASL_SSL (PLAIN and SCRAM users, a private CA) on ``port`` instead of PLAINTEXT."""
    mtls_port: Port | None = None
    """Secured only: an SSL listener here that requires a client certificate."""

    @model_validator(mode="after")
    def _distinct_ports(self) -> Self:
        ports = [self.port, self.controller_port, *([self.mtls_port] if self.mtls_port else [])]
        if len(set(ports)) != len(ports):
            raise ValueError("port, controller_port and mtls_port must differ")
        if self.mtls_port and not self.secure:
            raise ValueError("mtls_port needs secure")
        return self


class BrokerStatus(BaseModel):
    """What ``guardian broker status`` reports."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    running: bool
    pid: int | None
    bootstrap: str
    version: str
    answering: bool


class _RunPaths:
    """The files of one run folder."""

    def __init__(self, run_dir: Path) -> None:
        self.root = run_dir.resolve()
        self.properties = self.root / "server.properties"
        self.cluster_id = self.root / "cluster.id"
        self.formatted_by = self.root / "formatted-by.version"
        self.pid = self.root / "broker.pid"
        self.lock = self.root / ".lock"
        self.data = self.root / "data"
        self.logs = self.root / "logs"
        self.out = self.logs / "broker.out"
        self.shown_logs = (self.out, self.logs / "server.log")


def bootstrap(settings: BrokerSettings) -> str:
    """The address clients connect to."""
    return f"{_HOST}:{settings.port}"


def client_settings(settings: BrokerSettings, kind: tls.ClientKind = "PLAIN") -> KafkaSettings:
    """How a client reaches this broker: PLAINTEXT, or when secured a SASL login of
    ``kind`` (or a client certificate on the mutual-TLS port for ``mTLS``)."""
    if not settings.secure:
        return KafkaSettings.of(bootstrap_servers=bootstrap(settings))
    files, users = tls.ensure_material(settings.run_dir.resolve())
    if kind == "mTLS":
        if settings.mtls_port is None:
            raise BrokerError("this broker has no mutual-TLS port (GUARDIAN_BROKER_MTLS_PORT)")
        return tls.client_settings(files, users, f"{_HOST}:{settings.mtls_port}", kind)
    return tls.client_settings(files, users, bootstrap(settings), kind)


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, base64url without padding, no leading '-'."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def render_properties(
    settings: BrokerSettings, data_dir: Path, secure: tls.Material | None = None
) -> str:
    """``server.properties`` of a single combined broker+controller node on loopback
    (``secure``: the TLS files and users of a secured one)."""
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{_HOST}:{settings.controller_port}",
        "listeners": f"PLAINTEXT://{bootstrap(settings)},CONTROLLER://{_HOST}:"
        f"{settings.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{bootstrap(settings)}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "auto.create.topics.enable": str(settings.auto_create_topics).lower(),
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    if jvm.kafka_major(settings.kafka_version) >= 4:
        props["share.coordinator.state.topic.replication.factor"] = "1"
        props["share.coordinator.state.topic.min.isr"] = "1"
    if secure is not None:
        mtls = f"{_HOST}:{settings.mtls_port}" if settings.mtls_port else None
        client = tls.listeners(bootstrap(settings), mtls)
        controller = f"CONTROLLER://{_HOST}:{settings.controller_port}"
        props["listeners"] = ",".join([*client, controller])
        props |= tls.server_properties(*secure, bootstrap(settings), mtls)
    lines = [f"{key}={value}" for key, value in props.items()]
    return "\n".join(["# Written by `guardian broker start` at every start.", *lines, ""])


def status(settings: BrokerSettings) -> BrokerStatus:
    """Whether this run folder's broker is running and whether its port answers."""
    pid = _live_pid(_RunPaths(settings.run_dir))
    return BrokerStatus(
        running=pid is not None,
        pid=pid,
        bootstrap=bootstrap(settings),
        version=settings.kafka_version,
        answering=_answers(settings, _PROBE_TIMEOUT_S),
    )


def start(settings: BrokerSettings, progress: Progress | None = None) -> BrokerStatus:
    """Start the broker (fetching its jars first if needed) and wait until it answers."""
    paths = _RunPaths(settings.run_dir)
    with jvm.file_lock(paths.lock):
        pid = _live_pid(paths)
        if pid is None:
            pid = _launch(settings, paths, progress)
        else:
            _require_same_settings(settings, paths, pid)
        _wait_until_answering(settings, paths, pid)
    return status(settings)


def stop(settings: BrokerSettings, timeout_s: float = 30.0) -> bool:
    """Stop the broker (SIGTERM, then SIGKILL after ``timeout_s``); False if none ran."""
    paths = _RunPaths(settings.run_dir)
    with jvm.file_lock(paths.lock):
        pid = _live_pid(paths)
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        if not jvm.wait_exit(pid, timeout_s):
            _log.warning("broker pid %d ignored SIGTERM for %.0fs; killing it", pid, timeout_s)
            os.kill(pid, signal.SIGKILL)
            if not jvm.wait_exit(pid, _KILL_WAIT_S):
                raise BrokerError(f"broker pid {pid} survived SIGKILL")
        paths.pid.unlink(missing_ok=True)
        _log.info("stopped broker pid %d", pid)
    return True


def _launch(settings: BrokerSettings, paths: _RunPaths, progress: Progress | None) -> int:
    """Check the ports, fetch, configure, format if new, spawn the JVM; return its pid."""
    _require_free_ports(settings)
    _refuse_downgrade(settings, paths)
    java = jvm.require_java()
    libs = fetch(settings, progress)
    _prepare(settings, paths, java, libs)
    main = ["kafka.Kafka", str(paths.properties)]
    pid = jvm.spawn_detached(
        jvm.java_command(settings, java, libs, paths.logs, main), paths.root, paths.out
    )
    paths.pid.write_text(f"{pid}\n")
    _log.info("started Kafka %s broker, pid %d", settings.kafka_version, pid)
    return pid


def _material(settings: BrokerSettings, paths: _RunPaths) -> tls.Material | None:
    return tls.ensure_material(paths.root) if settings.secure else None


def _require_same_settings(settings: BrokerSettings, paths: _RunPaths, pid: int) -> None:
    """A broker already running from this run dir must be the one ``settings`` describe."""
    wanted = render_properties(settings, paths.data, _material(settings, paths))
    same_properties = paths.properties.read_text() == wanted
    if not (same_properties and jvm.command_line_names(pid, str(jvm.libs_dir(settings)))):
        raise BrokerError(
            f"a broker (pid {pid}) already runs from {paths.root} with other settings "
            "(ports, version, security or topic policy); stop it first "
            "(`guardian broker stop`)"
        )


def _prepare(settings: BrokerSettings, paths: _RunPaths, java: str, libs: Path) -> None:
    """Write ``server.properties`` and format the storage once (its data then persists)."""
    paths.logs.mkdir(parents=True, exist_ok=True)
    secure = _material(settings, paths)
    paths.properties.write_text(render_properties(settings, paths.data, secure))
    paths.properties.chmod(0o600)  # a secured broker's holds its users' passwords
    if (paths.data / "meta.properties").exists():
        if secure is not None and not secure[0].scram_formatted.exists():
            raise BrokerError(
                f"{paths.data} was formatted without --secure, so it has no SCRAM users; "
                "use another run dir (GUARDIAN_BROKER_RUN_DIR)"
            )
        return
    if not paths.cluster_id.exists():
        paths.cluster_id.write_text(new_cluster_id() + "\n")
    cluster_id = paths.cluster_id.read_text().strip()
    storage = ["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(paths.properties)]
    if secure is not None:
        storage += tls.scram_format_args(secure[1])
    command = jvm.java_command(settings, java, libs, paths.logs, storage)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BrokerError(f"formatting {paths.data} failed:\n{done.stdout}{done.stderr}")
    paths.formatted_by.write_text(settings.kafka_version + "\n")
    if secure is not None:
        secure[0].scram_formatted.write_text(f"{','.join(tls.SCRAM_MECHANISMS)}\n")
    _log.info("formatted %s for cluster %s", paths.data, cluster_id)


def _refuse_downgrade(settings: BrokerSettings, paths: _RunPaths) -> None:
    """Data formatted by a newer Kafka cannot be read by an older one: say so plainly."""
    if not paths.formatted_by.exists():
        return
    formatted_by = paths.formatted_by.read_text().strip()
    if jvm.kafka_release(settings.kafka_version) < jvm.kafka_release(formatted_by):
        raise BrokerError(
            f"{paths.data} was formatted by Kafka {formatted_by}, which Kafka "
            f"{settings.kafka_version} cannot read; use another run dir "
            f"(GUARDIAN_BROKER_RUN_DIR) or delete {paths.root}"
        )


def _wait_until_answering(settings: BrokerSettings, paths: _RunPaths, pid: int) -> None:
    """Poll until a metadata request answers; fail if the process dies or time runs out."""
    deadline = time.monotonic() + settings.start_timeout_s
    while True:
        if not jvm.alive(pid):
            paths.pid.unlink(missing_ok=True)
            logs = jvm.tail(paths.shown_logs, _LOG_TAIL)
            raise BrokerExitedError(f"the broker (pid {pid}) exited while starting\n{logs}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrokerStartTimeoutError(
                f"the broker (pid {pid}, still running) did not answer on {bootstrap(settings)} "
                f"within {settings.start_timeout_s:g}s\n{jvm.tail(paths.shown_logs, _LOG_TAIL)}"
            )
        if _answers(settings, min(_PROBE_TIMEOUT_S, remaining)):
            return
        time.sleep(min(_POLL_S, max(0.0, deadline - time.monotonic())))


def _answers(settings: BrokerSettings, timeout_s: float) -> bool:
    """True when the port accepts a connection and answers a metadata request."""
    try:
        with socket.create_connection((_HOST, settings.port), timeout=timeout_s):
            pass
    except OSError:
        return False
    if settings.secure and not tls.SecureFiles(settings.run_dir.resolve()).complete():
        return False  # never started secured: no login to try
    admin = AdminClient({**client_settings(settings).confluent(), "log_level": 0})
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return bool(metadata.brokers)


def _require_free_ports(settings: BrokerSettings) -> None:
    """Refuse to start when another process holds one of the broker's ports."""
    for port in (settings.port, settings.controller_port, settings.mtls_port):
        if port is None:
            continue
        if not jvm.port_free(_HOST, port):
            raise BrokerPortInUseError(
                f"{_HOST}:{port} is in use by another process (not the broker of "
                f"{settings.run_dir}); stop it or pick other ports "
                "(--port, GUARDIAN_BROKER_PORT / GUARDIAN_BROKER_CONTROLLER_PORT)"
            )


def _live_pid(paths: _RunPaths) -> int | None:
    """The pid of this run folder's broker if it is alive; a stale pid file is removed."""
    try:
        pid = int(paths.pid.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if jvm.alive(pid) and jvm.command_line_names(pid, str(paths.properties)):
        return pid
    paths.pid.unlink(missing_ok=True)
    return None
