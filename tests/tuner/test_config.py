"""The resolved configuration, its comparison on resume, and the search space in Optuna."""

from __future__ import annotations

import optuna
import pytest

from skiptune.errors import ConfigurationError
from skiptune.tuner import (
    PAPER_SCHEDULES,
    SearchConfig,
    SearchSpace,
    default_group,
    queued_schedules,
    study_name,
)
from skiptune.tuner._config import config_differences
from skiptune.tuner._space import grid_size, make_pruner, make_sampler, suggest_schedule


def _config(**changes: object) -> SearchConfig:
    values: dict[str, object] = {
        "model": "ckpt.pt", "model_fingerprint": "ab" * 32, "sampler": "heun", "nfe": 9,
        "objective": {"metric": "fd", "rungs": [64, 256], "seed": 0, "batch_size": 128},
        "objective_identity": {"reference_identity": "r1", "batch_size": 128},
    }
    values.update(changes)
    return SearchConfig(**values)  # type: ignore[arg-type]


def test_config_round_trips_through_a_dict() -> None:
    config = _config(space=SearchSpace(rho_top=1.0, shapes=("linear", "cosine")))
    assert SearchConfig.from_dict(config.to_dict()) == config
    assert config.study_name == "skiptune-default-heun-nfe9"
    assert config.num_samples == 256


def test_differences_name_fields_and_ignore_what_may_change() -> None:
    stored = _config().to_dict()
    same = _config(trials=99, model="moved/ckpt.pt", pruning=False,
                   objective={"metric": "fd", "rungs": [64, 256], "seed": 0, "batch_size": 7},
                   objective_identity={"reference_identity": "r1", "batch_size": 7})
    assert config_differences(stored, same.to_dict()) == []
    other = _config(model_fingerprint="cd" * 32, seed=1,
                    objective={"metric": "kid", "rungs": [16, 32], "seed": 1, "batch_size": 128},
                    objective_identity={"reference_identity": "r2"})
    assert config_differences(stored, other.to_dict()) == [
        "model_fingerprint", "objective.metric", "objective.rungs", "objective.seed",
        "objective_identity.reference_identity", "seed",
    ]
    fixed_top = _config(space=SearchSpace(rho_top=1.0))
    assert config_differences(stored, fixed_top.to_dict()) == ["space.rho_top"]


def test_bad_configurations_are_clear_errors() -> None:
    with pytest.raises(ConfigurationError, match="unknown optimizer 'bayes'"):
        _config(optimizer="bayes")
    with pytest.raises(ConfigurationError, match="power"):
        _config(optimizer="grid")
    with pytest.raises(ConfigurationError, match="0 ≤ low < high"):
        SearchSpace(rho_bottom=(1.2, 0.3))
    with pytest.raises(ConfigurationError, match="shapes"):
        SearchSpace(shapes=("linear", "spline"))
    with pytest.raises(ConfigurationError, match="study group"):
        _config(group="my group!")


def test_study_names_and_default_groups() -> None:
    name = study_name(group="demo_unet", sampler="unipc", nfe=15)
    assert name == "skiptune-demo_unet-unipc-nfe15"
    assert default_group("runs/my model v2.pt") == "my_model_v2"
    assert default_group("mypkg.nets:build_unet") == "nets"     # the module, not the attr
    assert default_group("my_unets:adapter") == "my_unets"


def test_baseline_first_then_paper_schedules_inside_the_space() -> None:
    queued = queued_schedules(SearchSpace())
    assert queued[0] == ({"rho_bottom": 1.0, "rho_top": 1.0, "shape": "linear"}, "baseline")
    assert [(p["rho_bottom"], p["rho_top"]) for p, _ in queued[1:]] == list(PAPER_SCHEDULES)
    fixed = queued_schedules(SearchSpace(rho_top=1.0, rho_bottom=(0.6, 1.2)))
    assert [(p["rho_bottom"], p["rho_top"], role) for p, role in fixed] == [
        (1.0, 1.0, "baseline"), (0.68, 1.0, "paper")]
    power_only = queued_schedules(SearchSpace(shapes=("power",)))
    assert power_only == [({"rho_bottom": 1.0, "rho_top": 1.0, "shape": "power", "gamma": 1.0},
                           "baseline")]


def test_every_optimizer_suggests_schedules_inside_the_space() -> None:
    space = SearchSpace(rho_top=1.0, shapes=("linear", "cosine"), grid_step=0.1)
    for optimizer in ("tpe", "gp", "cmaes", "random", "grid"):
        config = _config(optimizer=optimizer, space=space, trials=3)
        study = optuna.create_study(sampler=make_sampler(config), pruner=make_pruner(config))
        for _ in range(3):
            trial = study.ask()
            schedule = suggest_schedule(trial, space)
            assert 0.3 <= schedule.rho_bottom <= 1.2 and schedule.rho_top == 1.0
            study.tell(trial, schedule.rho_bottom)
    assert grid_size(space) == 10 * 1 * 2


def test_pruner_is_successive_halving_over_the_rungs() -> None:
    assert isinstance(make_pruner(_config()), optuna.pruners.SuccessiveHalvingPruner)
    single = _config(objective={"rungs": [64]})
    assert isinstance(make_pruner(single), optuna.pruners.NopPruner)
    assert isinstance(make_pruner(_config(pruning=False)), optuna.pruners.NopPruner)
