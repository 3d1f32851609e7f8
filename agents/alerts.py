"""Alert rules over deployment health: when an incident starts and when it clears, decided
as a pure function of what is already open, the health snapshots and the time.

Two rules, both per deployment (the alert's subject):

- ``error_rate``: over the last ``error_rate_window_s``, at least ``min_calls`` calls and
  an error rate above ``error_rate_threshold``. Snapshots count calls over their own
  ``window_s``; shorter windows are added up without overlap to cover the rule's window.
- ``downtime``: still being called, and no successful answer for more than ``downtime_s``
  (counted from the last success seen or from when calls resumed after an idle spell,
  whichever is later); it clears on a success or when the calls stop. A deployment
  nobody calls is not down.

``evaluate`` emits ``firing`` once when a condition starts and ``resolved`` once when it
clears. Ids are derived from rule, subject and incident start, so a re-emission is the
same event; ``restore`` rebuilds the open incidents from the alerts already emitted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from agents.ids import stable_id
from schemas.network_events import AlertRaised, SpecialistHealth

Rule = Literal["error_rate", "downtime"]
Severity = Literal["info", "warning", "critical"]
RULES: tuple[Rule, ...] = ("error_rate", "downtime")
K = TypeVar("K")
V = TypeVar("V")


class AlertRules(BaseModel):
    """Thresholds and severities of the deployment alerts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    error_rate_threshold: float = Field(default=0.10, ge=0.0, lt=1.0)
    """Fires when the error rate is strictly above this."""
    error_rate_window_s: float = Field(default=300.0, gt=0.0)
    min_calls: int = Field(default=10, ge=1)
    """Fewer calls than this in the window never fire the error-rate rule."""
    downtime_s: float = Field(default=300.0, gt=0.0)
    """Fires when a called deployment has answered nothing for strictly longer than this."""
    error_rate_severity: Severity = "warning"
    downtime_severity: Severity = "critical"

    def severity(self, rule: Rule) -> Severity:
        return self.error_rate_severity if rule == "error_rate" else self.downtime_severity

    def threshold(self, rule: Rule) -> float:
        return self.error_rate_threshold if rule == "error_rate" else self.downtime_s


@dataclass(frozen=True, slots=True)
class Incident:
    """An open alert: what fired, about what, since when, under which id."""

    rule: Rule
    subject: str
    alert_id: str
    started_at: datetime
    severity: Severity
    threshold: float


@dataclass(frozen=True, slots=True)
class Sample:
    """One health snapshot's counts: ``calls`` and ``failures`` over ``window_s`` up to ``at``."""

    at: datetime
    window_s: float
    calls: int
    failures: int

    @property
    def called(self) -> bool:
        return self.calls > 0 or self.failures > 0


@dataclass(frozen=True, slots=True)
class Deployment:
    """What the book remembers of a deployment between evaluations."""

    samples: tuple[Sample, ...] = ()
    """Oldest first; only those inside the longest rule window are kept."""
    newest_at: datetime | None = None
    """The newest snapshot seen: an older one arriving late does not change the state."""
    last_success_at: datetime | None = None
    """The latest success any snapshot reported (survives a reporter's restart)."""
    called_since: datetime | None = None
    """Start of the current run of snapshots showing calls; ``None`` while idle."""


def _frozen(items: Mapping[K, V]) -> Mapping[K, V]:
    return MappingProxyType(dict(items))


def _millis(now: datetime) -> datetime:
    """``now`` as the UTC millisecond instant an event carries."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    now = now.astimezone(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass(frozen=True, slots=True)
class AlertBook:
    """Open incidents by ``(rule, subject)`` and the deployments' recent health."""

    incidents: Mapping[tuple[Rule, str], Incident] = field(default_factory=lambda: _frozen({}))
    deployments: Mapping[str, Deployment] = field(default_factory=lambda: _frozen({}))

    def open(self) -> tuple[Incident, ...]:
        return tuple(self.incidents[key] for key in sorted(self.incidents))


