"""The search for a sustainable rate: the extended sweep grid and the bisection decision."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from streams.bench.search import Bracket, converged, next_probe, sweep_rates


def search(
    holds: Callable[[float], bool], bracket: Bracket, tolerance: float = 0.05
) -> tuple[Bracket, list[float]]:
    """Bisect as the bench does, with ``holds`` saying whether a probed rate held."""
    probed: list[float] = []
    while (rate := next_probe(bracket, tolerance=tolerance)) is not None:
        assert len(probed) < 60, "the bisection does not converge"
        probed.append(rate)
        bracket = bracket.after(rate, kept_up=holds(rate))
    return bracket, probed


@pytest.mark.parametrize("true_rate", [101.0, 537.0, 1399.0, 4321.5])
@pytest.mark.parametrize("tolerance", [0.05, 0.01, 0.2])
def test_bisection_converges_to_within_the_tolerance(true_rate: float, tolerance: float) -> None:
    bracket, probed = search(lambda r: r <= true_rate, Bracket(100, 20_000), tolerance)
    assert bracket.failed is not None
    assert bracket.held <= true_rate < bracket.failed <= bracket.held * (1 + tolerance)
    assert converged(bracket, tolerance=tolerance)
    assert all(100 < r < 20_000 for r in probed), "every probe lies inside the bracket"


def test_probes_halve_the_bracket() -> None:
    _, probed = search(lambda r: r <= 700, Bracket(400, 1000))
    assert probed[:3] == [700.0, 850.0, 775.0]
    assert len(probed) == 5  # (1000 - 400) / 2**5 < 5% of 700


def test_a_narrow_bracket_needs_no_probe() -> None:
    assert next_probe(Bracket(1000, 1040), tolerance=0.05) is None
    assert next_probe(Bracket(1000, 1060), tolerance=0.05) == 1030


def test_without_a_failure_there_is_nothing_to_bisect() -> None:
    assert next_probe(Bracket(1400, None), tolerance=0.05) is None
    assert not converged(Bracket(1400, None), tolerance=0.05)


def test_when_nothing_held_the_failed_rate_is_halved_down_to_the_floor() -> None:
    bracket, probed = search(lambda r: r <= 30, Bracket(0, 200))
    assert probed[:3] == [100.0, 50.0, 25.0]
    assert bracket.failed is not None
    assert bracket.held <= 30 < bracket.failed
    never, halvings = search(lambda _: False, Bracket(0, 8))
    assert halvings == [4.0, 2.0, 1.0]
    assert never == Bracket(0, 1.0)


def test_a_result_outside_the_bracket_changes_nothing_it_should_not() -> None:
    bracket = Bracket(400, 800)
    assert bracket.after(300, kept_up=True) == bracket
    assert bracket.after(900, kept_up=False) == bracket
    assert bracket.after(500, kept_up=True) == Bracket(500, 800)
    assert bracket.after(600, kept_up=False) == Bracket(400, 600)
    assert Bracket().after(100, kept_up=False) == Bracket(0, 100)


def test_the_sweep_extends_the_grid_geometrically_up_to_the_cap() -> None:
    assert sweep_rates([100, 200, 1400], cap=20_000) == [
        100,
        200,
        1400,
        2800,
        5600,
        11200,
        20_000,
    ]
    assert sweep_rates([50, 200], cap=3200, factor=4) == [50, 200, 800, 3200]


def test_the_sweep_keeps_the_grid_below_the_cap_in_order() -> None:
    assert sweep_rates([400, 100, 100, 900], cap=500) == [100, 400, 500]
    assert sweep_rates([], cap=300) == [300]
    with pytest.raises(ValueError, match="factor"):
        sweep_rates([100], cap=1000, factor=1.0)
