"""The anomaly detector over verdict facts: per specialist and window, its six metrics,
an incident's anomaly and alert once when it starts and once when it ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agents.anomaly import DetectorPolicy
from agents.anomaly_watch import METRICS, WatchPolicy, WatchState, close_due, count
from schemas.network_events import AlertRaised, AnomalyDetected, NetworkFactRecorded

T0 = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=1)
POLICY = WatchPolicy(
    window=WINDOW, min_samples=5, detector=DetectorPolicy(history=20, min_history=8)
)


def fact(at: datetime, i: int, *, passed: bool = True, **kw: object) -> NetworkFactRecorded:
    fields: dict[str, object] = {
        "score": 0.9 if passed else 0.3,
        "latency_ms": 100.0 + i % 7,
        "tokens": 50 + i % 5,
        "specialist": "general",
    }
    fields |= kw
    return NetworkFactRecorded(
        event_id=f"f{at.isoformat()}{i}",
        request_id=f"r{i}",
        occurred_at=at,
        fact="verdict",
        recorded_at=at,
        passed=passed,
        **fields,
    )


def run_windows(
    pass_rates: list[float], per_window: int = 20
) -> list[AnomalyDetected | AlertRaised]:
    watch, out = WatchState(), []
    for w, rate in enumerate(pass_rates):
        start = T0 + w * WINDOW
        passing = round(rate * per_window)
        for i in range(per_window):
            at = start + timedelta(seconds=i)
            watch = count(watch, fact(at, w * 100 + i, passed=i < passing), POLICY)
        watch, events = close_due(watch, start + WINDOW, POLICY, config_version=4)
        out += events
    return out


def noisy(n: int, level: float) -> list[float]:
    return [level + (0.05 if i % 2 else -0.05) for i in range(n)]


def test_the_window_values_are_the_six_metrics() -> None:
    watch = WatchState()
    for i in range(10):
        classes = ("model_error",) if i == 0 else ("refusal",) if i == 1 else ()
        f = fact(T0 + timedelta(seconds=i), i, passed=i >= 2, failure_classes=classes)
        watch = count(watch, f, POLICY)
    (c,) = watch.counts
    values = {m: round(v(c), 3) for m, v in METRICS.items()}
    assert values["pass_rate"] == 0.8
    assert values["score"] == round((8 * 0.9 + 2 * 0.3) / 10, 3)
    assert values["error_rate"] == 0.1
    assert values["refusal_rate"] == 0.1
    assert values["tokens_per_request"] == sum(50 + i % 5 for i in range(10)) / 10
    assert values["latency_p95_ms"] == 106.0


def test_a_drop_in_pass_rate_fires_once_and_resolves_once_with_its_alert() -> None:
    events = run_windows(noisy(20, 0.9) + [0.4] * 5 + noisy(20, 0.9))
    pass_rate = [e for e in events if isinstance(e, AnomalyDetected) and e.metric == "pass_rate"]
    assert [e.state for e in pass_rate] == ["firing", "resolved"]
    firing = pass_rate[0]
    assert firing.window_start == T0 + 22 * WINDOW  # the third window of the drop
    assert firing.observed == 0.4
    assert 0.8 < firing.baseline < 1.0
    assert firing.score < 0
    assert firing.config_version == 4
    alerts = [e for e in events if isinstance(e, AlertRaised) and e.alert_id == firing.anomaly_id]
    assert [a.state for a in alerts] == ["firing", "resolved"]
    assert alerts[0].rule == "anomaly"
    assert alerts[0].subject == "pass_rate:general"
    assert "below its baseline" in alerts[0].message


def test_steady_windows_raise_nothing_and_small_windows_add_no_point() -> None:
    assert run_windows(noisy(40, 0.9)) == []
    assert run_windows([0.9] * 20 + [0.0] * 5, per_window=4) == []


def test_a_late_verdict_of_a_closed_window_is_not_counted() -> None:
    watch = count(WatchState(), fact(T0 + WINDOW, 1), POLICY)
    assert count(watch, fact(T0, 2), POLICY) == watch
