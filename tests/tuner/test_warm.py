"""Warm starts across budgets: a study first tries the validated bests of its neighbours."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from skiptune.objectives import ObjectiveSettings
from skiptune.storage import open_storage
from skiptune.tuner import SearchConfig, SearchSpace, ValidationSettings, search
from skiptune.tuner.search._warm import params_in_space
from tests.tuner.helpers import DEMO, FAST_HEARTBEAT

# Power shapes only: the paper's linear schedules are not queued, so what a study tries
# before its optimizer's own proposals is ρ = 1 and, when warm, its neighbour's best.
SPACE = SearchSpace(shapes=("power",))
OPTIONS = {"objective": ObjectiveSettings(rungs=(16, 32)), "space": SPACE, "pruning": False,
           **FAST_HEARTBEAT}
NO_VALIDATION = ValidationSettings(enabled=False)


def _values(db: Path, name: str) -> list[tuple[str, float]]:
    study = optuna.load_study(study_name=name, storage=open_storage(db).optuna_storage())
    return [(str(t.user_attrs.get("skiptune_role", "search")), float(t.value))
            for t in study.get_trials() if t.state == TrialState.COMPLETE]


def _trials_to_reach(values: list[float], target: float) -> int:
    """Trials until one scores ``target`` or better; one more than all of them if none does."""
    return next((i + 1 for i, v in enumerate(values) if v <= target), len(values) + 1)


@pytest.mark.slow
def test_a_9_nfe_study_seeded_by_a_finished_7_nfe_study_reaches_its_best_sooner(
    tmp_path: Path,
) -> None:
    db = tmp_path / "s.db"
    (seven,) = search(DEMO, SearchConfig(
        nfe=7, trials=8, validation=ValidationSettings(top_k=2, num_samples=64), **OPTIONS),
        db=db, device="cpu")
    assert seven.validated and seven.best_schedule is not None
    nine = SearchConfig(nfe=9, trials=8, validation=NO_VALIDATION, **OPTIONS)
    (warm,) = search(DEMO, nine, db=db, device="cpu")
    (cold,) = search(DEMO, nine, db=tmp_path / "cold.db", device="cpu")
    warm_values = _values(db, warm.study_name)
    cold_values = _values(tmp_path / "cold.db", cold.study_name)
    assert [role for role, _ in warm_values[:2]] == ["baseline", "warm"]
    assert "warm" not in {role for role, _ in cold_values}
    # Both on the same seeds: within 2% of the better of the two final bests.
    target = 1.02 * min(v for _, v in warm_values + cold_values)
    warm_reach = _trials_to_reach([v for _, v in warm_values], target)
    cold_reach = _trials_to_reach([v for _, v in cold_values], target)
    print(f"trials to reach {target:.4g}: warm {warm_reach}, cold {cold_reach}")
    assert warm_reach < cold_reach

    # Queued once: a rerun with a larger total queues nothing new.
    (more,) = search(DEMO, SearchConfig(nfe=9, trials=9, validation=NO_VALIDATION, **OPTIONS),
                     db=db, device="cpu")
    assert [r for r, _ in _values(db, more.study_name)].count("warm") == 1


def test_a_schedule_outside_the_space_is_not_queued() -> None:
    linear = SearchSpace(shapes=("linear",), rho_top=1.0)
    assert params_in_space({"rho_bottom": 0.6, "rho_top": 1.0, "shape": "linear"}, linear) == {
        "rho_bottom": 0.6, "rho_top": 1.0, "shape": "linear"}
    assert params_in_space({"rho_bottom": 0.6, "rho_top": 0.9, "shape": "linear"}, linear) is None
    assert params_in_space({"rho_bottom": 0.6, "shape": "power", "gamma": 2.0}, linear) is None
    assert params_in_space({"rho_bottom": 0.6, "rho_top": 1.0, "shape": "linear",
                            "b1": 1.1, "b2": 1.2, "s1": 0.9, "s2": 0.2}, linear) is None
