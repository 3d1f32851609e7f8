"""The worker's HTTP endpoint: Prometheus metrics at ``/metrics`` (and any other path,
as before), liveness at ``/healthz`` and readiness at ``/readyz``, for an orchestrator's
probes.

- **Live** while the event loop turns: a timer stamps a heartbeat every second, and a
  heartbeat older than ``stale_s`` means the loop is stuck (a blocking call, a
  deadlock): restarting the process is the cure.
- **Ready** once the worker is live, its tables have recovered and it is not in a
  rebalance: it is processing its partitions. A worker that is not ready needs time,
  not a restart.

Served from a thread (like the metrics endpoint it replaces), so a stuck loop still
answers, with 503.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from streams import background
from streams.runtime import Runtime

_log = logging.getLogger(__name__)
BEAT_S = 1.0
StartResponse = Callable[..., Any]


@dataclass
class Probes:
    recovered: Callable[[], bool]
    rebalancing: Callable[[], bool]
    stale_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    beat: float = field(default_factory=time.monotonic)

    def stamp(self) -> None:
        self.beat = self.clock()

    def live(self) -> tuple[bool, dict[str, Any]]:
        age = self.clock() - self.beat
        return age < self.stale_s, {"heartbeat_age_s": round(age, 3), "stale_s": self.stale_s}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        live, report = self.live()
        recovered, rebalancing = self.recovered(), self.rebalancing()
        report |= {"live": live, "recovered": recovered, "rebalancing": rebalancing}
        return live and recovered and not rebalancing, report


def register(rt: Runtime, stale_s: float = 30.0) -> Probes:
    """The worker's probes, with the heartbeat timer that keeps them live."""
    app: Any = rt.app
    probes = Probes(
        recovered=lambda: bool(app.tables.recovery.completed.is_set()),
        rebalancing=lambda: bool(getattr(app, "rebalancing", False)),
        stale_s=stale_s,
    )

    @background.timer(rt, BEAT_S, "probe_heartbeat")
    async def heartbeat() -> None:
        probes.stamp()

    return probes


def wsgi_app(probes: Probes, registry: CollectorRegistry) -> Callable[..., Iterable[bytes]]:
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in ("/healthz", "/readyz"):
            ok, report = probes.live() if path == "/healthz" else probes.ready()
            body = json.dumps(report | {"ok": ok}).encode()
            status = "200 OK" if ok else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [body]
        return metrics(environ, start_response)  # type: ignore[no-any-return]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


def serve(probes: Probes, registry: CollectorRegistry, host: str, port: int) -> None:
    """Serve metrics and probes on a daemon thread."""
    server = make_server(host, port, wsgi_app(probes, registry), _Server, _Quiet)
    threading.Thread(target=server.serve_forever, name="probes", daemon=True).start()
    _log.info("metrics and probes on http://%s:%d (/metrics, /healthz, /readyz)", host, port)
