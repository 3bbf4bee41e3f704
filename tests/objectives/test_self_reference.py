"""``--ref self``: the spec, the statistics of the model's own samples, their cache and seeds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import skiptune.objectives._samples as samples
import skiptune.objectives._self_reference as self_reference
from skiptune.errors import ConfigurationError
from skiptune.models import TunableModel
from skiptune.objectives import (
    DirectoryStatisticsCache,
    ObjectiveConfig,
    ObjectiveSettings,
    build_objective,
    gaussian_statistics,
    load_reference,
)
from skiptune.objectives._features import DigitFeatureExtractor
from skiptune.objectives._self_reference import (
    SELF_REFERENCE_SEED,
    SelfReferenceSpec,
    parse_self_reference,
)
from skiptune.sampling import initial_noise, sample
from skiptune.tuner import ReferenceSampled, SearchConfig, ValidationSettings, search

DEMO = Path(__file__).resolve().parents[2] / "skiptune" / "assets" / "demo_unet.pt"
SMALL = "self:heun:7:64"


@pytest.mark.parametrize(("text", "expected"), [
    ("self", SelfReferenceSpec(sampler="heun", nfe=None, num_samples=None)),
    ("self:euler:12", SelfReferenceSpec(sampler="euler", nfe=12, num_samples=None)),
    ("self:heun:7:64", SelfReferenceSpec(sampler="heun", nfe=7, num_samples=64)),
])
def test_specs_parse(text: str, expected: SelfReferenceSpec) -> None:
    assert parse_self_reference(text) == expected


def test_default_sample_count_gives_a_full_rank_covariance() -> None:
    assert SelfReferenceSpec().samples_for(128) == 1024           # digit features
    assert SelfReferenceSpec().samples_for(2048) == 2049          # Inception: D + 1
    assert SelfReferenceSpec(num_samples=64).samples_for(2048) == 64


@pytest.mark.parametrize(("text", "message"), [
    ("self:heun", r"must read self, self:SAMPLER:NFE or self:SAMPLER:NFE:N"),
    ("self:heun:7:64:1", r"must read self"),
    ("self:heun:8", r"nearest budgets it can meet are 7 and 9"),
    ("self:warp:9", r"unknown sampler 'warp'; choose one of"),
    ("self:heun:many", r"has NFE 'many', not a whole number ≥ 1"),
    ("self:heun:7:1", r"has N '1', not a whole number ≥ 2"),
])
def test_bad_specs_are_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_self_reference(text)
    with pytest.raises(ConfigurationError, match=message):       # before any model is loaded
        ObjectiveSettings(reference=text)


def test_load_reference_sends_self_to_build_objective(digits: DigitFeatureExtractor) -> None:
    with pytest.raises(ConfigurationError, match="need the model; pass it to build_objective"):
        load_reference("self", digits)


def test_statistics_are_those_of_the_models_own_samples(
    demo_model: TunableModel, digits: DigitFeatureExtractor, tmp_path: Path
) -> None:
    config = ObjectiveConfig(sampler="heun", nfe=5, reference=SMALL, rungs=(8,), batch_size=24)
    progress: list[tuple[str, int, int]] = []
    objective = build_objective(demo_model, config, cache=DirectoryStatisticsCache(tmp_path),
                                on_reference=lambda *told: progress.append(told))
    # By hand: the same seeds from 2**62, Heun at 7 NFE, ρ = 1, in one batch.
    noise = initial_noise(64, demo_model.noise_shape, seed=SELF_REFERENCE_SEED)
    features = digits(sample(demo_model, noise, sampler="heun", nfe=7))
    mu, sigma = gaussian_statistics(np.asarray(features, dtype=np.float64))
    np.testing.assert_allclose(objective.reference.mu, mu, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(objective.reference.sigma, sigma, rtol=1e-5, atol=1e-6)
    assert objective.reference.count == 64
    # A first batch of 8 (the time estimate comes soon), then batches of 24: memory bounded
    # by the batch, progress told after each.
    assert progress == [(SMALL, 0, 64), (SMALL, 8, 64), (SMALL, 32, 64), (SMALL, 56, 64),
                        (SMALL, 64, 64)]
    assert objective.identity["self_reference"]["spec"] == SMALL
    assert objective.identity["self_reference"]["seed"] == SELF_REFERENCE_SEED


def test_another_spec_is_another_measurement(
    demo_model: TunableModel, tmp_path: Path
) -> None:
    cache = DirectoryStatisticsCache(tmp_path)
    identities = [
        build_objective(demo_model, ObjectiveConfig(sampler="heun", nfe=5, reference=spec,
                                                    rungs=(8,)), cache=cache).identity
        for spec in ("self:heun:7:32", "self:heun:7:33", "self:euler:7:32")
    ]
    keys = {i["self_reference"]["statistics_key"] for i in identities}
    assert len(keys) == 3
    assert len({i["reference_identity"] for i in identities}) == 3


def test_a_one_step_generators_own_samples_are_another_reference(
    demo_model: TunableModel, tmp_path: Path
) -> None:
    """The same weights as a one-step generator (load_model's one_step_sigma) sample other
    images: their statistics must not be found under the diffusion model's key."""
    generator = dataclasses.replace(demo_model,
                                    metadata={**demo_model.metadata, "one_step_sigma": 2.5})
    cache = DirectoryStatisticsCache(tmp_path)
    config = ObjectiveConfig(sampler="heun", nfe=5, reference="self:heun:7:32", rungs=(8,))
    keys = {build_objective(model, config, cache=cache).identity["self_reference"]
            ["statistics_key"] for model in (demo_model, generator)}
    assert len(keys) == 2


@pytest.mark.slow
def test_a_search_samples_the_reference_once_and_resumes_from_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[int] = []
    original = samples.sampled_images        # what the self-reference imports when it samples

    def counting(*args: object, **kwargs: int) -> torch.Tensor:
        drawn.append(kwargs["count"])
        assert kwargs["seed"] == SELF_REFERENCE_SEED
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(samples, "sampled_images", counting)
    config = SearchConfig(nfe=[3, 5], trials=2,
                          objective=ObjectiveSettings(rungs=(16,), reference=SMALL),
                          validation=ValidationSettings(num_samples=16))
    events: list[object] = []
    db = tmp_path / "studies.db"
    first = search(DEMO, config, db=db, device="cpu", on_event=events.append)
    assert [s.finished for s in first] == [2, 2]
    assert all(s.baseline_value is not None and np.isfinite(s.baseline_value) for s in first)
    # Two studies, one reference: 64 samples drawn once, and said so.
    assert sum(drawn) == 64
    told = [e for e in events if isinstance(e, ReferenceSampled)]
    assert told[0].done == 0 and told[-1].done == told[-1].total == 64
    assert {e.source for e in told} == {SMALL}

    again = search(DEMO, SearchConfig(nfe=[3, 5], trials=3, objective=config.objective,
                                      validation=config.validation), db=db, device="cpu",
                   on_event=events.append)
    assert [s.finished for s in again] == [3, 3]
    assert sum(drawn) == 64                        # the database's statistics, not new samples
    # Said once: found in the cache, for both studies.
    assert [e for e in events if isinstance(e, ReferenceSampled)][len(told):] == [
        ReferenceSampled(source=SMALL, done=64, total=64, cached=True)]


def test_reference_seeds_are_disjoint_from_trial_and_validation_seeds(tmp_path: Path) -> None:
    config = SearchConfig(nfe=[3], trials=2,
                          objective=ObjectiveSettings(rungs=(16, 32), reference=SMALL))
    last = config.objective.num_samples
    used = config.seed + last + config.validation.samples_for(last)      # trials + validation
    assert used <= SELF_REFERENCE_SEED
    self_reference.check_disjoint_seeds(seed=SELF_REFERENCE_SEED - used, count=used)
    # A seed whose trials or validation would reach 2**62 is refused, and nothing is created.
    db = tmp_path / "studies.db"
    near = SearchConfig(nfe=[3], trials=2, seed=SELF_REFERENCE_SEED - 90,
                        objective=config.objective)
    with pytest.raises(ConfigurationError, match=r"reach 2\*\*62.*pass a smaller seed$"):
        search(DEMO, near, db=db, device="cpu")
    assert not db.exists()
