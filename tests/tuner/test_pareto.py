"""The front maths on its own: dominance, ties, NaN, and the speed sentence."""

from __future__ import annotations

import itertools
import math

from hypothesis import given
from hypothesis import strategies as st

from skiptune.storage import FrontRecord
from skiptune.tuner.results import (
    FrontPoint,
    SpeedClaim,
    describe_claim,
    front_flags,
    gain_established,
    gain_text,
    interval_text,
    measured_on,
    pareto_front,
    pareto_mask,
    percent,
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


def _stored(sampler: str, kind: str, nfe: int, value: float, *, key: str = "k",
            group: str = "g") -> FrontRecord:
    return FrontRecord(
        study_group=group, study_name=f"{sampler}-{nfe}", kind=kind, sampler=sampler, nfe=nfe,
        value=value, metric="fd", num_samples=64, seed=0, comparison_key=key,
        model_fingerprint="f", trial_number=0, schedule={"rho_bottom": 0.6},
    )


def test_each_sampler_has_its_own_front_of_tuned_and_baseline_points() -> None:
    records = [
        _stored("heun", "tuned", 5, 20.0), _stored("heun", "baseline", 5, 30.0),
        _stored("heun", "baseline", 9, 25.0), _stored("heun", "tuned", 9, 21.0),
        _stored("ipndm", "tuned", 5, 10.0), _stored("ipndm", "baseline", 5, 12.0),
    ]
    # heun's ρ = 1 at 5 NFE: beaten by heun's tuned point at 5 NFE, so off heun's front.
    # heun at 9 NFE: both worse than heun's tuned 20 at 5 NFE. ipndm's lower values never
    # push heun's points off: heun's tuned 5 NFE stays on heun's front.
    assert front_flags(records) == [True, False, False, False, True, False]


def test_fronts_are_apart_across_groups_and_ways_of_measuring() -> None:
    records = [_stored("heun", "tuned", 5, 20.0), _stored("heun", "baseline", 9, 30.0, key="j"),
               _stored("heun", "baseline", 9, 30.0, group="h")]
    assert front_flags(records) == [True, True, True]


def test_a_claim_that_names_its_sampler_says_so() -> None:
    claim = SpeedClaim(5, 10.0, 9, 12.0, sampler="ipndm")
    assert describe_claim(claim).startswith("ipndm: tuned at 5 NFE matches or beats baseline")


def test_gains_and_intervals_read_as_the_cli_prints_them() -> None:
    assert percent(-0.004) == "0%" and percent(0.07) == "7%"
    assert interval_text(-0.004, 0.021) == "[0%, 2%]"
    assert gain_established(-0.05, 0.14) is False and gain_established(0.01, 0.09) is True
    assert gain_established(None, None) is None
    weak = gain_text(0.07, -0.05, 0.14, level=0.95)
    assert weak == ("gain 7% [-5%, 14%] (95% paired bootstrap): not established, the interval "
                    "includes 0")
    assert gain_text(0.06, 0.01, 0.09) == "gain 6% [1%, 9%] (95% paired bootstrap)"
    assert gain_text(0.06, None, None) == "gain 6%"


def test_a_value_says_the_n_and_seeds_it_was_measured_on() -> None:
    assert measured_on(64, 0) == "N = 64, seeds 0–63"
    assert measured_on(128, 64, validated=True) == "N = 128, seeds 64–191, validated"
