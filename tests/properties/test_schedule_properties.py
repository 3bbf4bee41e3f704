"""Property tests of the schedule maths (hypothesis)."""

from __future__ import annotations

import itertools
import math

from hypothesis import given
from hypothesis import strategies as st

from skiptune import TuningSchedule

rhos = st.floats(min_value=0.0, max_value=3.0, allow_nan=False, allow_infinity=False)
shapes = st.sampled_from(["linear", "power", "cosine"])
gammas = st.floats(min_value=0.1, max_value=5.0, allow_nan=False)
skip_counts = st.integers(min_value=1, max_value=64)


@given(rhos, rhos, shapes, gammas, skip_counts)
def test_factors_run_from_bottom_to_top_and_stay_between(
    bottom: float, top: float, shape: str, gamma: float, n: int
) -> None:
    factors = TuningSchedule(bottom, top, shape=shape, gamma=gamma).factors(n)
    assert len(factors) == n
    assert math.isclose(factors[-1], top, abs_tol=1e-12)
    if n > 1:
        assert math.isclose(factors[0], bottom, abs_tol=1e-12)
    lo, hi = min(bottom, top), max(bottom, top)
    assert all(lo - 1e-12 <= f <= hi + 1e-12 for f in factors)
    # Monotone in the direction from bottom to top.
    steps = [b - a for a, b in itertools.pairwise(factors)]
    assert all(s * (top - bottom) >= -1e-12 for s in steps)


@given(rhos, shapes, gammas, skip_counts)
def test_equal_ends_give_a_constant_schedule(rho: float, shape: str, gamma: float, n: int) -> None:
    assert TuningSchedule(rho, rho, shape=shape, gamma=gamma).factors(n) == [rho] * n


@given(rhos, rhos, skip_counts)
def test_linear_steps_are_equal(bottom: float, top: float, n: int) -> None:
    factors = TuningSchedule(bottom, top).factors(n)
    if n > 1:
        expected = (top - bottom) / (n - 1)
        for a, b in itertools.pairwise(factors):
            assert math.isclose(b - a, expected, abs_tol=1e-9)


@given(rhos, rhos, shapes, gammas)
def test_round_trip(bottom: float, top: float, shape: str, gamma: float) -> None:
    schedule = TuningSchedule(bottom, top, shape=shape, gamma=gamma)
    assert TuningSchedule.from_dict(schedule.to_dict()) == schedule
