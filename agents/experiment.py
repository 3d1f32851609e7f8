"""A/B experiments on live traffic: a stable split by request id, per-arm tallies, the
two tests (pass rate: two-proportion z-test; scores: Mann-Whitney U) and the decision.

The decision is group-sequential: the data are tested only at a few planned looks,
each at ``alpha / looks`` (Bonferroni), so testing as the data arrive does not
inflate the false-promotion rate the way testing after every verdict would.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from schemas.network_events import ExperimentConcluded

Arm = Literal["control", "treatment"]
Decision = Literal["promote", "rollback", "inconclusive"]
SCORE_BINS = 1000
"""Scores are tallied in bins of 1/SCORE_BINS: bounded state, and ranks stay exact
up to that resolution (ties are handled by the test)."""
SRM_ALPHA = 0.001
"""A split this unlikely under the planned share means the assignment is broken."""


def arm_for(request_id: str, experiment_id: str, treatment_share: float) -> Arm:
    """The request's arm: the same for every worker and every redelivery."""
    if not 0.0 <= treatment_share <= 1.0:
        raise ValueError(f"treatment_share must be within [0, 1], not {treatment_share}")
    key = f"{experiment_id}\x1f{request_id}".encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return "treatment" if int.from_bytes(digest, "big") / 2**64 < treatment_share else "control"


def variant_of(arm: Arm, experiment_id: str) -> str:
    """The envelope's ``variant``: ``control`` or ``treatment:<experiment_id>``."""
    return "control" if arm == "control" else f"treatment:{experiment_id}"


def arm_of(variant: str | None, experiment_id: str) -> Arm | None:
    """The arm of an event's ``variant`` in this experiment, if it belongs to one."""
    if variant == f"treatment:{experiment_id}":
        return "treatment"
    return "control" if variant == "control" else None


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ArmTally(_Frozen):
    n: int = 0
    passes: int = 0
    score_sum: float = 0.0
    histogram: tuple[tuple[int, int], ...] = ()
    """(score bin, count), sorted by bin."""

    @property
    def pass_rate(self) -> float:
        return self.passes / self.n if self.n else 0.0

    @property
    def mean_score(self) -> float:
        return self.score_sum / self.n if self.n else 0.0

    def score_counts(self) -> dict[float, int]:
        return {b / SCORE_BINS: c for b, c in self.histogram}


class ExperimentTally(_Frozen):
    control: ArmTally = ArmTally()
    treatment: ArmTally = ArmTally()

    @property
    def total(self) -> int:
        return self.control.n + self.treatment.n


def observe(
    tally: ExperimentTally, verdict_arm: Arm, passed: bool, score: float
) -> ExperimentTally:
    """Count one verdict in its arm (count one verdict per request, e.g. its first
    round, so that samples are independent)."""
    if not math.isfinite(score):
        raise ValueError(f"score must be finite, not {score}")
    arm: ArmTally = getattr(tally, verdict_arm)
    updated = arm.model_copy(
        update={
            "n": arm.n + 1,
            "passes": arm.passes + int(passed),
            "score_sum": arm.score_sum + score,
            "histogram": _add(arm.histogram, round(score * SCORE_BINS)),
        }
    )
    return tally.model_copy(update={verdict_arm: updated})


def _add(histogram: tuple[tuple[int, int], ...], bin_: int) -> tuple[tuple[int, int], ...]:
    at = bisect.bisect_left(histogram, bin_, key=lambda entry: entry[0])
    if at < len(histogram) and histogram[at][0] == bin_:
        return (*histogram[:at], (bin_, histogram[at][1] + 1), *histogram[at + 1 :])
    return (*histogram[:at], (bin_, 1), *histogram[at:])


def two_sided_p(z: float) -> float:
    """P(|Z| >= |z|) for a standard normal Z."""
    return math.erfc(abs(z) / math.sqrt(2.0))