@dataclass(frozen=True, slots=True)
class _Reading:
    """One rule's verdict on one deployment now."""

    active: bool
    value: float
    detail: str


def evaluate(
    book: AlertBook, health: Sequence[SpecialistHealth], now: datetime, rules: AlertRules
) -> tuple[AlertBook, list[AlertRaised]]:
    """The book after ``health`` arrived, and the alerts that fire or resolve at ``now``.

    ``health`` may hold only the new snapshots or every latest one again: a snapshot
    already seen changes nothing. Every deployment the book knows is checked, so time
    passing alone can fire (downtime) or resolve (an error rate leaving the window).
    """
    now = _millis(now)
    deployments = _observe(book.deployments, health, now, rules)
    incidents = dict(book.incidents)
    alerts: list[AlertRaised] = []
    for subject in sorted(deployments):
        for rule in RULES:
            firing = (rule, subject) in incidents
            reading = _read(rule, deployments[subject], now, rules, firing)
            alert = _transition(incidents, rule, subject, reading, now, rules)
            if alert is not None:
                alerts.append(alert)
    return AlertBook(_frozen(incidents), _frozen(deployments)), alerts


def restore(book: AlertBook, alerts: Iterable[AlertRaised]) -> AlertBook:
    """The book after the alerts already emitted, in topic order: firing opens an
    incident, resolved closes it. Use at start-up so open incidents do not fire again."""
    incidents = dict(book.incidents)
    for alert in alerts:
        rule = _rule(alert.rule)
        if rule is None:
            continue
        key = (rule, alert.subject)
        if alert.state == "resolved":
            if key in incidents and incidents[key].alert_id == alert.alert_id:
                del incidents[key]
        else:
            incidents[key] = Incident(
                rule, alert.subject, alert.alert_id, alert.started_at, alert.severity,
                alert.threshold,
            )  # fmt: skip
    return replace(book, incidents=_frozen(incidents))


def alert_id(rule: Rule, subject: str, started_at: datetime) -> str:
    return stable_id("alert", rule, subject, started_at.isoformat())


# --- Observing health ----------------------------------------------------------


def _observe(
    known: Mapping[str, Deployment],
    health: Sequence[SpecialistHealth],
    now: datetime,
    rules: AlertRules,
) -> dict[str, Deployment]:
    deployments = dict(known)
    for snapshot in health:
        current = deployments.get(snapshot.deployment, Deployment())
        deployments[snapshot.deployment] = _absorb(current, snapshot)
    horizon = now - timedelta(seconds=max(rules.error_rate_window_s, rules.downtime_s))
    return {
        name: replace(d, samples=tuple(s for s in d.samples if s.at > horizon))
        for name, d in deployments.items()
    }


def _absorb(deployment: Deployment, snapshot: SpecialistHealth) -> Deployment:
    sample = Sample(snapshot.occurred_at, snapshot.window_s, snapshot.calls, snapshot.failures)
    if any(s.at == sample.at for s in deployment.samples):
        return deployment  # the same snapshot again (a replay)
    absorbed = replace(
        deployment,
        samples=tuple(sorted((*deployment.samples, sample), key=lambda s: s.at)),
        last_success_at=_latest(deployment.last_success_at, snapshot.last_success_at),
    )
    if deployment.newest_at is not None and sample.at <= deployment.newest_at:
        return absorbed
    called_since = (deployment.called_since or sample.at) if sample.called else None
    return replace(absorbed, newest_at=sample.at, called_since=called_since)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return max(a, b)


# --- Rules -----------------------------------------------------------------------


def _read(
    rule: Rule, deployment: Deployment, now: datetime, rules: AlertRules, firing: bool
) -> _Reading:
    if rule == "error_rate":
        return _error_rate(deployment, now, rules)
    return _downtime(deployment, now, rules, firing)


