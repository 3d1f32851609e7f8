"""The anomaly detector on a real worker: verdict facts whose pass rate drops raise an
``AnomalyDetected`` and its alert once, and folding the same facts again re-derives
exactly the anomalies the worker recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agents.network_facts import refold
from schemas import topics
from schemas.network_events import AlertRaised, AnomalyDetected, NetworkFactRecorded
from streams.network_facts import rules_of_settings
from streams.settings import NetworkSettings
from tests.integration.harness import pipeline, read_until, run_cli
from tests.integration.test_network_decisions import send
from tests.integration.test_pipeline import wait_ready

pytestmark = pytest.mark.integration
WINDOW = timedelta(seconds=60)
# A day ahead: the workers' own ticks (wall clock) stay behind, so only these facts
# move event time.
BASE = datetime.fromtimestamp(
    (datetime.now(UTC) + timedelta(days=1)).timestamp() // 60 * 60, tz=UTC
)
ENV = {
    "GUARDIAN_NETWORK_ANOMALY_WINDOW_S": "60",
    "GUARDIAN_NETWORK_ANOMALY_MIN_SAMPLES": "5",
    "GUARDIAN_NETWORK_ANOMALY_MIN_HISTORY": "6",
}


def verdict(window: int, i: int, *, passed: bool) -> NetworkFactRecorded:
    at = BASE + window * WINDOW + timedelta(seconds=i)
    n = window * 100 + i
    return NetworkFactRecorded(
        event_id=f"fact-{n}",
        request_id=f"req-{n}",
        occurred_at=at,
        fact="verdict",
        source_event_id=f"verdict-{n}",
        recorded_at=at,
        round=1,
        passed=passed,
        score=0.9 if passed else 0.3,
        threshold=0.7,
        failure_classes=() if passed else ("format",),
        specialist="general",
        model="fixed",
        latency_ms=120.0,
        tokens=40,
    )


def facts() -> list[NetworkFactRecorded]:
    """Ten windows where 7 or 8 of 8 verdicts pass, four where 1 in 8 does, one more."""
    steady = [verdict(w, i, passed=i < 7 + w % 2) for w in range(10) for i in range(8)]
    broken = [verdict(w, i, passed=i < 1) for w in range(10, 14) for i in range(8)]
    return [*steady, *broken, verdict(14, 0, passed=True)]


@pytest.mark.timeout(180)
async def test_a_drop_in_pass_rate_is_an_anomaly_an_alert_and_replays(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    sent = facts()
    with pipeline(kafka_bootstrap, tmp_path) as p:
        p.start_worker(GUARDIAN_MODEL_BACKEND="scripted", **ENV)
        await wait_ready(p)
        await send(p, sent)

        def drop_found(found: list[AnomalyDetected]) -> bool:
            return any(a.metric == "pass_rate" for a in found)

        anomalies = await read_until(p, topics.ANOMALIES, AnomalyDetected, drop_found, timeout_s=60)
        alerts = await read_until(
            p,
            topics.ALERTS,
            AlertRaised,
            lambda found: any(a.rule == "anomaly" for a in found),
            timeout_s=30,
        )
        env = p.worker_env(**ENV)
        listed = await run_cli(["anomalies"], env)
        verified = await run_cli(["anomalies", "--verify"], env)
    (drop,) = [a for a in anomalies if a.metric == "pass_rate"]
    assert (drop.state, drop.subject, drop.kind) == ("firing", "general", "level")
    assert drop.window_start == BASE + 12 * WINDOW  # the third window of the drop
    assert drop.observed == 1 / 8
    assert 7 / 8 <= drop.baseline <= 1.0
    assert drop.score < 0
    (alert,) = [a for a in alerts if a.alert_id == drop.anomaly_id]
    assert (alert.state, alert.subject) == ("firing", "pass_rate:general")

    settings = NetworkSettings(anomaly_window_s=60, anomaly_min_samples=5, anomaly_min_history=6)
    again = [e for e in refold(sent, rules_of_settings(settings)) if isinstance(e, AnomalyDetected)]
    assert sorted(again, key=lambda a: a.event_id) == sorted(anomalies, key=lambda a: a.event_id)
    assert "firing   pass_rate of general: 0.125 against" in listed
    assert f"{len(anomalies)} recorded, 0 differ" in verified
