"""Several candidate schedules sampled in one batch score as they do one after another."""

from __future__ import annotations

import math

import optuna
import pytest
import torch

from skiptune.models import load_model
from skiptune.objectives import ObjectiveConfig, build_objective
from skiptune.schedule import TuningSchedule
from tests.tuner.helpers import DEMO

SCHEDULES = [TuningSchedule(rho_bottom=0.5), TuningSchedule.identity(),
             TuningSchedule(rho_bottom=0.8, rho_top=0.9, shape="cosine")]


@pytest.fixture(scope="module")
def objective():  # type: ignore[no-untyped-def]
    torch.set_num_threads(1)
    model = load_model(DEMO, device="cpu")
    return build_objective(model, ObjectiveConfig(sampler="heun", nfe=3, rungs=(8, 16),
                                                  batch_size=16))


def test_a_batch_of_candidates_equals_them_one_by_one(objective) -> None:  # type: ignore[no-untyped-def]
    together = objective.evaluate_many(SCHEDULES)
    for schedule, batched in zip(SCHEDULES, together, strict=True):
        alone = objective.evaluate(schedule)
        assert batched.num_samples == alone.num_samples == 16
        for (n1, v1), (n2, v2) in zip(batched.rung_values, alone.rung_values, strict=True):
            assert n1 == n2 and math.isclose(v1, v2, rel_tol=1e-4)


def test_a_pruned_candidate_stops_alone(objective) -> None:  # type: ignore[no-untyped-def]
    def report(candidate: int, rung: int, n: int, value: float) -> None:
        if candidate == 0 and rung == 0:
            raise optuna.TrialPruned("first")

    first, second, third = objective.evaluate_many(SCHEDULES, report=report)
    assert isinstance(first, optuna.TrialPruned)
    assert [n for n, _ in second.rung_values] == [8, 16] and third.num_samples == 16
