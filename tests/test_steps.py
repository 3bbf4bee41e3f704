"""The step grid: three numbers that describe where a sampler's steps go, stored with ρ."""

from __future__ import annotations

import json

import pytest

from skiptune.errors import ConfigurationError
from skiptune.schedule import TuningSchedule
from skiptune.steps import StepGrid


def test_a_grid_round_trips_through_the_schedule_dict() -> None:
    grid = StepGrid(schedule_exponent=4.5, sigma_min=0.01, sigma_max=60.0)
    schedule = TuningSchedule(rho_bottom=0.6, steps=grid)
    data = json.loads(json.dumps(schedule.to_dict()))
    assert data["steps"] == {"schedule_exponent": 4.5, "sigma_min": 0.01, "sigma_max": 60.0}
    assert TuningSchedule.from_dict(data) == schedule
    assert schedule.samples_alone and not TuningSchedule(rho_bottom=0.6).samples_alone


def test_a_schedule_without_a_grid_is_stored_as_before() -> None:
    # Stored ρ-only schedules (and the identities hashed from them) must not change.
    assert TuningSchedule(rho_bottom=0.6).to_dict() == {
        "rho_bottom": 0.6, "rho_top": 1.0, "shape": "linear", "gamma": 1.0}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ((7.0, 0.5, 0.5), "0 < sigma_min < sigma_max"),
        ((7.0, 80.0, 0.002), "0 < sigma_min < sigma_max"),
        ((0.0, 0.002, 80.0), "schedule_exponent > 0"),
        ((7.0, float("nan"), 80.0), "finite"),
        ((7.0, 0.0, 80.0), "0 < sigma_min"),
    ],
)
def test_bad_grids_are_refused(values: tuple[float, float, float], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        StepGrid(*values)


def test_a_grid_must_lie_in_the_models_range() -> None:
    grid = StepGrid(7.0, 0.002, 80.0)
    assert grid.check_inside((0.002, 80.0)) is grid
    with pytest.raises(ConfigurationError, match=r"outside the model's σ range 0\.01 … 80"):
        StepGrid(7.0, 0.002, 80.0).check_inside((0.01, 80.0))


@pytest.mark.parametrize("data", [{"schedule_exponent": 7.0}, {"schedule_exponent": 7.0,
                                  "sigma_min": 0.1, "sigma_max": 2.0, "rho": 1},
                                  {"schedule_exponent": "x", "sigma_min": 0.1, "sigma_max": 2.0}])
def test_a_mangled_stored_grid_is_one_clear_error(data: dict) -> None:
    with pytest.raises(ConfigurationError, match="step grid"):
        TuningSchedule.from_dict({"rho_bottom": 1.0, "steps": data})
