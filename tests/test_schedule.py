"""The ρ schedule: the paper's formula, the shapes, the ordering, and bad values."""

from __future__ import annotations

import itertools
import math

import pytest

from skiptune import ConfigurationError, TuningSchedule
from skiptune.schedule import interpolation_weights


def test_linear_is_the_papers_formula_bottom_to_top() -> None:
    schedule = TuningSchedule(rho_bottom=0.55, rho_top=1.0)
    factors = schedule.factors(9)
    k = 8
    assert factors == [0.55 + i * (1.0 - 0.55) / k for i in range(9)]
    assert factors[0] == 0.55  # deepest skip
    assert factors[-1] == 1.0  # shallowest skip
    assert all(a < b for a, b in itertools.pairwise(factors))


def test_single_skip_gets_rho_top() -> None:
    assert TuningSchedule(0.5, 0.9).factors(1) == [0.9]
    assert TuningSchedule(0.5, 0.9, shape="cosine").factors(1) == [0.9]


@pytest.mark.parametrize("shape", ["linear", "power", "cosine"])
def test_every_shape_runs_from_bottom_to_top(shape: str) -> None:
    factors = TuningSchedule(0.4, 1.1, shape=shape, gamma=2.0).factors(16)
    assert factors[0] == pytest.approx(0.4)
    assert factors[-1] == pytest.approx(1.1)
    assert factors == sorted(factors)


def test_power_and_cosine_bend_the_line() -> None:
    linear = TuningSchedule(0.5, 1.0).factors(5)
    convex = TuningSchedule(0.5, 1.0, shape="power", gamma=2.0).factors(5)
    concave = TuningSchedule(0.5, 1.0, shape="power", gamma=0.5).factors(5)
    cosine = TuningSchedule(0.5, 1.0, shape="cosine").factors(5)
    assert convex[2] == pytest.approx(0.5 + 0.25 * 0.5)
    assert concave[2] == pytest.approx(0.5 + math.sqrt(0.5) * 0.5)
    assert cosine[2] == pytest.approx(linear[2])  # the ease is symmetric about the middle
    assert cosine[1] < linear[1] and cosine[3] > linear[3]
    assert TuningSchedule(0.5, 1.0, shape="power", gamma=1.0).factors(7) == pytest.approx(
        TuningSchedule(0.5, 1.0).factors(7)
    )


def test_identity_gives_exact_ones() -> None:
    assert TuningSchedule.identity().factors(15) == [1.0] * 15
    assert TuningSchedule.identity().is_identity


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rho_bottom": -0.1},
        {"rho_bottom": float("nan")},
        {"rho_bottom": 0.5, "rho_top": float("inf")},
        {"rho_bottom": 0.5, "shape": "sigmoid"},
        {"rho_bottom": 0.5, "shape": "power", "gamma": 0.0},
        {"rho_bottom": 0.5, "gamma": float("nan")},
    ],
)
def test_bad_values_are_clear_errors(kwargs: dict) -> None:
    with pytest.raises(ConfigurationError) as info:
        TuningSchedule(**kwargs)
    assert "\n" not in str(info.value)


def test_bad_skip_count_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="at least one skip"):
        TuningSchedule(0.5).factors(0)
    with pytest.raises(ConfigurationError, match="unknown schedule shape"):
        interpolation_weights(3, shape="zigzag")


def test_round_trip_through_a_dict() -> None:
    schedule = TuningSchedule(0.6, 0.95, shape="power", gamma=1.5)
    assert TuningSchedule.from_dict(schedule.to_dict()) == schedule
    with pytest.raises(ConfigurationError, match="rho_bottom"):
        TuningSchedule.from_dict({"rho_top": 1.0})
    with pytest.raises(ConfigurationError, match="unknown schedule keys"):
        TuningSchedule.from_dict({"rho_bottom": 0.5, "rho": 7})
