"""``--trials`` at or below the known points: said before the run, worded for what runs, and
no known point left queued past the study's total."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from skiptune.tuner import Note, SearchConfig, SearchSpace, TrialStarted, ValidationSettings, search
from skiptune.tuner.search._service import known_points_note
from skiptune.tuner.study import role_of
from tests.tuner.helpers import DEMO, TINY


def test_the_note_names_what_runs_and_the_default() -> None:
    space = SearchSpace()                  # the baseline and the paper's 3 schedules
    assert known_points_note(trials=1, space=space) == (
        "--trials 1 measures only the baseline ρ = 1: nothing is searched; pass --trials 10 "
        "(the default) or more to search")
    assert known_points_note(trials=3, space=space) == (
        "--trials 3 measures only known points (the baseline and 2 of 3 published "
        "schedules): nothing is searched; pass --trials 10 (the default) or more to search")
    assert known_points_note(trials=5, space=space) is None


def test_the_note_comes_first_and_no_known_point_waits_past_the_total(tmp_path: Path) -> None:
    db = tmp_path / "known.db"
    events: list[object] = []

    def config(trials: int) -> SearchConfig:
        return SearchConfig(nfe=3, trials=trials, objective=TINY, pruning=False,
                            validation=ValidationSettings(enabled=False))

    search(DEMO, config(2), db=db, device="cpu", on_event=events.append)
    first_trial = next(i for i, e in enumerate(events) if isinstance(e, TrialStarted))
    assert [i for i, e in enumerate(events) if isinstance(e, Note)] < [first_trial], events
    (name,) = optuna.get_all_study_names(f"sqlite:///{db}")

    def trials() -> list[optuna.trial.FrozenTrial]:
        return optuna.load_study(study_name=name, storage=f"sqlite:///{db}").get_trials()

    assert [t.state for t in trials()] == [TrialState.COMPLETE] * 2
    # A rerun with more trials measures the known points it had left out, then searches.
    search(DEMO, config(5), db=db, device="cpu")
    assert [t.state for t in trials()] == [TrialState.COMPLETE] * 5
    assert [role_of(t) for t in trials()] == ["baseline", "paper", "paper", "paper", "search"]
