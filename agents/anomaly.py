"""Anomaly detection on one metric's series of window values, pure and online: a robust
level test (the median and MAD of recent windows, or of the same phase in earlier
cycles when the series has a season) that must hold for consecutive windows, and a
two-sided CUSUM on the standardised residuals for slow drift.

- A **step** moves the level: its residuals pass the robust z threshold window after
  window, and it fires once they have for ``persistence`` windows.
- A **single spike** passes the threshold for one window only: not an incident.
- A **slow drift** hides in the noise window by window; its residuals keep one sign,
  and the CUSUM adds them up until it passes ``cusum_h``.
- A **daily cycle** is the series' normal: with ``season`` set, each window is compared
  with the same phase of the cycles before, so the cycle itself leaves no residual.

Values of an open incident are kept out of the baseline, so an incident does not
become the new normal while it is open; after ``history`` windows it does, and the
incident closes. Numpy is enough for these statistics: a median, a MAD and a running
sum need no detection library (whose models would also have to be replayable).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

MAD_TO_SIGMA = 1.4826
"""The MAD of normal noise times this is its standard deviation..."""
MEAN_AD_TO_SIGMA = 1.2533
"""...as is its mean absolute deviation times this."""

Kind = Literal["level", "drift"]


class DetectorPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    history: int = Field(default=60, ge=4)
    """Windows of recent history the level baseline is taken from."""
    season: int = Field(default=0, ge=0)
    """Windows per cycle (e.g. a day's); 0: the series has no season."""
    cycles: int = Field(default=3, ge=2)
    """Earlier cycles the seasonal baseline is taken from (it starts after two)."""
    min_history: int = Field(default=12, ge=3)
    """Windows seen before anything can fire (two cycles, at least, with a season)."""
    z_threshold: float = Field(default=4.0, gt=0)
    persistence: int = Field(default=3, ge=1)
    """Consecutive windows past the threshold that make an incident."""
    cusum_k: float = Field(default=0.5, ge=0)
    """Slack of the CUSUM, in robust standard deviations per window."""
    cusum_h: float = Field(default=10.0, gt=0)
    min_scale: float = Field(default=1e-6, gt=0)
    """Floor of the robust standard deviation: a flat series has none..."""
    min_relative_scale: float = Field(default=0.01, ge=0)
    """...nor must a change of a few percent of its level be a storm of z-scores."""


@dataclass(frozen=True)
class Finding:
    kind: Kind
    observed: float
    baseline: float
    score: float
    """The robust z of the window (level), or the CUSUM (drift), signed."""


@dataclass(frozen=True)
class SeriesState:
    values: tuple[float, ...] = ()
    """One value per window, oldest first (what baselines are taken from); a window of
    an open incident or past the threshold holds its expected value instead."""
    seen: int = 0
    """Windows observed."""
    beyond: int = 0
    """Consecutive windows past the threshold, in the direction of ``sign``."""
    sign: int = 0
    cusum_up: float = 0.0
    cusum_down: float = 0.0
    open: Kind | None = None
    """The incident in progress, if any."""
    held_out: tuple[float, ...] = ()
    """The open incident's own values, kept out of ``values`` so far: they replace their
    stand-ins if the incident lasts long enough to be the new normal."""


def observe(
    state: SeriesState, value: float, policy: DetectorPolicy
) -> tuple[SeriesState, Finding | None]:
    """Fold one window's value; a ``Finding`` when an incident starts."""
    baseline, scale = _baseline(state, policy)
    state = replace(state, seen=state.seen + 1)
    if baseline is None or state.seen <= max(policy.min_history, 2 * policy.season):
        return _accept(state, value, policy), None
    z = (value - baseline) / max(scale, policy.min_scale, policy.min_relative_scale * abs(baseline))
    state = _count(state, z, policy)
    finding = _finding(state, value, baseline, z, policy)
    if finding is not None:
        state = replace(state, open=finding.kind, held_out=())
    elif state.open is not None and _calm(state, z, policy):
        state = _close(state, adopt=len(state.held_out) >= policy.history)
    return _store(state, value, baseline, z, policy), finding


def _close(state: SeriesState, *, adopt: bool) -> SeriesState:
    """End the open incident. One that lasted long enough is the new normal (``adopt``):
    its values take the place of their stand-ins; otherwise they stay out."""
    values = state.values
    if adopt and 0 < len(state.held_out) <= len(values):
        values = values[: len(values) - len(state.held_out)] + state.held_out
    return replace(state, values=values, open=None, held_out=(), cusum_up=0.0, cusum_down=0.0)


def _count(state: SeriesState, z: float, policy: DetectorPolicy) -> SeriesState:
    sign = 1 if z > 0 else -1
    past = abs(z) >= policy.z_threshold
    beyond = state.beyond + 1 if past and sign == state.sign else (1 if past else 0)
    # The CUSUM only sees bounded residuals: a spike adds at most the threshold.
    bounded = max(-policy.z_threshold, min(policy.z_threshold, z))
    return replace(
        state,
        beyond=beyond,
        sign=sign if past else 0,
        cusum_up=max(0.0, state.cusum_up + bounded - policy.cusum_k),
        cusum_down=max(0.0, state.cusum_down - bounded - policy.cusum_k),
    )


def _finding(
    state: SeriesState, value: float, baseline: float, z: float, policy: DetectorPolicy
) -> Finding | None:
    if state.open is not None:
        return None
    if state.beyond >= policy.persistence:
        return Finding("level", value, baseline, round(z, 3))
    drift = state.cusum_up if state.cusum_up >= state.cusum_down else -state.cusum_down
    if abs(drift) >= policy.cusum_h:
        return Finding("drift", value, baseline, round(drift, 3))
    return None


def _calm(state: SeriesState, z: float, policy: DetectorPolicy) -> bool:
    """The open incident is over: the value is back within half the threshold and the
    drift sums have emptied, or it has lasted long enough to be the new normal."""
    back = abs(z) < policy.z_threshold / 2 and max(state.cusum_up, state.cusum_down) < 1.0
    return back or len(state.held_out) >= policy.history


def _store(
    state: SeriesState, value: float, baseline: float, z: float, policy: DetectorPolicy
) -> SeriesState:
    """Keep the value for later baselines, unless it belongs to the open incident or is
    past the threshold (one outlier must not drag the median): then the expected value
    stands in for it, so every window keeps its place in the cycle."""
    if state.open is not None:
        return _accept(replace(state, held_out=(*state.held_out, value)), baseline, policy)
    if abs(z) >= policy.z_threshold:
        return _accept(state, baseline, policy)
    return _accept(state, value, policy)


def _accept(state: SeriesState, value: float, policy: DetectorPolicy) -> SeriesState:
    keep = max(policy.history, policy.season * policy.cycles)
    return replace(state, values=(*state.values, value)[-keep:])


def _baseline(state: SeriesState, policy: DetectorPolicy) -> tuple[float | None, float]:
    """The expected value of the next window and the robust standard deviation around
    it: the same phase of earlier cycles when the season allows, else recent windows."""
    values = np.asarray(state.values, dtype=np.float64)
    if len(values) < 3:
        return None, 0.0
    season = policy.season
    if season and len(values) >= 2 * season:
        phases = values[-season::-season]  # the same phase, one cycle ago, two, ...
        baseline = float(np.median(phases[: policy.cycles]))
        return baseline, _scale(_seasonal_residuals(values, policy))
    recent = values[-policy.history :]
    return float(np.median(recent)), _scale(recent)


def _seasonal_residuals(values: np.ndarray, policy: DetectorPolicy) -> np.ndarray:
    """Each recent window's distance from its own seasonal baseline (the median of the
    same phase in up to ``cycles`` cycles before it): the noise the test measures."""
    season, n = policy.season, len(values)
    recent = np.arange(max(season, n - policy.history), n)
    earlier = np.full((len(recent), policy.cycles), np.nan)
    for k in range(1, policy.cycles + 1):
        back = recent - k * season
        earlier[back >= 0, k - 1] = values[back[back >= 0]]
    residuals: np.ndarray = values[recent] - np.nanmedian(earlier, axis=1)
    return residuals


def _scale(values: np.ndarray) -> float:
    """A robust standard deviation: the MAD's, or the mean absolute deviation's when it
    is larger (a series of few distinct values, e.g. a pass rate of 17 or 19 in 20, has
    a MAD of zero though it varies)."""
    centred = np.abs(values - np.median(values))
    return max(MAD_TO_SIGMA * float(np.median(centred)), MEAN_AD_TO_SIGMA * float(np.mean(centred)))
