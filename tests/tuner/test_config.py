"""The resolved configuration, its comparison on resume, and the search space in Optuna."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import optuna
import pytest

from skiptune.errors import ConfigurationError
from skiptune.models import TunableModel, load_model
from skiptune.objectives import ObjectiveConfig, ObjectiveSettings
from skiptune.tuner import (
    SearchConfig,
    SearchSpace,
    StudyConfig,
    ValidationSettings,
)
from skiptune.tuner.search import PAPER_SCHEDULES, queued_schedules
from skiptune.tuner.search._service import plan_study, resolve_objective
from skiptune.tuner.search._space import grid_size, make_pruner, make_sampler, suggest_schedule
from skiptune.tuner.study import default_group, study_name
from skiptune.tuner.study._identity import config_differences
from tests.tuner.helpers import perturbed_checkpoint


def _config(*, objective: dict[str, object] | None = None, **changes: object) -> StudyConfig:
    measured = {"metric": "fd", "rungs": (64, 256), "seed": 0, "batch_size": 128,
                **(objective or {})}
    values: dict[str, object] = {
        "model": "ckpt.pt", "model_fingerprint": "ab" * 32,
        "objective": ObjectiveConfig(sampler="heun", nfe=9, **measured),  # type: ignore[arg-type]
        "objective_identity": {"reference_identity": "r1", "batch_size": 128},
    }
    values.update(changes)
    return StudyConfig(**values)  # type: ignore[arg-type]


def test_config_round_trips_through_a_dict() -> None:
    config = _config(space=SearchSpace(rho_top=1.0, shapes=("linear", "cosine")))
    assert StudyConfig.from_dict(config.to_dict()) == config
    assert config.study_name == "skiptune-default-heun-nfe9"
    assert config.num_samples == 256


def test_differences_name_fields_and_ignore_what_may_change() -> None:
    stored = _config().to_dict()
    same = _config(trials=99, model="moved/ckpt.pt", pruning=False,
                   objective={"batch_size": 7},
                   objective_identity={"reference_identity": "r1", "batch_size": 7})
    assert config_differences(stored, same.to_dict()) == []
    other = _config(model_fingerprint="cd" * 32,
                    objective={"metric": "kid", "rungs": (16, 32), "seed": 1},
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
    for optimizer in ("tpe", "gp", "cmaes", "random", "qmc", "grid"):
        config = _config(optimizer=optimizer, space=space, trials=3)
        study = optuna.create_study(sampler=make_sampler(config), pruner=make_pruner(config))
        for _ in range(3):
            trial = study.ask()
            schedule = suggest_schedule(trial, space)
            assert 0.3 <= schedule.rho_bottom <= 1.2 and schedule.rho_top == 1.0
            study.tell(trial, schedule.rho_bottom)
    assert grid_size(space) == 10 * 1 * 2


def test_qmc_asked_with_a_new_sampler_each_trial_continues_one_sobol_sequence() -> None:
    """The search makes a sampler per ask (seeded by the history for the other optimizers);
    QMC keeps one scrambling per search, so the points are those of one sampler: spread
    evenly, not a fresh sequence's first point each time."""
    space = SearchSpace(rho_top=1.0, shapes=("linear",))
    config = _config(optimizer="qmc", space=space, trials=9)

    def points(fresh_sampler_per_ask: bool) -> list[float]:
        study = optuna.create_study(sampler=make_sampler(config))
        drawn = []
        for history in range(8):
            if fresh_sampler_per_ask:
                study.sampler = make_sampler(config, history=history)
            trial = study.ask()
            drawn.append(suggest_schedule(trial, space).rho_bottom)
            study.tell(trial, 0.0)
        return drawn

    once, per_ask = points(False), points(True)
    assert per_ask == once and len(set(once)) == 8
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_sampler(config)
    assert caught == []                   # no "QMCSampler is experimental" on the terminal
    # Seven points after the first (which fixes the space) land in distinct eighths of it.
    eighths = {int((b - 0.3) / 0.9 * 8) for b in once[1:]}
    assert len(eighths) == 7


