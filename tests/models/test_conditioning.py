"""The conditioning contract: per-seed conditions, bound into sampling, refused when unused."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import torch
from torch import nn

from skiptune.errors import ConfigurationError
from skiptune.models._base import TunableModel, apply_conditioning
from skiptune.sampling import initial_noise, sample

SHAPE = (1, 4, 4)
NUM_CLASSES = 5


class SeededClasses:
    """One class per seed, drawn from a generator of its own; ``classes`` narrows the choice."""

    def __init__(self, classes: Sequence[int] = tuple(range(NUM_CLASSES))) -> None:
        self.classes = list(classes)

    @property
    def identity(self) -> dict[str, Any]:
        return {"classes": self.classes}

    def __call__(self, seeds: Sequence[int]) -> torch.Tensor:
        picks = [
            self.classes[int(torch.randint(len(self.classes), (), generator=torch.Generator()
                                           .manual_seed(10_000 + seed)))]
            for seed in seeds
        ]
        return torch.eye(NUM_CLASSES)[picks]

    def with_options(self, options: Mapping[str, Any]) -> SeededClasses:
        return SeededClasses(options["class_labels"])


class ClassShift(nn.Module):
    """The exact denoiser of data y ~ N(c, I) for class c: the images say which class arrived."""

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        mean = labels.argmax(dim=1).to(x.dtype).view(-1, 1, 1, 1)
        variance = sigma.view(-1, 1, 1, 1) ** 2
        return (x + variance * mean) / (1 + variance)


def conditional_model() -> TunableModel:
    net = ClassShift()
    received: list[torch.Tensor] = []

    def denoise_fn(
        x: torch.Tensor, sigma: torch.Tensor, *, condition: torch.Tensor
    ) -> torch.Tensor:
        received.append(condition)
        return net(x, sigma, condition)

    model = TunableModel(
        net=net, denoise_fn=denoise_fn, skip_sites=(), image_shape=SHAPE, sigma_min=0.002,
        sigma_max=80.0, fingerprint="0" * 64, family="test", conditioner=SeededClasses(),
    )
    model.metadata["received"] = received
    return model


def test_condition_for_depends_on_each_seed_alone() -> None:
    model = conditional_model()
    whole = model.condition_for(range(100, 108))
    halves = torch.cat([model.condition_for(range(100, 104)), model.condition_for([104, 105])])
    halves = torch.cat([halves, model.condition_for([106, 107])])
    assert torch.equal(whole, halves)
    assert whole.shape == (8, NUM_CLASSES)
    # Over many seeds every class is drawn: uniform, not constant.
    drawn = model.condition_for(range(200)).argmax(dim=1)
    assert set(drawn.tolist()) == set(range(NUM_CLASSES))


def test_unconditional_model_has_no_condition_and_keeps_its_two_argument_denoiser() -> None:
    calls = []

    def denoise_fn(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:   # no condition=
        calls.append(x.shape[0])
        return x

    model = TunableModel(net=nn.Identity(), denoise_fn=denoise_fn, skip_sites=(),
                         image_shape=SHAPE, sigma_min=0.002, sigma_max=80.0,
                         fingerprint="0" * 64, family="test")
    assert model.condition_for([0, 1]) is None
    sample(model, initial_noise(2, SHAPE, seed=0), sampler="euler", nfe=3,
           condition=model.condition_for([0, 1]))
    assert calls == [2, 2, 2]


def test_sample_binds_the_condition_into_every_denoiser_call() -> None:
    model = conditional_model()
    seeds = range(3)
    condition = model.condition_for(seeds)
    noise = initial_noise(3, SHAPE, seed=0)
    images = sample(model, noise, sampler="heun", nfe=99, condition=condition)
    received = model.metadata["received"]
    assert len(received) == 99 and all(torch.equal(c, condition) for c in received)
    # The flow of N(c, I) data carries x = σ_max·n to c + (σ_max·n − c)/√((1 + σ_max²)(1 + σ_min²)).
    classes = condition.argmax(dim=1).float().view(-1, 1, 1, 1)
    expected = classes + (80.0 * noise - classes) / ((1 + 80.0**2) * (1 + 0.002**2)) ** 0.5
    torch.testing.assert_close(images, expected, rtol=0, atol=0.02)   # classes are 1 apart


def test_condition_rows_must_match_the_noise() -> None:
    model = conditional_model()
    with pytest.raises(ConfigurationError, match="3 rows but the noise 2 samples"):
        sample(model, initial_noise(2, SHAPE, seed=0), sampler="euler", nfe=2,
               condition=model.condition_for(range(3)))


def test_user_choices_narrow_the_conditions_and_unconditional_models_refuse_them() -> None:
    model = apply_conditioning(conditional_model(), {"class_labels": [3]})
    assert model.condition_for(range(20)).argmax(dim=1).tolist() == [3] * 20
    assert model.conditioner.identity == {"classes": [3]}
    plain = TunableModel(net=nn.Identity(), denoise_fn=lambda x, s: x, skip_sites=(),
                         image_shape=SHAPE, sigma_min=0.002, sigma_max=80.0,
                         fingerprint="0" * 64, family="test", source="plain.pt")
    with pytest.raises(ConfigurationError, match=r"'plain\.pt' is unconditional.*class_labels"):
        apply_conditioning(plain, {"class_labels": [3]})
