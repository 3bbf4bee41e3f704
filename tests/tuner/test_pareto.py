"""The front maths on its own: dominance, ties, NaN, and the speed sentence."""

from __future__ import annotations

import itertools
import math

from hypothesis import given
from hypothesis import strategies as st

from skiptune.tuner.results import (
    FrontPoint,
    describe_claim,
    pareto_front,
    pareto_mask,
    speed_claims,
)


def test_front_keeps_points_no_other_point_dominates() -> None:
    points = [FrontPoint(9, 20.0), FrontPoint(15, 12.0), FrontPoint(15, 14.0),
              FrontPoint(25, 12.0), FrontPoint(5, 40.0), FrontPoint(35, 8.0)]
    assert pareto_mask(points) == [True, True, False, False, True, True]
    assert pareto_front(points) == [FrontPoint(5, 40.0), FrontPoint(9, 20.0),
                                    FrontPoint(15, 12.0), FrontPoint(35, 8.0)]


def test_equal_points_both_stay_and_nan_never_does() -> None:
    points = [FrontPoint(9, 10.0), FrontPoint(9, 10.0), FrontPoint(3, math.nan)]
    assert pareto_mask(points) == [True, True, False]
    assert pareto_front([]) == []


def test_a_point_worse_in_one_and_equal_in_the_other_is_dominated() -> None:
    assert pareto_mask([FrontPoint(9, 10.0), FrontPoint(9, 11.0)]) == [True, False]
    assert pareto_mask([FrontPoint(9, 10.0), FrontPoint(11, 10.0)]) == [True, False]


@given(st.lists(st.tuples(st.integers(1, 50), st.floats(0, 100, allow_nan=False)), max_size=12))
def test_front_is_exactly_the_non_dominated_set(pairs: list[tuple[int, float]]) -> None:
    points = [FrontPoint(n, v) for n, v in pairs]
    mask = pareto_mask(points)
    for p, on in zip(points, mask, strict=True):
        dominated = any(
            q.nfe <= p.nfe and q.value <= p.value and (q.nfe, q.value) != (p.nfe, p.value)
            for q in points
        )
        assert on == (not dominated)
    front = pareto_front(points)
    # Along the front, more NFE must buy a strictly lower value.
    for a, b in itertools.pairwise(front):
        assert (a.nfe < b.nfe and a.value > b.value) or (a.nfe, a.value) == (b.nfe, b.value)


def test_speed_claim_names_the_largest_baseline_budget_matched() -> None:
    tuned = [FrontPoint(9, 11.0), FrontPoint(15, 8.0)]
    baseline = [FrontPoint(9, 30.0), FrontPoint(15, 12.0), FrontPoint(25, 11.5),
                FrontPoint(35, 10.0)]
    claims = speed_claims(tuned, baseline)
    assert [(c.tuned_nfe, c.baseline_nfe) for c in claims] == [(9, 25), (15, 35)]
    assert describe_claim(claims[0]) == (
        "tuned at 9 NFE matches or beats baseline at 25 NFE (64% fewer evaluations)"
    )
    assert describe_claim(speed_claims([FrontPoint(9, 5.0)], [FrontPoint(15, 5.0)])[0]) == (
        "tuned at 9 NFE matches or beats baseline at 15 NFE (40% fewer evaluations)"
    )


def test_no_claim_without_a_beaten_baseline_at_a_higher_budget() -> None:
    assert speed_claims([FrontPoint(9, 11.0)], [FrontPoint(9, 30.0), FrontPoint(15, 10.0)]) == []
    assert speed_claims([FrontPoint(9, math.nan)], [FrontPoint(15, 10.0)]) == []