def test_pruner_is_successive_halving_over_the_rungs() -> None:
    assert isinstance(make_pruner(_config()), optuna.pruners.SuccessiveHalvingPruner)
    single = _config(objective={"rungs": [64]})
    assert isinstance(make_pruner(single), optuna.pruners.NopPruner)
    assert isinstance(make_pruner(_config(pruning=False)), optuna.pruners.NopPruner)


def test_a_search_config_is_validated_when_built_and_frozen() -> None:
    config = SearchConfig(nfe=[9, 15], objective=ObjectiveSettings(rungs=(16, 32)))
    assert config.budgets == (9, 15) and SearchConfig(nfe=9).budgets == (9,)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.trials = 5  # type: ignore[misc]
    with pytest.raises(ConfigurationError, match="heun cannot use exactly 8 NFE"):
        SearchConfig(nfe=[9, 8], sampler="heun")
    with pytest.raises(ConfigurationError, match="heun cannot use exactly 8 NFE"):
        SearchConfig(nfe=[9, 8]).for_model(None)      # no sampler named, none of the model's
    with pytest.raises(ConfigurationError, match="distinct step budgets"):
        SearchConfig(nfe=[9, 9])
    with pytest.raises(ConfigurationError, match="pass ObjectiveSettings"):
        SearchConfig(nfe=9, objective=ObjectiveConfig(sampler="heun", nfe=9))
    with pytest.raises(ConfigurationError,
                       match=r"validation\.num_samples 16 is smaller than the last"):
        SearchConfig(nfe=9, objective=ObjectiveSettings(rungs=(16, 32)),
                     validation=ValidationSettings(num_samples=16))
    with pytest.raises(ConfigurationError, match="under two heartbeats"):
        SearchConfig(nfe=9, heartbeat_interval=10, grace_period=19)
    with pytest.raises(ConfigurationError, match="allow_large_rungs=True"):
        SearchConfig(nfe=9, objective=ObjectiveSettings(rungs=(64, 10**6)))
    with pytest.raises(ConfigurationError, match="study group"):
        SearchConfig(nfe=9, group="my group!")


def test_no_sampler_named_means_the_models_own_else_heun() -> None:
    config = SearchConfig(nfe=[1, 2])             # 2 NFE: no budget of heun's
    assert config.sampler is None
    assert config.for_model("consistency").samplers == ("consistency",)
    assert SearchConfig(nfe=9).for_model(None).samplers == ("heun",)
    named = SearchConfig(nfe=9, sampler="ipndm")
    assert named.for_model("consistency") is named   # a named sampler wins


def test_a_study_config_is_the_search_config_at_one_budget(demo_model: TunableModel) -> None:
    config = SearchConfig(nfe=[3, 5], trials=7, optimizer="random", seed=4,
                          space=SearchSpace(rho_top=1.0),
                          objective=ObjectiveSettings(rungs=(16, 32), metric="kid"))
    study, objective = plan_study(demo_model, config, 5)
    assert study.objective == config.objective.for_budget(sampler="heun", nfe=5, seed=4)
    assert (study.nfe, study.sampler, study.seed, study.trials, study.optimizer) == (
        5, "heun", 4, 7, "random")
    assert study.space == config.space and study.group == "demo_unet"
    assert study.objective_identity == dict(objective.identity)
    # Stored with the study in the layout every earlier version stored and compares.
    assert StudyConfig.from_dict(study.to_dict()) == study
    assert set(study.to_dict()) == {
        "model", "model_fingerprint", "sampler", "nfe", "objective", "objective_identity",
        "trials", "optimizer", "space", "seed", "group", "pruning"}


def test_a_worker_resolves_the_objective_the_search_resolved(
    demo_model: TunableModel, tmp_path: Path
) -> None:
    study, objective = plan_study(demo_model, SearchConfig(
        nfe=3, objective=ObjectiveSettings(rungs=(16, 32))), 3)
    again = resolve_objective(demo_model, study.objective, study=study)
    assert dict(again.identity) == dict(objective.identity)
    other = load_model(perturbed_checkpoint(tmp_path / "other.pt"), device="cpu")
    with pytest.raises(ConfigurationError, match="other weights than study"):
        resolve_objective(other, study.objective, study=study)
