"""The local dev broker's JVM: its jars, its command line, and the process around it.

``fetch`` runs Maven with ``deploy/kafka/pom.xml`` into a temporary folder beside
the cache entry, writes a marker file last and renames the folder into place, so
an interrupted fetch is simply redone. The process helpers (spawn, liveness,
ports, log tails) keep :mod:`connectors.broker` about the broker itself.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from connectors.errors import BrokerFetchError, JavaNotFoundError, MavenNotFoundError

if TYPE_CHECKING:
    from connectors.broker import BrokerSettings

_log = logging.getLogger(__name__)

MARKER = ".complete"
LEGACY_PROFILE = "kafka-3.9"
_OUTPUT_TAIL = 30
_POLL_S = 0.2

Progress = Callable[[str], None]

# JVMs started by this interpreter, kept so that they are reaped, never left as zombies.
_children: dict[int, subprocess.Popen[bytes]] = {}


def kafka_major(version: str) -> int:
    """The major version number of a Kafka version string ("4.1.1" -> 4)."""
    return int(version.split(".", 1)[0])


def kafka_release(version: str) -> tuple[int, ...]:
    """A Kafka version as comparable numbers ("3.9.1" -> (3, 9, 1))."""
    return tuple(int(part) for part in version.split("."))


def libs_dir(settings: BrokerSettings) -> Path:
    """The cache folder holding every jar of one Kafka version."""
    return settings.home.expanduser() / settings.kafka_version / "libs"


def is_complete(libs: Path) -> bool:
    """True when a fetch into ``libs`` ran to its end (the marker is written last)."""
    return (libs / MARKER).is_file()


def require_java() -> str:
    """The path of ``java``, or :class:`JavaNotFoundError`."""
    java = shutil.which("java")
    if java is None:
        raise JavaNotFoundError()
    return java


def require_mvn() -> str:
    """The path of ``mvn``, or :class:`MavenNotFoundError`."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MavenNotFoundError()
    return mvn


def mvn_command(settings: BrokerSettings, mvn: str, dest: Path) -> list[str]:
    """The Maven command copying the broker's runtime jars into ``dest``."""
    command = [
        mvn,
        "-q",
        "-B",
        "-Dstyle.color=never",
        "-f",
        str(settings.recipe_dir / "pom.xml"),
        "dependency:copy-dependencies",
        f"-Dkafka.version={settings.kafka_version}",
        f"-Dlibs.dir={dest}",
    ]
    if kafka_major(settings.kafka_version) < 4:
        command.append(f"-P{LEGACY_PROFILE}")
    return command


def logging_options(settings: BrokerSettings) -> list[str]:
    """JVM options pointing the broker's logging backend at its config file."""
    if kafka_major(settings.kafka_version) < 4:
        return [f"-Dlog4j.configuration=file:{settings.recipe_dir / 'log4j.properties'}"]
    return [f"-Dlog4j2.configurationFile={settings.recipe_dir / 'log4j2.properties'}"]


def java_command(
    settings: BrokerSettings, java: str, libs: Path, logs: Path, main: list[str]
) -> list[str]:
    """The JVM command running ``main`` (a class and its arguments) on the broker's jars."""
    heap = [f"-Xms{settings.heap}", f"-Xmx{settings.heap}"]
    jvm = ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true"]
    logging_opts = [f"-Dkafka.logs.dir={logs}", *logging_options(settings)]
    return [java, *heap, *jvm, *logging_opts, "-cp", f"{libs}/*", *main]


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fetch(settings: BrokerSettings, progress: Progress | None = None) -> Path:
    """Make sure the jars of ``settings.kafka_version`` are cached; return their folder."""
    libs = libs_dir(settings)
    if is_complete(libs):
        return libs
    say = progress or _log.info
    mvn = require_mvn()
    with file_lock(libs.parent / ".lock"):
        if is_complete(libs):  # another process fetched it while we waited
            return libs
        _remove_leftovers(libs)
        say(f"fetching Apache Kafka {settings.kafka_version} broker jars from Maven Central…")
        started = time.monotonic()
        _download(settings, mvn, libs)
        jars = sorted(libs.glob("*.jar"))
        megabytes = sum(jar.stat().st_size for jar in jars) / 1e6
        say(f"{len(jars)} jars, {megabytes:.0f} MB, in {time.monotonic() - started:.1f}s")
    return libs


def _remove_leftovers(libs: Path) -> None:
    """Drop an incomplete folder and the temp folders of interrupted fetches."""
    for stale in libs.parent.glob(f"{libs.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if libs.exists():
        shutil.rmtree(libs)


def _download(settings: BrokerSettings, mvn: str, libs: Path) -> None:
    """Run Maven into a temp folder, mark it complete, then rename it to ``libs``."""
    partial = libs.parent / f"{libs.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        _run_maven(mvn_command(settings, mvn, partial), settings.fetch_timeout_s)
        if not any(partial.glob("kafka_2.13-*.jar")):
            raise BrokerFetchError(f"Maven ran but copied no kafka_2.13 jar into {partial}")
        (partial / MARKER).write_text(f"kafka_version={settings.kafka_version}\n")
        partial.rename(libs)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _run_maven(command: list[str], timeout_s: float) -> None:
    """Run Maven; translate its failures into :class:`BrokerFetchError`."""
    _log.debug("running %s", command)
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BrokerFetchError(f"Maven did not finish within {timeout_s:.0f}s") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-_OUTPUT_TAIL:])
        raise BrokerFetchError(f"Maven failed (exit {done.returncode}):\n{tail}")


def spawn_detached(command: list[str], cwd: Path, out: Path) -> int:
    """Start ``command`` in its own session, output appended to ``out``; return its pid."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("ab") as sink:
        child = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )
    _children[child.pid] = child
    return child.pid


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a child of this interpreter is reaped once it exits)."""
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _children[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def port_free(host: str, port: int) -> bool:
    """Whether a listening socket could bind ``host:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def command_line_names(pid: int, word: str) -> bool:
    """Whether ``pid`` was started with ``word`` in its arguments (guards recycled pids)."""
    if not Path("/proc/self").exists():
        return True  # no procfs (macOS): trust the caller's pid file
    try:
        return word.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def wait_exit(pid: int, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for ``pid`` to exit; True if it did."""
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)
    return True


def tail(logs: Iterable[Path], count: int) -> str:
    """The last ``count`` lines of each non-empty log, each under a header line."""
    parts = []
    for log in logs:
        lines = log.read_text(errors="replace").splitlines()[-count:] if log.exists() else []
        if lines:
            parts.append(f"--- last {len(lines)} lines of {log} ---\n" + "\n".join(lines))
    return "\n".join(parts) or "(no log output)"
