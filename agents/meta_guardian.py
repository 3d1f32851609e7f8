"""The meta-guardian: how well the guardians agree with the users they serve, whether
quality drifts below its baseline, and the threshold changes that would calibrate them.

Feedback joins the verdict of the answer the user received (the request's best
verdict, as refine chooses it). A rating of at least 0.5 means the user was
satisfied; a passing verdict means the guardian was.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from agents.config import PipelineConfig
from agents.config_values import encode
from agents.ids import stable_id
from agents.judged import Judged, Rated
from schemas.network_events import ImprovementProposed

SATISFIED = 0.5
OVERALL = "overall"
THRESHOLD_KEY = "guardian.pass_threshold"


@dataclass(frozen=True)
class Calibration:
    """One guardian's (or the combined verdict's) pass rate and agreement with users."""

    guardian: str
    verdicts: int
    passes: int
    rated: int
    agreements: int
    rated_passes: int
    false_passes: int
    """Passed, but the user was not satisfied."""
    false_fails: int
    """Failed, but the user was satisfied."""

    @property
    def pass_rate(self) -> float:
        return _ratio(self.passes, self.verdicts)

    @property
    def agreement(self) -> float:
        return _ratio(self.agreements, self.rated)

    @property
    def false_pass_rate(self) -> float:
        """Share of rated passing verdicts the user was unhappy with."""
        return _ratio(self.false_passes, self.rated_passes)

    @property
    def false_fail_rate(self) -> float:
        """Share of rated failing verdicts the user was happy with."""
        return _ratio(self.false_fails, self.rated - self.rated_passes)


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def judged(verdicts: Iterable[Judged]) -> list[Judged]:
    """Verdicts on an actual answer (a failed model call was not the guardians' call)."""
    return [v for v in verdicts if "model_error" not in v.failure_classes]


def delivered(verdicts: Iterable[Judged]) -> dict[str, Judged]:
    """Per request, the verdict of the answer delivered: passing first, then the higher
    score, then the earlier round."""
    best: dict[str, Judged] = {}
    for v in judged(verdicts):
        held = best.get(v.request_id)
        if held is None or _rank(v) > _rank(held):
            best[v.request_id] = v
    return best


def _rank(v: Judged) -> tuple[bool, float, int]:
    return (v.passed, v.score, -v.round)


def ratings(feedback: Iterable[Rated]) -> dict[str, float]:
    """The latest explicit rating per request."""
    latest: dict[str, Rated] = {}
    for f in feedback:
        if f.kind != "explicit" or f.rating is None:
            continue
        held = latest.get(f.request_id)
        if held is None or (f.occurred_at, f.event_id) > (held.occurred_at, held.event_id):
            latest[f.request_id] = f
    return {rid: f.rating for rid, f in latest.items() if f.rating is not None}


def calibrate(verdicts: Sequence[Judged], feedback: Sequence[Rated]) -> tuple[Calibration, ...]:
    """Calibration of the combined verdict (``overall``) and of each guardian.

    Pass rates count every judged verdict; agreement counts the delivered verdict
    of every request with an explicit rating.
    """
    all_judged, final, rated = judged(verdicts), delivered(verdicts), ratings(feedback)
    names = sorted({s.guardian for v in all_judged for s in v.scores})
    return tuple(_calibration(name, all_judged, final, rated) for name in [OVERALL, *names])


def _passed(v: Judged, guardian: str) -> bool | None:
    if guardian == OVERALL:
        return v.passed
    return next((s.passed for s in v.scores if s.guardian == guardian), None)


def _calibration(
    name: str,
    all_judged: list[Judged],
    final: dict[str, Judged],
    rated: dict[str, float],
) -> Calibration:
    outcomes = [p for v in all_judged if (p := _passed(v, name)) is not None]
    pairs = [
        (p, rated[rid] >= SATISFIED)
        for rid, v in final.items()
        if rid in rated and (p := _passed(v, name)) is not None
    ]
    return Calibration(
        guardian=name,
        verdicts=len(outcomes),
        passes=sum(outcomes),
        rated=len(pairs),
        agreements=sum(g == u for g, u in pairs),
        rated_passes=sum(g for g, _ in pairs),
        false_passes=sum(g and not u for g, u in pairs),
        false_fails=sum(u and not g for g, u in pairs),
    )


@dataclass(frozen=True)
class Drift:
    """A quality metric's recent mean against its baseline mean."""

    metric: str
    baseline_mean: float
    recent_mean: float
    baseline_n: int
    recent_n: int
    relative_change: float
    degraded: bool
    """The recent mean is at least ``max_drop`` below the baseline: recommend retraining
    (or re-tuning) whatever produces this metric."""


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def drift(
    metric: str,
    baseline: Sequence[float],
    recent: Sequence[float],
    *,
    max_drop: float = 0.05,
    min_samples: int = 30,
) -> Drift:
    """Compare ``recent`` with ``baseline``; flag a relative drop of ``max_drop`` or more
    once both windows hold ``min_samples`` values."""
    base, now = _mean(baseline), _mean(recent)
    change = (now - base) / base if base > 0 else 0.0
    enough = len(baseline) >= min_samples and len(recent) >= min_samples
    return Drift(
        metric=metric,
        baseline_mean=base,
        recent_mean=now,
        baseline_n=len(baseline),
        recent_n=len(recent),
        relative_change=change,
        degraded=enough and -change >= max_drop - 1e-9,
    )


@dataclass(frozen=True)
class MetaRules:
    min_rated: int = 50
    """Rated answers under the live threshold needed before any proposal."""
    max_false_pass_rate: float = 0.2
    max_false_fail_rate: float = 0.3
    step: float = 0.05
    ceiling: float = 0.95
    floor: float = 0.5


@dataclass(frozen=True)
class _Move:
    threshold: float
    rationale: str
    effect: str


_Rated = list[tuple[Judged, bool]]


def propose_threshold(
    verdicts: Sequence[Judged],
    feedback: Sequence[Rated],
    config: PipelineConfig,
    now: datetime,
    rules: MetaRules = MetaRules(),
) -> list[ImprovementProposed]:
    """At most one ``threshold`` proposal for ``guardian.pass_threshold``.

    Only verdicts decided under the live threshold count. Raise it by ``step``
    when too many passing answers disappoint users, lower it by ``step`` when too
    many failing answers satisfy them and passes are trustworthy; either move only
    when, on the rated answers, it fixes more verdicts than it breaks.
    """
    t = config.guardian.pass_threshold
    live = [v for v in verdicts if abs(v.threshold - t) < 1e-9]
    final, rated = delivered(live), ratings(feedback)
    pairs = [(v, rated[rid] >= SATISFIED) for rid, v in sorted(final.items()) if rid in rated]
    if len(pairs) < rules.min_rated:
        return []
    cal = _calibration(OVERALL, judged(live), final, rated)
    move = _raise(pairs, t, cal, rules) or _lower(pairs, t, cal, rules)
    return [] if move is None else [_proposal(config, move, now)]


def _raise(pairs: _Rated, t: float, cal: Calibration, rules: MetaRules) -> _Move | None:
    new = min(rules.ceiling, round(t + rules.step, 6))
    if cal.false_pass_rate < rules.max_false_pass_rate or new <= t:
        return None
    band = [happy for v, happy in pairs if v.passed and v.score < new]
    caught, lost = band.count(False), band.count(True)
    if caught <= lost:
        return None
    return _Move(
        new,
        f"{cal.false_pass_rate:.0%} of {cal.rated_passes} rated passing answers disappointed "
        f"users (limit {rules.max_false_pass_rate:.0%})",
        f"{caught} of those would fail at {new} against {lost} satisfying answers",
    )


def _lower(pairs: _Rated, t: float, cal: Calibration, rules: MetaRules) -> _Move | None:
    new = max(rules.floor, round(t - rules.step, 6))
    too_strict = cal.false_fail_rate >= rules.max_false_fail_rate
    if not too_strict or cal.false_pass_rate >= rules.max_false_pass_rate or new >= t:
        return None
    # Only a verdict that failed on its score alone (every gate, safety included, held)
    # changes under a lower threshold.
    band = [happy for v, happy in pairs if _score_only_fail(v) and v.score >= new]
    gained, spoiled = band.count(True), band.count(False)
    if gained <= spoiled:
        return None
    return _Move(
        new,
        f"{cal.false_fail_rate:.0%} of {cal.rated - cal.rated_passes} rated failing answers "
        f"satisfied users (limit {rules.max_false_fail_rate:.0%}); safety gates unchanged",
        f"{gained} of those would pass at {new} against {spoiled} disappointing answers",
    )


def _score_only_fail(v: Judged) -> bool:
    return not v.passed and v.failure_classes == ("low_score",)


def _proposal(config: PipelineConfig, move: _Move, now: datetime) -> ImprovementProposed:
    proposed = encode(move.threshold)
    pid = stable_id("meta-guardian", config.version, THRESHOLD_KEY, proposed)
    return ImprovementProposed(
        event_id=stable_id(pid, "event"),
        request_id=pid,
        occurred_at=now,
        config_version=config.version,
        proposal_id=pid,
        kind="threshold",
        key=THRESHOLD_KEY,
        current_value=encode(config.guardian.pass_threshold),
        proposed_value=proposed,
        rationale=move.rationale,
        expected_effect=move.effect,
        proposed_by="meta-guardian",
    )


IMPLICIT_SATISFACTION = {
    "accepted": 1.0,
    "copied": 1.0,
    "edited": 0.5,
    "regenerated": 0.0,
    "abandoned": 0.0,
}
"""What an implicit signal says about the answer, on the rating scale."""


def satisfaction(feedback: Iterable[Rated], start: datetime, end: datetime) -> dict[str, float]:
    """Per request, how satisfied its user was, from feedback given in ``[start, end)``:
    the latest explicit rating, else the latest known implicit signal."""
    explicit: dict[str, tuple[datetime, float]] = {}
    implicit: dict[str, tuple[datetime, float]] = {}
    for f in feedback:
        if not start <= f.occurred_at < end:
            continue
        if f.kind == "explicit" and f.rating is not None:
            _latest(explicit, f.request_id, f.occurred_at, f.rating)
        elif f.signal in IMPLICIT_SATISFACTION:
            _latest(implicit, f.request_id, f.occurred_at, IMPLICIT_SATISFACTION[f.signal])
    merged = {rid: value for rid, (_, value) in implicit.items()}
    merged.update({rid: value for rid, (_, value) in explicit.items()})
    return merged


def _latest(into: dict[str, tuple[datetime, float]], rid: str, at: datetime, v: float) -> None:
    held = into.get(rid)
    if held is None or at >= held[0]:
        into[rid] = (at, v)


def accuracy_samples(
    verdicts: Iterable[Judged],
    feedback: Iterable[Rated],
    start: datetime,
    end: datetime,
) -> dict[str, list[float]]:
    """Per specialist of the delivered answer: 1.0 for each satisfied user, 0.0 for
    each unsatisfied one, over feedback given in ``[start, end)`` (rolling accuracy)."""
    final = delivered(verdicts)
    samples: dict[str, list[float]] = {}
    for rid, value in satisfaction(feedback, start, end).items():
        verdict = final.get(rid)
        if verdict is not None:
            samples.setdefault(verdict.specialist, []).append(float(value >= SATISFIED))
    return samples


def accuracy_drops(
    verdicts: Sequence[Judged],
    feedback: Sequence[Rated],
    now: datetime,
    window: timedelta,
    *,
    max_drop: float = 0.05,
    min_samples: int = 30,
) -> list[Drift]:
    """Specialists whose accuracy over the last window fell ``max_drop`` or more below
    the window before it: each one a retraining recommendation."""
    recent = accuracy_samples(verdicts, feedback, now - window, now)
    baseline = accuracy_samples(verdicts, feedback, now - 2 * window, now - window)
    found = [
        drift(
            f"accuracy.{name}",
            baseline.get(name, []),
            recent.get(name, []),
            max_drop=max_drop,
            min_samples=min_samples,
        )
        for name in sorted(set(recent) | set(baseline))
    ]
    return [d for d in found if d.degraded]
