"""Seeded initial noise: the same global sample index always gets the same noise."""

from __future__ import annotations

import pytest
import torch

from skiptune.errors import ConfigurationError
from skiptune.sampling import initial_noise

SHAPE = (1, 4, 3)


def test_batch_splits_give_the_same_noise_bit_for_bit() -> None:
    whole = initial_noise(10, SHAPE, seed=1234)
    split = torch.cat(
        [initial_noise(4, SHAPE, seed=1234, start=0), initial_noise(6, SHAPE, seed=1234, start=4)]
    )
    assert torch.equal(whole, split)
    assert torch.equal(whole[7:8], initial_noise(1, SHAPE, seed=1234, start=7))


def test_sample_j_is_drawn_from_its_own_generator_seeded_seed_plus_j() -> None:
    noise = initial_noise(3, SHAPE, seed=50, start=2)
    expected = torch.randn(SHAPE, generator=torch.Generator().manual_seed(54))
    assert torch.equal(noise[2], expected)


def test_noise_is_unit_gaussian_and_differs_between_samples_and_seeds() -> None:
    noise = initial_noise(64, (3, 8, 8), seed=0)
    assert noise.shape == (64, 3, 8, 8)
    assert noise.dtype == torch.float32
    assert abs(noise.mean().item()) < 0.05
    assert abs(noise.std().item() - 1) < 0.05
    assert not torch.equal(noise[0], noise[1])
    assert not torch.equal(noise[:1], initial_noise(1, (3, 8, 8), seed=1))


def test_dtype_changes_only_the_precision() -> None:
    single = initial_noise(5, SHAPE, seed=3)
    double = initial_noise(5, SHAPE, seed=3, dtype=torch.float64)
    assert double.dtype == torch.float64
    assert torch.equal(double.float(), single)


@pytest.mark.parametrize(
    ("num_samples", "shape", "kwargs"),
    [
        (-1, SHAPE, {"seed": 0}),
        (2, SHAPE, {"seed": -1}),
        (2, SHAPE, {"seed": 0, "start": -4}),
        (2, SHAPE, {"seed": 2**63}),
        (2, (0, 4), {"seed": 0}),
        (2, (), {"seed": 0}),
    ],
)
def test_bad_arguments_are_configuration_errors(
    num_samples: int, shape: tuple[int, ...], kwargs: dict[str, int]
) -> None:
    with pytest.raises(ConfigurationError):
        initial_noise(num_samples, shape, **kwargs)
