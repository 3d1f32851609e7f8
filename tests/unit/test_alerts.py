"""Deployment alert rules: each incident fires once and resolves once, over explicit time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from agents.alerts import AlertBook, AlertRules, Sample, evaluate, restore, window_counts
from schemas.codec import Codec
from schemas.network_events import AlertRaised, SpecialistHealth

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
RULES = AlertRules()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def snap(
    deployment: str,
    t: float,
    calls: int,
    failures: int,
    *,
    success: float | None = None,
    window_s: float = 300.0,
) -> SpecialistHealth:
    """A health snapshot at ``t`` with its last success at ``success`` (seconds from T0)."""
    return SpecialistHealth(
        event_id=f"{deployment}-{t}",
        request_id=deployment,
        occurred_at=at(t),
        specialist="general",
        deployment=deployment,
        state="healthy",
        error_rate=failures / calls if calls else 0.0,
        window_s=window_s,
        calls=calls,
        failures=failures,
        last_success_at=None if success is None else at(success),
    )


def ok(deployment: str, t: float, calls: int, failures: int) -> SpecialistHealth:
    """A snapshot of a deployment that answered successfully at ``t``."""
    return snap(deployment, t, calls, failures, success=t)


@dataclass(frozen=True)
class Step:
    t: float
    health: Sequence[SpecialistHealth] = ()
    expect: Sequence[tuple[str, str, str]] = ()
    """The (state, rule, subject) of the alerts this evaluation emits, in order."""


def run(
    steps: Sequence[Step], rules: AlertRules = RULES, book: AlertBook | None = None
) -> tuple[AlertBook, list[AlertRaised]]:
    book = book or AlertBook()
    emitted: list[AlertRaised] = []
    for step in steps:
        book, alerts = evaluate(book, step.health, at(step.t), rules)
        got = [(a.state, a.rule, a.subject) for a in alerts]
        assert got == list(step.expect), f"at t={step.t}"
        emitted += alerts
    return book, emitted


FIRE_A = ("firing", "error_rate", "a")
RESOLVE_A = ("resolved", "error_rate", "a")
DOWN_A = ("firing", "downtime", "a")
UP_A = ("resolved", "downtime", "a")

SCENARIOS: dict[str, list[Step]] = {
    "crossing fires once, staying above is quiet, dropping resolves once": [
        Step(0, [ok("a", 0, 20, 2)]),  # exactly 10%: not above
        Step(10, [ok("a", 10, 20, 3)], [FIRE_A]),
        Step(20, [ok("a", 20, 20, 8)]),
        Step(30, [ok("a", 30, 20, 3)]),
        Step(40, [ok("a", 40, 20, 1)], [RESOLVE_A]),
        Step(50, [ok("a", 50, 20, 1)]),
        Step(60, [ok("a", 60, 20, 5)], [FIRE_A]),  # a new incident
    ],
    "below min_calls never fires": [
        Step(0, [ok("a", 0, 9, 9)]),
        Step(10, [ok("a", 10, 10, 2)], [FIRE_A]),
        Step(20, [ok("a", 20, 9, 9)], [RESOLVE_A]),
    ],
    "downtime fires after more than downtime_s without success, resolves on a success": [
        Step(0, [ok("a", 0, 5, 0)]),
        Step(100, [snap("a", 100, 5, 5, success=0)]),
        Step(200, [snap("a", 200, 5, 5, success=0)]),
        Step(300, [snap("a", 300, 5, 5, success=0)]),  # exactly downtime_s: not more
        Step(301, [], [DOWN_A]),
        Step(400, [snap("a", 400, 5, 5, success=0)]),
        Step(410, [ok("a", 410, 5, 4)], [UP_A]),
        Step(900, [ok("a", 900, 5, 0)]),
    ],
    "a deployment never called is not down": [
        Step(0, [snap("a", 0, 0, 0)]),
        Step(1000, [snap("a", 1000, 0, 0)]),
        Step(5000),
    ],
    "called but never successful is down after downtime_s of calls": [
        Step(0, [snap("a", 0, 3, 3)]),
        Step(250, [snap("a", 250, 3, 3)]),
        Step(301, [snap("a", 301, 3, 3)], [DOWN_A]),
        Step(302, [ok("a", 302, 3, 2)], [UP_A]),
    ],
    "an idle deployment's first failure is not downtime; calls stopping clears it": [
        Step(0, [ok("a", 0, 5, 0)]),
        Step(1000, [snap("a", 1000, 0, 0, success=0)]),
        Step(2000, [snap("a", 2000, 2, 2, success=0)]),
        Step(2301, [snap("a", 2301, 2, 2, success=0)], [DOWN_A]),
        Step(2400, [snap("a", 2400, 0, 0, success=0)], [UP_A]),
    ],
    "an error rate leaving the window resolves without a new snapshot": [
        Step(0, [ok("a", 0, 20, 10)], [FIRE_A]),
        Step(299),
        Step(300, [], [RESOLVE_A]),
    ],
    "the same snapshots handed over again change nothing": [
        Step(0, [ok("a", 0, 20, 10)], [FIRE_A]),
        Step(10, [ok("a", 0, 20, 10), ok("a", 0, 20, 10)]),
        Step(20, [ok("a", 20, 20, 0)], [RESOLVE_A]),
        Step(30, [ok("a", 5, 20, 10), ok("a", 20, 20, 0)]),  # a late, older one is ignored
    ],
    "two deployments are independent incidents": [
        Step(0, [ok("a", 0, 20, 5), ok("b", 0, 20, 0)], [FIRE_A]),
        Step(10, [ok("a", 10, 20, 5), ok("b", 10, 20, 5)], [("firing", "error_rate", "b")]),
        Step(20, [ok("a", 20, 20, 0), ok("b", 20, 20, 5)], [RESOLVE_A]),
        Step(30, [ok("b", 30, 20, 0)], [("resolved", "error_rate", "b")]),
    ],
}


@pytest.mark.parametrize("steps", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_scenario(steps: list[Step]) -> None:
    run(steps)


@pytest.mark.parametrize(
    ("rules", "steps"),
    [
        (
            AlertRules(error_rate_threshold=0.5, min_calls=2),
            [Step(0, [ok("a", 0, 10, 5)]), Step(1, [ok("a", 1, 2, 2)], [FIRE_A])],
        ),
        (
            AlertRules(error_rate_threshold=0.01),
            [Step(0, [ok("a", 0, 100, 1)]), Step(1, [ok("a", 1, 50, 1)], [FIRE_A])],
        ),
        (
            AlertRules(downtime_s=60),
            [Step(0, [snap("a", 0, 2, 2)]), Step(61, [snap("a", 61, 2, 2)], [DOWN_A])],
        ),
        (
            AlertRules(error_rate_window_s=60),
            [Step(0, [ok("a", 0, 20, 10)], [FIRE_A]), Step(60, [], [RESOLVE_A])],
        ),
    ],
    ids=["threshold and min_calls", "low threshold", "downtime_s", "window"],
)
def test_thresholds_are_configurable(rules: AlertRules, steps: list[Step]) -> None:
    run(steps, rules)


def test_an_incident_has_one_id_from_firing_to_resolved() -> None:
    _, alerts = run(SCENARIOS["two deployments are independent incidents"])
    fire_a, fire_b, resolve_a, resolve_b = alerts
    assert fire_a.alert_id == resolve_a.alert_id
    assert fire_b.alert_id == resolve_b.alert_id
    assert fire_a.alert_id != fire_b.alert_id
    assert len({a.event_id for a in alerts}) == 4
    assert (fire_a.started_at, fire_b.started_at) == (at(0), at(10))
    assert resolve_a.started_at == at(0)
    assert resolve_a.occurred_at == at(20)


def test_a_later_incident_gets_a_new_id() -> None:
    steps = SCENARIOS["crossing fires once, staying above is quiet, dropping resolves once"]
    _, alerts = run(steps)
    assert alerts[0].alert_id == alerts[1].alert_id != alerts[2].alert_id


def test_the_same_inputs_give_the_same_events() -> None:
    [steps] = [v for k, v in SCENARIOS.items() if k.startswith("downtime fires")]
    assert run(steps)[1] == run(steps)[1]


def test_firing_alert_fields_and_message() -> None:
    _, [alert] = run([Step(5, [ok("gpu-a", 5, 40, 10)], [("firing", "error_rate", "gpu-a")])])
    assert (alert.severity, alert.value, alert.threshold) == ("warning", 0.25, 0.10)
    assert alert.request_id == alert.alert_id
    assert alert.message.startswith("gpu-a error_rate firing:")
    assert "25.0%" in alert.message
    assert "10 of 40" in alert.message
    assert "10.0%" in alert.message


def test_downtime_alert_fields() -> None:
    down = snap("a", 301, 3, 3, success=-50)
    steps = [Step(0, [snap("a", 0, 3, 3, success=-50)]), Step(301, [down], [DOWN_A])]
    _, [alert] = run(steps)
    assert (alert.severity, alert.value, alert.threshold) == ("critical", 301.0, 300.0)
    assert "no successful answer in the last 301s of calls" in alert.message
    assert "last at 2025-03-01T11:59:10+00:00" in alert.message
    assert "threshold 300s" in alert.message


def test_severity_per_rule() -> None:
    rules = AlertRules(error_rate_severity="critical", downtime_severity="info")
    _, alerts = run(
        [Step(0, [snap("a", 0, 20, 20)], [FIRE_A]), Step(301, [snap("a", 301, 20, 20)], [DOWN_A])],
        rules,
    )
    assert [a.severity for a in alerts] == ["critical", "info"]


def test_alerts_encode_with_the_avro_schema() -> None:
    _, alerts = run(SCENARIOS["two deployments are independent incidents"])
    codec = Codec()
    assert [codec.decode(codec.encode(a), AlertRaised) for a in alerts] == alerts


def test_restored_incidents_do_not_fire_again() -> None:
    first, alerts = run([Step(0, [ok("a", 0, 20, 10)], [FIRE_A])])
    book = restore(AlertBook(), alerts)
    assert book.open() == first.open()
    run([Step(10, [ok("a", 10, 20, 10)]), Step(20, [ok("a", 20, 20, 0)], [RESOLVE_A])], book=book)


def test_restored_downtime_is_not_resolved_by_calls_starting_anew() -> None:
    down = snap("a", 301, 2, 2, success=-10)
    _, alerts = run([Step(0, [snap("a", 0, 2, 2, success=-10)]), Step(301, [down], [DOWN_A])])
    book = restore(AlertBook(), alerts)
    _, [resolved] = run(
        [Step(400, [snap("a", 400, 2, 2, success=-10)]), Step(410, [ok("a", 410, 2, 1)], [UP_A])],
        book=book,
    )
    assert resolved.alert_id == alerts[0].alert_id


def test_restore_closes_resolved_incidents_and_skips_unknown_rules() -> None:
    _, alerts = run(SCENARIOS["two deployments are independent incidents"])
    other = alerts[0].model_copy(update={"rule": "quality_drop", "alert_id": "q"})
    assert restore(AlertBook(), [*alerts, other]).open() == ()
    assert [i.subject for i in restore(AlertBook(), alerts[:2]).open()] == ["a", "b"]


def test_now_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(AlertBook(), [], datetime(2025, 1, 1), RULES)


def _samples(*spec: tuple[float, float, int, int]) -> list[Sample]:
    return [Sample(at(t), window_s, calls, failures) for t, window_s, calls, failures in spec]


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        ([], (0, 0)),
        (_samples((100, 300, 20, 5)), (20, 5)),
        (_samples((50, 300, 10, 0), (100, 300, 20, 5)), (20, 5)),  # the newest covers it all
        (_samples((40, 30, 10, 1), (70, 30, 10, 2), (100, 30, 10, 3)), (30, 6)),
        (_samples((80, 30, 10, 1), (90, 30, 10, 2), (100, 30, 10, 3)), (10, 3)),  # overlapping
        (_samples((60, 30, 10, 1), (80, 30, 10, 2), (100, 30, 10, 3)), (20, 4)),
        (_samples((-250, 30, 10, 9), (100, 30, 10, 3)), (10, 3)),  # outside the window
    ],
)
def test_window_counts_add_up_snapshots_without_overlap(
    samples: list[Sample], expected: tuple[int, int]
) -> None:
    assert window_counts(samples, at(100), 300) == expected


def test_short_snapshot_windows_are_added_up_to_the_rule_window() -> None:
    """Each 30s snapshot has 10 calls: only added up do they reach ``min_calls``."""
    health = [snap("a", t, 10, 2, success=t, window_s=30) for t in (0, 30, 60)]
    steps = [Step(0, health[:1]), Step(30, health[1:2]), Step(60, health[2:], [FIRE_A])]
    _, [alert] = run(steps, AlertRules(min_calls=25))
    assert alert.value == pytest.approx(0.2)
    assert "6 of 30 calls" in alert.message
