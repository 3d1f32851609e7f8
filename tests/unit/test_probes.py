"""The worker's probes: live while the heartbeat is fresh, ready once also recovered and
not rebalancing; metrics still served on every other path."""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from streams.probes import Probes, wsgi_app


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def get(app: Any, path: str) -> tuple[str, bytes]:
    seen: dict[str, str] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"] = status

    body = b"".join(app({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, start_response))
    return seen["status"], body


def test_live_ready_and_metrics() -> None:
    clock, state = Clock(), {"recovered": False, "rebalancing": False}
    probes = Probes(
        recovered=lambda: state["recovered"],
        rebalancing=lambda: state["rebalancing"],
        stale_s=30.0,
        clock=clock,
        beat=clock.now,
    )
    registry = CollectorRegistry()
    Counter("guardian_probe_test_total", "a metric", registry=registry).inc()
    app = wsgi_app(probes, registry)

    assert get(app, "/healthz")[0] == "200 OK"
    status, body = get(app, "/readyz")
    assert status.startswith("503")
    assert json.loads(body)["recovered"] is False
    state["recovered"] = True
    assert get(app, "/readyz")[0] == "200 OK"
    state["rebalancing"] = True
    assert get(app, "/readyz")[0].startswith("503")
    state["rebalancing"] = False

    clock.now += 31.0  # the loop stopped stamping
    status, body = get(app, "/healthz")
    assert status.startswith("503")
    assert json.loads(body)["heartbeat_age_s"] == 31.0
    assert get(app, "/readyz")[0].startswith("503")
    probes.stamp()
    assert get(app, "/healthz")[0] == "200 OK"

    status, body = get(app, "/metrics")
    assert status == "200 OK"
    assert b"guardian_probe_test_total 1.0" in body
