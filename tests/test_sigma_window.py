"""σ-window schedules: ρ only while the denoiser's σ lies in [σ_lo, σ_hi], factor 1 outside."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from skiptune.errors import ConfigurationError
from skiptune.models import load_model
from skiptune.sampling import initial_noise, sample
from skiptune.schedule import TuningSchedule
from skiptune.skips import skip_tuning
from tests.tuner.helpers import DEMO


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    torch.set_num_threads(1)
    return load_model(DEMO, device="cpu")


def _images(model, schedule: TuningSchedule) -> torch.Tensor:  # type: ignore[no-untyped-def]
    noise = initial_noise(4, model.noise_shape, seed=0)
    with skip_tuning(model, schedule):
        return sample(model, noise, sampler="heun", nfe=5)


def test_a_window_over_the_whole_range_reproduces_the_schedule_exactly(model) -> None:  # type: ignore[no-untyped-def]
    plain = TuningSchedule(rho_bottom=0.6, rho_top=0.9, shape="cosine")
    whole = dataclasses.replace(plain, sigma_lo=model.sigma_min, sigma_hi=model.sigma_max)
    assert torch.equal(_images(model, whole), _images(model, plain))


def test_a_window_acts_only_inside_it(model) -> None:  # type: ignore[no-untyped-def]
    denoise_fn = model.denoise_fn
    plain = TuningSchedule(rho_bottom=0.4, rho_top=1.0)
    untuned = _images(model, TuningSchedule.identity())
    tuned = _images(model, plain)
    middle = _images(model, dataclasses.replace(plain, sigma_lo=0.5, sigma_hi=5.0))
    assert not torch.equal(middle, tuned) and not torch.equal(middle, untuned)
    # Between σ_min (the grid's last σ > 0) and the σ before it: no denoiser call falls
    # inside, so the factor is 1 throughout, the untuned model bit for bit.
    empty = dataclasses.replace(plain, sigma_lo=model.sigma_min * 1.5,
                                sigma_hi=model.sigma_min * 2)
    assert torch.equal(_images(model, empty), untuned)
    assert model.denoise_fn is denoise_fn                    # the σ tracker is removed


def test_bad_windows_are_one_line_errors(model) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigurationError, match="σ_lo < σ_hi"):
        TuningSchedule(rho_bottom=0.5, sigma_lo=2.0, sigma_hi=1.0)
    with pytest.raises(ConfigurationError, match="both sigma_lo and sigma_hi"):
        TuningSchedule(rho_bottom=0.5, sigma_lo=2.0)
    outside = TuningSchedule(rho_bottom=0.5, sigma_lo=0.1, sigma_hi=model.sigma_max * 10)
    with pytest.raises(ConfigurationError, match="outside the model's σ range"):
        _images(model, outside)


def test_a_schedule_without_a_window_serialises_as_before() -> None:
    plain = TuningSchedule(rho_bottom=0.5)
    assert set(plain.to_dict()) == {"rho_bottom", "rho_top", "shape", "gamma"}
    windowed = dataclasses.replace(plain, sigma_lo=0.2, sigma_hi=3.0)
    assert TuningSchedule.from_dict(windowed.to_dict()) == windowed