def _error_rate(deployment: Deployment, now: datetime, rules: AlertRules) -> _Reading:
    calls, failures = window_counts(deployment.samples, now, rules.error_rate_window_s)
    rate = failures / calls if calls else 0.0
    detail = (
        f"error rate {rate:.1%} ({failures} of {calls} calls failed) over the last "
        f"{rules.error_rate_window_s:g}s; threshold {rules.error_rate_threshold:.1%} "
        f"with at least {rules.min_calls} calls"
    )
    active = calls >= rules.min_calls and rate > rules.error_rate_threshold
    return _Reading(active, rate, detail)


def window_counts(samples: Sequence[Sample], now: datetime, window_s: float) -> tuple[int, int]:
    """Calls and failures in ``(now - window_s, now]``, adding up snapshots whose own
    windows do not overlap, newest first (one snapshot when its window covers it all)."""
    start = now - timedelta(seconds=window_s)
    calls = failures = 0
    covered_from: datetime | None = None
    for sample in sorted(samples, key=lambda s: s.at, reverse=True):
        if sample.at <= start:
            break
        if covered_from is not None and sample.at > covered_from:
            continue  # its window overlaps one already counted
        calls += sample.calls
        failures += sample.failures
        covered_from = sample.at - timedelta(seconds=sample.window_s)
        if covered_from <= start:
            break
    return calls, failures


def _downtime(deployment: Deployment, now: datetime, rules: AlertRules, firing: bool) -> _Reading:
    """Silence counts from the later of the last success and the start of the current run
    of calls; once firing, only a success (or the calls stopping) clears it, so an
    incident restored after a restart is not resolved by the run of calls starting anew."""
    start = now - timedelta(seconds=rules.downtime_s)
    newest, called_since = deployment.newest_at, deployment.called_since
    if called_since is None or newest is None or newest <= start:
        return _Reading(False, 0.0, "not called lately")
    last_success = deployment.last_success_at
    if last_success is None:
        silent_s = (now - called_since).total_seconds()
        detail = _silence(silent_s, "none seen", rules)
        return _Reading(firing or silent_s > rules.downtime_s, silent_s, detail)
    since = last_success if firing else max(last_success, called_since)
    silent_s = max(0.0, (now - since).total_seconds())
    detail = _silence(silent_s, f"last at {last_success.isoformat()}", rules)
    return _Reading(silent_s > rules.downtime_s, silent_s, detail)


def _silence(silent_s: float, last: str, rules: AlertRules) -> str:
    return (
        f"no successful answer in the last {silent_s:.0f}s of calls ({last}); "
        f"threshold {rules.downtime_s:g}s"
    )


def _rule(name: str) -> Rule | None:
    for rule in RULES:
        if rule == name:
            return rule
    return None


# --- Incidents -------------------------------------------------------------------


def _transition(
    incidents: dict[tuple[Rule, str], Incident],
    rule: Rule,
    subject: str,
    reading: _Reading,
    now: datetime,
    rules: AlertRules,
) -> AlertRaised | None:
    """Open or close the ``(rule, subject)`` incident in place; the alert that says so."""
    key = (rule, subject)
    incident = incidents.get(key)
    if reading.active and incident is None:
        incident = Incident(
            rule, subject, alert_id(rule, subject, now), now, rules.severity(rule),
            rules.threshold(rule),
        )  # fmt: skip
        incidents[key] = incident
        return _alert(incident, "firing", reading, now)
    if not reading.active and incident is not None:
        del incidents[key]
        return _alert(incident, "resolved", reading, now)
    return None


def _alert(
    incident: Incident, state: Literal["firing", "resolved"], reading: _Reading, now: datetime
) -> AlertRaised:
    return AlertRaised(
        event_id=stable_id(incident.alert_id, state),
        request_id=incident.alert_id,
        occurred_at=now,
        alert_id=incident.alert_id,
        rule=incident.rule,
        severity=incident.severity,
        subject=incident.subject,
        state=state,
        value=reading.value,
        threshold=incident.threshold,
        message=f"{incident.subject} {incident.rule} {state}: {reading.detail}",
        started_at=incident.started_at,
    )
