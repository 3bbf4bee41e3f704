"""Real searches on the demonstration model with tiny rungs: results, resume, refusals."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from skiptune.errors import ConfigurationError
from skiptune.exported import load_exported
from skiptune.models import load_model
from skiptune.objectives import ObjectiveSettings
from skiptune.schedule import TuningSchedule
from skiptune.storage import open_storage
from skiptune.tuner import (
    Note,
    SearchConfig,
    SearchSpace,
    StudyStarted,
    TrialFinished,
    TrialStarted,
    ValidationSettings,
    best_schedule,
    export_schedule,
    list_studies,
    search,
)
from skiptune.tuner.search._front_writer import front_points_of
from skiptune.tuner.search._run import prepare_study, run_study
from skiptune.tuner.search._service import plan_study
from tests.tuner.helpers import DEMO, FAST_HEARTBEAT, TINY, perturbed_checkpoint


def _trials(db: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(db).optuna_storage()
    return optuna.load_study(study_name=name, storage=storage).get_trials()


@pytest.mark.slow
def test_a_search_measures_its_baseline_and_finds_better_schedules(demo_db: Path) -> None:
    summaries = {s.nfe: s for s in list_studies(demo_db)}
    assert sorted(summaries) == [3, 5]
    for nfe, summary in summaries.items():
        assert summary.study_name == f"skiptune-demo_unet-heun-nfe{nfe}"
        assert summary.finished == summary.trials_total == 5 and summary.running == 0
        assert summary.num_samples == 32 and summary.metric == "fd"
        assert summary.baseline_value is not None and summary.best_value is not None
        assert summary.best_value <= summary.baseline_value
        trials = _trials(demo_db, summary.study_name)
        roles = [t.user_attrs.get("skiptune_role") for t in trials]
        assert roles[:4] == ["baseline", "paper", "paper", "paper"]
        baseline = trials[0]
        assert baseline.state == TrialState.COMPLETE and baseline.params["rho_bottom"] == 1.0
        assert [n for n, _ in baseline.user_attrs["rung_values"]] == [16, 32]


def test_the_stored_front_equals_its_recomputation_from_the_trials(demo_db: Path) -> None:
    storage = open_storage(demo_db)
    stored = storage.front_records()
    for summary in list_studies(storage):
        study = optuna.load_study(study_name=summary.study_name,
                                  storage=storage.optuna_storage())
        from skiptune.tuner import StudyConfig
        config = StudyConfig.from_dict(study.user_attrs["skiptune_config"])
        expected = {(p.kind, p.value, p.trial_number) for p in front_points_of(study, config)}
        got = {(r.kind, r.value, r.trial_number) for r in stored
               if r.study_name == summary.study_name}
        assert got == expected and len(got) == 2


def test_best_schedule_and_export_refuse_other_weights(demo_db: Path, tmp_path: Path) -> None:
    model = load_model(DEMO, device="cpu")
    summary = next(s for s in list_studies(demo_db) if s.nfe == 5)
    schedule = best_schedule(demo_db, model, nfe=5)
    assert schedule == summary.best_schedule
    exported = export_schedule(demo_db, nfe=5, path=tmp_path / "rho.json")
    assert exported.value == summary.best_value
    assert exported.baseline_value == summary.baseline_value
    again = load_exported(tmp_path / "rho.json", model=model)
    assert again.schedule == schedule and again.model_fingerprint == model.fingerprint

    other = load_model(perturbed_checkpoint(tmp_path / "other.pt"), device="cpu")
    with pytest.raises(ConfigurationError, match="other weights"):
        best_schedule(demo_db, other, nfe=5)
    with pytest.raises(ConfigurationError, match="other weights"):
        load_exported(tmp_path / "rho.json", model=other)
    assert best_schedule(demo_db, other, nfe=5, allow_other_weights=True) == schedule
    with pytest.raises(ConfigurationError, match=r"no searched schedule at 9 NFE.*heun/3"):
        best_schedule(demo_db, model, nfe=9)


def test_a_finished_study_returns_at_once_and_a_larger_total_continues(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    two = SearchConfig(nfe=3, trials=2, objective=TINY, **FAST_HEARTBEAT)
    (first,) = search(DEMO, two, db=db, device="cpu")
    events: list[object] = []
    (again,) = search(DEMO, two, db=db, device="cpu", on_event=events.append)
    assert again.finished == first.finished == 2
    assert not any(isinstance(e, TrialStarted) for e in events)
    events = [e for e in events if not isinstance(e, Note)]   # the known-points note
    assert isinstance(events[0], StudyStarted) and events[0].resumed
    events.clear()
    (more,) = search(DEMO, dataclasses.replace(two, trials=3), db=db, device="cpu",
                     on_event=events.append)
    assert more.finished == 3 and sum(isinstance(e, TrialFinished) for e in events) == 1
    # Only the known points a total runs are queued: none is left waiting.
    assert len(_trials(db, first.study_name)) == 3


def test_a_mismatched_resume_is_refused_naming_the_fields(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    config = SearchConfig(nfe=3, trials=1, objective=TINY)
    search(DEMO, config, db=db, device="cpu")
    with pytest.raises(ConfigurationError) as info:
        search(DEMO, dataclasses.replace(config, seed=1), db=db, device="cpu")
    text = str(info.value)
    assert "objective.seed: 0 → 1" in text and "study group (group NAME)" in text
    with pytest.raises(ConfigurationError, match=r"objective\.rungs"):
        search(DEMO, dataclasses.replace(config, objective=ObjectiveSettings(rungs=(8, 32))),
               db=db, device="cpu")
    other = perturbed_checkpoint(tmp_path / "demo_unet.pt")          # same name, other weights
    with pytest.raises(ConfigurationError, match="model_fingerprint"):
        search(other, config, db=db, device="cpu")
    with pytest.raises(ConfigurationError, match=r"space\.rho_top"):
        search(DEMO, dataclasses.replace(config, space=SearchSpace(rho_top=1.0)), db=db,
               device="cpu")
    (separate,) = search(other, dataclasses.replace(config, group="retrained"), db=db,
                         device="cpu")
    assert separate.study_name == "skiptune-retrained-heun-nfe3"


def test_non_finite_samples_fail_the_trial_with_its_reason_and_the_study_goes_on(
    tmp_path: Path,
) -> None:
    # ρ ≈ 1e37 overflows float32 inside the net: a real divergence, not a mock.
    space = SearchSpace(rho_bottom=(1e37, 2e37), rho_top=1.0, shapes=("linear",))
    (summary,) = search(DEMO, SearchConfig(nfe=3, trials=3, space=space, objective=TINY),
                        db=tmp_path / "s.db", device="cpu")
    assert summary.finished == 3 and summary.failed == 2 and summary.complete == 1
    failed = [t for t in _trials(tmp_path / "s.db", summary.study_name)
              if t.state == TrialState.FAIL]
    assert all("non-finite" in t.user_attrs["failure"] for t in failed)
    assert summary.best_schedule == TuningSchedule.identity()


class _Interrupting:
    """The real objective, with a Ctrl-C arriving during its second evaluation."""

    def __init__(self, objective: object) -> None:
        self.objective, self.calls = objective, 0

    @property
    def identity(self) -> dict:
        return self.objective.identity  # type: ignore[attr-defined]

    def evaluate(self, schedule: TuningSchedule, **kwargs: object) -> object:
        self.calls += 1
        if self.calls == 2:
            raise KeyboardInterrupt
        return self.objective.evaluate(schedule, **kwargs)  # type: ignore[attr-defined]


def test_ctrl_c_fails_the_running_trial_and_requeues_it(tmp_path: Path) -> None:
    storage = open_storage(tmp_path / "s.db")
    model = load_model(DEMO, device="cpu")
    config, objective = plan_study(
        model, SearchConfig(nfe=3, trials=3, objective=TINY, space=SearchSpace(rho_top=1.0),
                            group="g"), 3)
    prepare_study(storage, config)
    with pytest.raises(KeyboardInterrupt):
        run_study(storage, config, _Interrupting(objective), **FAST_HEARTBEAT)
    trials = _trials(tmp_path / "s.db", config.study_name)
    interrupted = trials[1]
    assert interrupted.state == TrialState.FAIL
    assert interrupted.user_attrs["failure_kind"] == "interrupted"
    summary = run_study(storage, config, objective, **FAST_HEARTBEAT)
    assert summary.finished == 3 and summary.running == 0
    rerun = [t for t in _trials(tmp_path / "s.db", config.study_name)
             if t.system_attrs.get("failed_trial") == interrupted.number]
    assert len(rerun) == 1 and rerun[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert rerun[0].params == interrupted.params


def test_grid_search_stops_at_the_end_of_its_grid(tmp_path: Path) -> None:
    space = SearchSpace(rho_bottom=(0.5, 1.0), rho_top=1.0, shapes=("linear",), grid_step=0.5)
    (summary,) = search(DEMO, SearchConfig(nfe=3, trials=50, optimizer="grid", space=space,
                                           objective=TINY, pruning=False,
                                           validation=ValidationSettings(enabled=False)),
                        db=tmp_path / "s.db", device="cpu")
    # Two grid points (0.5, 1.0) plus the baseline and the paper's 0.55 and 0.68.
    assert summary.trials_total == 5 and summary.finished == 5
    assert math.isfinite(summary.best_value or math.nan)
