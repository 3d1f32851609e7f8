"""Finding a system's sustainable rate: the sweep's grid, extended geometrically until the
system fails, and the bisection that narrows the last held and first failed rates.

Pure decisions: the caller measures each probed rate and says whether the system held.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bracket:
    """What is known of the sustainable rate: ``held`` is the highest rate that held (0 when
    none did), ``failed`` the lowest rate that did not (None when none failed yet)."""

    held: float = 0.0
    failed: float | None = None

    def after(self, rate: float, *, kept_up: bool) -> Bracket:
        """The bracket once ``rate`` was measured (a result outside it changes nothing)."""
        if kept_up:
            return Bracket(max(self.held, rate), self.failed)
        if self.failed is None or rate < self.failed:
            return Bracket(self.held, rate)
        return self


def next_probe(bracket: Bracket, *, tolerance: float, floor: float = 1.0) -> float | None:
    """The next rate to measure, or None once the sustainable rate is known well enough:
    ``failed`` within ``tolerance`` (relative) above ``held``; no failure to narrow towards;
    or nothing held and half the failed rate would be below ``floor``."""
    if bracket.failed is None:
        return None
    if bracket.held <= 0:
        half = bracket.failed / 2
        return half if half >= floor else None
    if bracket.failed <= bracket.held * (1 + tolerance):
        return None
    return (bracket.held + bracket.failed) / 2


def converged(bracket: Bracket, *, tolerance: float) -> bool:
    """Whether ``held`` is the sustainable rate to within ``tolerance``."""
    return bracket.failed is not None and bracket.failed <= bracket.held * (1 + tolerance)


def sweep_rates(grid: list[float], *, cap: float, factor: float = 2.0) -> list[float]:
    """The grid in increasing order up to ``cap``, then ``factor`` times its last rate, and
    so on, ending at ``cap``: a sweep that only stops when the system fails (or at the cap)."""
    if factor <= 1:
        raise ValueError(f"factor must be above 1, got {factor}")
    rates = sorted(r for r in set(grid) if 0 < r <= cap)
    last = rates[-1] if rates else cap
    while last < cap:
        last = min(cap, last * factor)
        rates.append(last)
    return rates or [cap]
