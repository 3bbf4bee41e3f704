"""The step-grid space: stored, queued, suggested and warm-started like ρ, NFE exact."""

from __future__ import annotations

import optuna
import pytest

from skiptune.errors import ConfigurationError
from skiptune.steps import StepGrid
from skiptune.tuner import SearchConfig, SearchSpace
from skiptune.tuner.search import queued_schedules
from skiptune.tuner.search._service import _space_for
from skiptune.tuner.search._space import suggest_schedule
from skiptune.tuner.search._warm import params_in_space
from skiptune.tuner.study import canonical_schedule, schedule_from_params


def test_spaces_without_steps_are_stored_as_before() -> None:
    for kind in ("rho", "freeu", "rho+freeu"):
        assert not any(k.startswith("steps") for k in SearchSpace(kind=kind).to_dict())


@pytest.mark.parametrize("kind", ["steps", "rho+steps", "freeu+steps", "rho+freeu+steps"])
def test_step_spaces_round_trip(kind: str) -> None:
    space = SearchSpace(kind=kind, steps_sigma_min=(0.002, 0.1), steps_sigma_max=(20.0, 80.0),
                        steps_known=(7.0, 0.002, 80.0))
    assert SearchSpace.from_dict(space.to_dict()) == space and space.searches_steps


def test_the_model_resolves_the_ranges_and_the_samplers_own_grid(demo_model) -> None:
    resolved = _space_for(demo_model, SearchSpace(kind="rho+steps"), schedule_exponent=5.0)
    assert resolved.steps_known == (5.0, demo_model.sigma_min, demo_model.sigma_max)
    assert resolved.steps_sigma_min == (0.002, 0.1) and resolved.steps_sigma_max == (20.0, 80.0)
    with pytest.raises(ConfigurationError, match="outside the model's σ range"):
        _space_for(demo_model, SearchSpace(kind="steps", steps_sigma_max=(20.0, 200.0)))
    with pytest.raises(ConfigurationError, match="ddim walks the model's training timesteps"):
        _space_for(demo_model, SearchSpace(kind="steps"), sampler="ddim")


def test_sigma_ranges_that_overlap_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="must lie below the σ_max range"):
        SearchSpace(kind="steps", steps_sigma_min=(0.002, 30.0), steps_sigma_max=(20.0, 80.0))
    with pytest.raises(ConfigurationError, match="log scale"):
        SearchSpace(kind="steps", steps_exponent=(0.0, 10.0))
    with pytest.raises(ConfigurationError, match="grid optimizer searches ρ only"):
        SearchConfig(nfe=9, optimizer="grid", space=SearchSpace(kind="rho+steps",
                                                                shapes=("linear",)))


RESOLVED = SearchSpace(kind="rho+steps", steps_sigma_min=(0.002, 0.1),
                       steps_sigma_max=(20.0, 80.0), steps_known=(7.0, 0.002, 80.0))
OWN = {"steps_exponent": 7.0, "steps_sigma_min": 0.002, "steps_sigma_max": 80.0}


def test_every_known_point_is_measured_on_the_samplers_own_grid() -> None:
    queued = queued_schedules(RESOLVED)
    assert queued[0] == ({"rho_bottom": 1.0, "rho_top": 1.0, "shape": "linear", **OWN},
                         "baseline")
    assert [role for _, role in queued] == ["baseline", "paper", "paper", "paper"]
    assert all(params.items() >= OWN.items() for params, _ in queued)
    assert schedule_from_params(queued[0][0]).steps == StepGrid(7.0, 0.002, 80.0)


def test_suggestions_stay_inside_the_ranges_and_decrease() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        grid = suggest_schedule(study.ask(), RESOLVED).steps
        assert grid is not None and 1.0 <= grid.schedule_exponent <= 16.0
        assert 0.002 <= grid.sigma_min <= 0.1 < 20.0 <= grid.sigma_max <= 80.0


def test_rho_only_params_keep_their_stored_identity() -> None:
    params = {"rho_bottom": 0.6, "rho_top": 1.0, "shape": "linear"}
    assert schedule_from_params(params).steps is None
    assert canonical_schedule(params) == (
        '{"gamma": 1.0, "rho_bottom": 0.6, "rho_top": 1.0, "shape": "linear"}')


def test_warm_starts_carry_a_grid_only_into_a_space_that_holds_it() -> None:
    rho = {"rho_bottom": 0.6, "rho_top": 1.0, "shape": "linear"}
    assert params_in_space({**rho, **OWN}, RESOLVED) == {**rho, **OWN}
    assert params_in_space(rho, RESOLVED) is None                 # no grid to carry
    assert params_in_space({**rho, **OWN}, SearchSpace()) is None  # a grid is not ρ alone
    outside = {**rho, **OWN, "steps_sigma_max": 10.0}
    assert params_in_space(outside, RESOLVED) is None


def test_another_samplers_validated_best_is_queued_first(tmp_path) -> None:
    from skiptune.objectives import ObjectiveSettings
    from skiptune.storage import open_storage
    from skiptune.tuner import ValidationSettings, search, validation_result
    from tests.tuner.helpers import DEMO

    options = {"nfe": 3, "trials": 5, "objective": ObjectiveSettings(rungs=(8, 16)),
               "validation": ValidationSettings(top_k=2, num_samples=16)}
    db = tmp_path / "s.db"
    (heun,) = search(DEMO, SearchConfig(sampler="heun", **options), db=db, device="cpu")
    (ipndm,) = search(DEMO, SearchConfig(sampler="ipndm", **options), db=db, device="cpu")
    storage = open_storage(db).optuna_storage()
    chosen = validation_result(optuna.load_study(study_name=heun.study_name, storage=storage))
    assert chosen is not None and chosen.chosen.role != "baseline"
    trials = optuna.load_study(study_name=ipndm.study_name, storage=storage).get_trials()
    warm = [t.params for t in trials if t.user_attrs.get("skiptune_role") == "warm"]
    assert warm == [chosen.chosen.params]
