"""What skiptune assumes of Optuna's private side (``skiptune/tuner/_heartbeat.py``).

If a new Optuna version renames the trial's storage id or the heartbeat table, these fail
first, with the reason, instead of the crash tests failing for obscure ones.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from skiptune._optuna import quiet_experimental
from skiptune._optuna_private import trial_id
from skiptune.storage import open_storage
from skiptune.tuner.search._heartbeat import fail_trials_without_heartbeat

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


def test_a_trials_storage_id_and_its_heartbeat_row(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'private.db'}")
    with quiet_experimental():
        optuna_storage = storage.optuna_storage(heartbeat_interval=60, grace_period=120)
    study = optuna.create_study(storage=optuna_storage, study_name="private")
    trial = study.ask()
    identifier = trial_id(trial)
    assert isinstance(identifier, int), "optuna.Trial no longer keeps its storage id"
    assert optuna_storage.get_trial(identifier).number == trial.number
    assert trial_id(study.get_trials()[0]) == identifier, "FrozenTrial lost its storage id"
    assert optuna_storage.get_heartbeat_interval() == 60
    optuna_storage.record_heartbeat(identifier)
    with storage.session() as session:
        rows = session.execute(sqlalchemy.text("SELECT trial_id FROM trial_heartbeats")).all()
    assert [row[0] for row in rows] == [identifier], "Optuna's heartbeat table changed"


def test_a_running_trial_without_a_heartbeat_is_failed_after_the_grace_period(
    tmp_path: Path,
) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'stale.db'}")
    with quiet_experimental():
        optuna_storage = storage.optuna_storage(heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(storage=optuna_storage, study_name="stale")
    beating, silent = study.ask(), study.ask()
    optuna_storage.record_heartbeat(trial_id(beating))
    fail_trials_without_heartbeat(study, storage, optuna_storage, grace_period=-1)
    states = {t.number: t.state for t in study.get_trials()}
    assert states[beating.number] == TrialState.RUNNING
    assert states[silent.number] == TrialState.FAIL
