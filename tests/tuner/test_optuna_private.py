"""What skiptune assumes of Optuna's private side (``skiptune/_optuna_private.py``).

One canary per use: if a new Optuna version renames the trial's storage id, the heartbeat
table, its table models, the retry system attributes or its RDB storage module's logger,
these fail first, naming it, instead of the crash tests failing for obscure ones.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from skiptune._optuna import quiet_experimental
from skiptune._optuna_private import (
    attach_artifact_meta,
    heartbeating_trials,
    optuna_table_names,
    rdb_storage_logger,
    retried_trial_numbers,
    retries_of,
    retry_attrs,
    trial_id,
)
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


def test_the_heartbeat_table_names_the_trials_that_beat(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'beats.db'}")
    with quiet_experimental():
        optuna_storage = storage.optuna_storage(heartbeat_interval=60, grace_period=120)
    study = optuna.create_study(storage=optuna_storage, study_name="beats")
    beating, silent = study.ask(), study.ask()
    optuna_storage.record_heartbeat(trial_id(beating))
    with storage.session() as session:
        found = heartbeating_trials(session, [trial_id(beating), trial_id(silent)])
    assert found == {trial_id(beating)}, "Optuna's trial_heartbeats table changed"


def test_optunas_table_models_list_the_tables_it_creates(tmp_path: Path) -> None:
    names = optuna_table_names()
    optuna.create_study(storage=f"sqlite:///{tmp_path / 'tables.db'}")
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'tables.db'}")
    try:
        created = set(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"studies", "trials", "trial_heartbeats"} <= names, (
        "optuna.storages._rdb.models no longer lists Optuna's tables")
    assert created <= names, f"Optuna creates tables its models do not list: {created - names}"


def test_the_rdb_storage_module_logs_through_the_named_logger() -> None:
    from optuna.storages import RDBStorage

    logger = rdb_storage_logger()
    assert RDBStorage.__module__ == logger.name, (
        f"Optuna's RDBStorage moved to {RDBStorage.__module__}; its warnings no longer reach "
        f"the filter on {logger.name}")


def test_retry_attrs_are_those_optunas_stale_trial_retry_writes(tmp_path: Path) -> None:
    # Optuna's own retry of a stale trial, then skiptune's retry of that retry.
    storage = f"sqlite:///{tmp_path / 'retry.db'}"
    with quiet_experimental():
        rdb = optuna.storages.RDBStorage(
            storage, heartbeat_interval=1, grace_period=1,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3))
    study = optuna.create_study(storage=rdb, study_name="retry")
    study.enqueue_trial({"x": 0.5})
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    rdb.record_heartbeat(trial_id(trial))
    with rdb.engine.begin() as connection:       # make the heartbeat old: the trial is stale
        connection.execute(sqlalchemy.text(
            "UPDATE trial_heartbeats SET heartbeat = '2000-01-01 00:00:00'"))
    with quiet_experimental():
        optuna.storages.fail_stale_trials(study)
    failed, retry = study.get_trials()
    assert failed.state == TrialState.FAIL and retry.state == TrialState.WAITING
    optunas = retry.system_attrs
    with quiet_experimental():
        assert RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == 0
    assert retried_trial_numbers([failed, retry]) == {0}, "retry_history changed"
    assert retries_of(retry) == 1 and retries_of(failed) == 0
    ours = retry_attrs(failed)
    assert {k: ours[k] for k in ("failed_trial", "retry_history")} == {
        k: optunas[k] for k in ("failed_trial", "retry_history")
    }, "Optuna's retry system attributes changed"
    assert ours["fixed_params"] == {"x": 0.5} == failed.system_attrs["fixed_params"], (
        "enqueue_trial no longer records fixed_params")


def test_attach_artifact_meta_is_read_back_as_upload_artifact_would_write_it(
    tmp_path: Path,
) -> None:
    storage = open_storage(tmp_path / "a.db")
    study = optuna.create_study(storage=storage.optuna_storage())
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    finished = study.trials[0]
    meta = optuna.artifacts.ArtifactMeta(artifact_id="0123", filename="skiptune-grid-0.png",
                                         mimetype="image/png", encoding=None)
    attach_artifact_meta(storage.engine, trial_id(finished), meta)
    fresh = optuna.load_study(study_name=study.study_name,
                              storage=open_storage(tmp_path / "a.db").optuna_storage())
    assert optuna.artifacts.get_all_artifact_meta(fresh.trials[0],
                                                  storage=fresh._storage) == [meta]