def two_proportion_z_test(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """Pooled two-proportion z-test of x1/n1 against x2/n2: (z, two-sided p)."""
    if n1 <= 0 or n2 <= 0 or not (0 <= x1 <= n1 and 0 <= x2 <= n2):
        raise ValueError(f"need 0 <= x <= n and n > 0, got {x1}/{n1} and {x2}/{n2}")
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0, 1.0
    z = (x1 / n1 - x2 / n2) / se
    return z, two_sided_p(z)


def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mann-Whitney U of ``a`` against ``b`` (the number of pairs where a wins, ties
    counting one half) and its two-sided p-value: normal approximation with tie
    correction and continuity correction."""
    return mann_whitney_counts(Counter(a), Counter(b))


def mann_whitney_counts(a: Mapping[float, int], b: Mapping[float, int]) -> tuple[float, float]:
    """``mann_whitney_u`` over value -> count maps (what a score histogram holds)."""
    n_a, n_b = sum(a.values()), sum(b.values())
    if n_a <= 0 or n_b <= 0:
        raise ValueError("both samples need at least one value")
    rank_sum_a, tie_term, below = 0.0, 0.0, 0
    for value in sorted(set(a) | set(b)):
        count_a, tied = a.get(value, 0), a.get(value, 0) + b.get(value, 0)
        rank_sum_a += count_a * (below + (tied + 1) / 2)
        tie_term += tied**3 - tied
        below += tied
    u = rank_sum_a - n_a * (n_a + 1) / 2
    n = n_a + n_b
    variance = n_a * n_b / 12 * ((n + 1) - tie_term / (n * (n - 1))) if n > 1 else 0.0
    if variance <= 0:
        return u, 1.0
    z = max(0.0, abs(u - n_a * n_b / 2) - 0.5) / math.sqrt(variance)
    return u, min(1.0, two_sided_p(z))


def sample_ratio_p(treatment_n: int, total: int, treatment_share: float) -> float:
    """Two-sided p-value of the observed split under the planned share."""
    if total == 0 or treatment_share in (0.0, 1.0):
        return 1.0
    expected = total * treatment_share
    z = (treatment_n - expected) / math.sqrt(expected * (1 - treatment_share))
    return two_sided_p(z)


@dataclass(frozen=True)
class Evidence:
    """The two tests on one tally and what they say."""

    z: float
    p_pass: float
    u: float
    p_scores: float
    effect: float
    scores_lower: bool
    p_split: float

    def better(self, alpha: float) -> bool:
        return self.p_pass < alpha and self.effect > 0

    def worse(self, alpha: float) -> bool:
        pass_worse = self.p_pass < alpha and self.effect < 0
        return pass_worse or (self.p_scores < alpha and self.scores_lower)


def evidence(tally: ExperimentTally, treatment_share: float = 0.5) -> Evidence:
    c, t = tally.control, tally.treatment
    z, p_pass = two_proportion_z_test(t.passes, t.n, c.passes, c.n)
    u, p_scores = mann_whitney_counts(t.score_counts(), c.score_counts())
    return Evidence(
        z=z,
        p_pass=p_pass,
        u=u,
        p_scores=p_scores,
        effect=t.pass_rate - c.pass_rate,
        scores_lower=u < t.n * c.n / 2,
        p_split=sample_ratio_p(t.n, tally.total, treatment_share),
    )


def look_points(max_total: int, looks: int) -> tuple[int, ...]:
    """The totals (both arms) at which the data are tested."""
    return tuple(math.ceil(max_total * k / looks) for k in range(1, looks + 1))


def conclude(
    tally: ExperimentTally,
    *,
    min_samples: int,
    alpha: float,
    experiment_id: str,
    proposal_id: str,
    now: datetime,
    event_id: str,
    max_total: int | None = None,
    looks: int = 5,
    treatment_share: float = 0.5,
    config_version: int = 0,
) -> ExperimentConcluded | None:
    """The experiment's decision, or None while it should keep running.

    The data are tested when the total number of verdicts reaches one of ``looks``
    evenly spaced points up to ``max_total`` (default ``10 * min_samples``), each
    test at ``alpha / looks``, and only once both arms hold ``min_samples``:

    - **rollback** as soon as the treatment is significantly worse on pass rate or
      on scores;
    - **promote** as soon as its pass rate is significantly higher (and its scores
      are not significantly lower);
    - at ``max_total``, with neither: **rollback** when the treatment's pass rate is
      not above control's, **inconclusive** when it is above but not significantly
      (the live config stays; the proposal may be rerun with a larger cap);
    - **inconclusive** at any look when the split is far from ``treatment_share``
      (the assignment is broken) or when an arm is still short of ``min_samples``
      at the cap.

    Call it after every observed verdict; stop at its first decision.
    """
    cap = max_total if max_total is not None else 10 * min_samples
    if looks < 1 or cap < 1 or min_samples < 1 or not 0 < alpha < 1:
        raise ValueError("need looks, max_total and min_samples >= 1 and 0 < alpha < 1")
    final = tally.total >= cap
    if not final and tally.total not in look_points(cap, looks):
        return None
    outcome = _decide(tally, min_samples, alpha / looks, final, treatment_share)
    if outcome is None:
        return None
    decision, reason = outcome
    return _concluded(
        tally, decision, reason, experiment_id, proposal_id, now, event_id, config_version
    )


def _decide(
    tally: ExperimentTally, min_samples: int, alpha: float, final: bool, share: float
) -> tuple[Decision, str] | None:
    smallest = min(tally.control.n, tally.treatment.n)
    if smallest < min_samples:
        reason = f"an arm has {smallest} verdicts at the cap, fewer than {min_samples}"
        return ("inconclusive", reason) if final else None
    ev = evidence(tally, share)
    stats = _stats(tally, ev, alpha)
    if ev.p_split < SRM_ALPHA:
        return "inconclusive", f"sample ratio mismatch (p={ev.p_split:.2g}); {stats}"
    if ev.worse(alpha):
        return "rollback", f"treatment is significantly worse; {stats}"
    if ev.better(alpha):
        return "promote", f"treatment passes significantly more often; {stats}"
    if not final:
        return None
    if ev.effect <= 0:
        return "rollback", f"treatment not better by the end; {stats}"
    return "inconclusive", f"treatment better but not significantly by the end; {stats}"


def _stats(tally: ExperimentTally, ev: Evidence, alpha: float) -> str:
    c, t = tally.control, tally.treatment
    return (
        f"pass rate {t.pass_rate:.1%} vs {c.pass_rate:.1%} (z={ev.z:.2f}, p={ev.p_pass:.3g}), "
        f"scores p={ev.p_scores:.3g}, tested at alpha={alpha:.3g}"
    )


def _concluded(
    tally: ExperimentTally,
    decision: Decision,
    reason: str,
    experiment_id: str,
    proposal_id: str,
    now: datetime,
    event_id: str,
    config_version: int,
) -> ExperimentConcluded:
    c, t = tally.control, tally.treatment
    ev = evidence(tally) if c.n and t.n else None
    return ExperimentConcluded(
        event_id=event_id,
        request_id=experiment_id,
        occurred_at=now,
        config_version=config_version,
        experiment_id=experiment_id,
        proposal_id=proposal_id,
        control_n=c.n,
        control_passes=c.passes,
        treatment_n=t.n,
        treatment_passes=t.passes,
        control_mean_score=round(c.mean_score, 6),
        treatment_mean_score=round(t.mean_score, 6),
        effect_size=round(t.pass_rate - c.pass_rate, 6),
        p_value_pass_rate=ev.p_pass if ev else 1.0,
        p_value_scores=ev.p_scores if ev else 1.0,
        decision=decision,
        reason=reason,
    )
