"""The proxy objective on the demonstration model: determinism, rungs, pruning, identity."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from skiptune.errors import ConfigurationError, NonFiniteSampleError
from skiptune.models import TunableModel
from skiptune.objectives import Evaluation, ObjectiveConfig, ProxyObjective, build_objective
from skiptune.objectives._objective import evaluate
from skiptune.schedule import TuningSchedule

SCHEDULE = TuningSchedule(rho_bottom=0.7)


def objective(model: TunableModel, **overrides) -> ProxyObjective:
    settings = {"sampler": "heun", "nfe": 9, "rungs": (8, 16), "batch_size": 8, **overrides}
    return build_objective(model, ObjectiveConfig(**settings), progress=False)


@pytest.fixture(scope="module")
def reference_run(demo_model: TunableModel) -> Evaluation:
    """Rungs (8, 16) in batches of 8: the run the other tests compare with."""
    return objective(demo_model).evaluate(SCHEDULE)


# --- Configuration --------------------------------------------------------------------------


def test_config_round_trips_through_a_dict() -> None:
    config = ObjectiveConfig(sampler="dpmpp_2m", nfe=10, metric="kid", rungs=[32, 128], seed=5)
    assert config.rungs == (32, 128)
    data = config.to_dict()
    assert data["rungs"] == [32, 128]
    assert ObjectiveConfig.from_dict(data) == config


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"metric": "fid"}, "unknown metric 'fid'; choose one of fd, kid"),
        ({"rungs": (64, 64)}, "strictly increasing"),
        ({"rungs": (256, 64)}, "strictly increasing"),
        ({"rungs": ()}, "sample counts ≥ 2"),
        ({"rungs": (1, 8)}, "sample counts ≥ 2"),
        ({"rungs": (8.0, 16)}, "sample counts ≥ 2"),
        ({"rungs": 64}, "must be a tuple"),
        ({"batch_size": 0}, "batch_size"),
        ({"seed": -1}, "seed"),
        ({"schedule_exponent": 0.0}, "schedule_exponent"),
        ({"nfe": 8}, "cannot use exactly 8 NFE"),  # Heun meets only odd budgets
    ],
)
def test_config_refuses(settings: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ObjectiveConfig(**{"sampler": "heun", "nfe": 9, **settings})


def test_config_from_dict_refuses_unknown_and_missing_keys() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown objective config keys \['rho'\]"):
        ObjectiveConfig.from_dict({"sampler": "heun", "nfe": 9, "rho": 7})
    with pytest.raises(ConfigurationError, match=r"lacks \['nfe'\]"):
        ObjectiveConfig.from_dict({"sampler": "heun"})


def test_model_without_a_reference_asks_for_ref_and_features(demo_model: TunableModel) -> None:
    bare = dataclasses.replace(demo_model, reference=None)
    with pytest.raises(ConfigurationError,
                       match=r"pass objective\.reference .* and objective\.features"):
        objective(bare)


def test_identity_names_everything_the_score_depends_on(demo_model: TunableModel) -> None:
    fd, kid = objective(demo_model), objective(demo_model, metric="kid")
    identity = fd.identity
    assert identity["model"] == demo_model.fingerprint
    assert identity["extractor_identity"] == fd.extractor.identity
    assert identity["reference_identity"] == fd.reference.identity
    assert identity["reference_count"] == 10000
    assert {key: identity[key] for key in fd.config.to_dict()} == fd.config.to_dict()
    assert objective(demo_model).identity == identity  # stable across builds
    assert kid.identity != identity


def test_a_one_step_generators_sigma_init_is_part_of_the_identity(
    demo_model: TunableModel,
) -> None:
    """The same weights started at σ_init are another model (load_model's one_step_sigma);
    a model without one keeps the identity it always had."""
    plain = objective(demo_model).identity
    assert "one_step_sigma" not in plain
    generator = dataclasses.replace(demo_model,
                                    metadata={**demo_model.metadata, "one_step_sigma": 2.5})
    assert objective(generator).identity == {**plain, "one_step_sigma": 2.5}


# --- Evaluation -----------------------------------------------------------------------------


def test_same_call_twice_gives_exactly_the_same_value(
    demo_model: TunableModel, reference_run: Evaluation
) -> None:
    again = objective(demo_model).evaluate(SCHEDULE)
    assert again.rung_values == reference_run.rung_values
    assert reference_run.value == reference_run.rung_values[-1][1] > 0
    assert reference_run.num_samples == 16
    assert 0 < reference_run.seconds_sampling < reference_run.seconds_total
    assert 0 < reference_run.seconds_features < reference_run.seconds_total


def test_batch_size_changes_the_value_only_by_float_noise(
    demo_model: TunableModel, reference_run: Evaluation
) -> None:
    other = objective(demo_model, batch_size=5).evaluate(SCHEDULE)
    for (n, value), (n_other, value_other) in zip(
        reference_run.rung_values, other.rung_values, strict=True
    ):
        assert n == n_other
        assert value_other == pytest.approx(value, rel=1e-6)


def test_a_rung_equals_a_separate_evaluation_at_its_n(
    demo_model: TunableModel, reference_run: Evaluation
) -> None:
    (n_small, small), (n_large, large) = reference_run.rung_values
    alone_small = objective(demo_model, rungs=(n_small,)).evaluate(SCHEDULE)
    assert alone_small.rung_values == ((n_small, small),)
    # The plain function with one rung of 16 (in batches of 8) gives the second rung's value.
    value = evaluate(
        demo_model, SCHEDULE, sampler="heun", nfe=9, num_samples=n_large, batch_size=8
    )
    assert value == large


def test_the_schedule_matters(demo_model: TunableModel, reference_run: Evaluation) -> None:
    untuned = objective(demo_model, rungs=(8,)).evaluate({"rho_bottom": 1.0, "rho_top": 1.0})
    assert untuned.value != reference_run.rung_values[0][1]


class Pruned(Exception):
    pass


def test_report_is_called_per_rung_and_its_exception_stops_the_evaluation(
    demo_model: TunableModel, reference_run: Evaluation, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, int, float]] = []
    denoise_calls = []
    denoise_fn = demo_model.denoise_fn

    def counting_denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        denoise_calls.append(len(x))
        return denoise_fn(x, sigma)

    def report(index: int, n: int, value: float) -> None:
        calls.append((index, n, value))
        raise Pruned

    monkeypatch.setattr(demo_model, "denoise_fn", counting_denoise)
    with pytest.raises(Pruned):
        objective(demo_model).evaluate(SCHEDULE, report=report)
    assert calls == [(0, 8, reference_run.rung_values[0][1])]
    assert sum(denoise_calls) == 8 * 9  # one batch of 8 at 9 NFE, then stopped
    modules = list(demo_model.net.modules())
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in modules)  # hooks removed

    calls.clear()
    objective(demo_model, rungs=(4, 8)).evaluate(SCHEDULE, report=lambda *a: calls.append(a))
    assert [call[:2] for call in calls] == [(0, 4), (1, 8)]


def test_non_finite_samples_raise(demo_model: TunableModel) -> None:
    factors = torch.full((demo_model.num_skips,), float("inf"))
    with pytest.raises(NonFiniteSampleError):
        objective(demo_model, rungs=(2,)).evaluate(factors)


def test_kid_objective(demo_model: TunableModel) -> None:
    result = objective(demo_model, metric="kid", rungs=(8,)).evaluate(SCHEDULE)
    assert result.value > 0


def test_unknown_schedule_type(demo_model: TunableModel) -> None:
    with pytest.raises(ConfigurationError, match="a schedule must be a TuningSchedule"):
        objective(demo_model, rungs=(2,)).evaluate(0.7)
