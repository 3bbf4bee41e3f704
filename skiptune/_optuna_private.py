"""Every use skiptune makes of Optuna's private side, each a small named function.

Optuna's public API lacks a few things skiptune needs: a trial's storage id (to record the
heartbeats ``study.optimize`` would record), the rows of its heartbeat table (to find trials
that never sent one), its table names (to tell an Optuna database from another application's),
the system attributes its stale-trial retry writes (to re-queue a trial as that retry does),
the name of its RDB storage's logger (to keep a noisy warning off the terminal), and a way to
attach an artifact to a finished trial (its public ``upload_artifact`` refuses one, and a
study's grids are drawn after its trials have finished). Nothing else in skiptune touches
Optuna's internals; each function here has a canary in ``tests/tuner/test_optuna_private.py``
that fails, naming it, when a new Optuna changes what it relies on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Collection, Mapping
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial

__all__ = [
    "attach_artifact_meta",
    "heartbeating_trials",
    "optuna_table_names",
    "rdb_storage_logger",
    "retried_trial_numbers",
    "retries_of",
    "retry_attrs",
    "trial_id",
]

# System attributes written by Optuna's RetryFailedTrialCallback (``failed_trial``,
# ``retry_history``) and by ``enqueue_trial`` (``fixed_params``).
_FAILED_TRIAL = "failed_trial"
_RETRY_HISTORY = "retry_history"
_FIXED_PARAMS = "fixed_params"


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of a trial (Optuna's public API gives only its number in the study).

    Stands in for a public ``Trial.id``: heartbeats and ``get_trial`` take the storage id.
    """
    return int(trial._trial_id)


def heartbeating_trials(session: sqlalchemy.orm.Session, ids: Collection[int]) -> set[int]:
    """Those of the trials ``ids`` that have sent at least one heartbeat.

    Reads Optuna's ``trial_heartbeats`` table: its public stale check
    (``fail_stale_trials``) passes over a trial that never sent a heartbeat at all.
    """
    query = sqlalchemy.text(
        "SELECT trial_id FROM trial_heartbeats WHERE trial_id IN :ids"
    ).bindparams(sqlalchemy.bindparam("ids", expanding=True))
    return {int(i) for i in session.scalars(query, {"ids": list(ids)})}


def attach_artifact_meta(engine: sqlalchemy.engine.Engine, trial_id: int, meta: Any) -> None:
    """Record the artifact ``meta`` (an ``optuna.artifacts.ArtifactMeta``) on a trial, finished
    or not, as ``upload_artifact`` records it on a running one.

    Writes the system attribute ``artifacts:<id>`` (JSON of the meta) straight into Optuna's
    ``trial_system_attributes`` table: ``set_trial_system_attr`` refuses a finished trial.
    ``get_all_artifact_meta`` and optuna-dashboard read it back from there.
    """
    from optuna.artifacts._upload import ARTIFACTS_ATTR_PREFIX
    from optuna.storages._rdb import models

    table = models.TrialSystemAttributeModel.__table__
    value = json.dumps(json.dumps(dataclasses.asdict(meta)))   # a JSON string, stored as JSON
    with engine.begin() as connection:
        connection.execute(table.insert().values(
            trial_id=trial_id, key=ARTIFACTS_ATTR_PREFIX + meta.artifact_id, value_json=value,
        ))


def optuna_table_names() -> set[str]:
    """The tables Optuna's RDB storage creates (and ``alembic_version``, its migrations').

    From ``optuna.storages._rdb.models``: Optuna publishes no list of its tables.
    """
    from optuna.storages._rdb import models

    return {*models.BaseModel.metadata.tables, "alembic_version"}


def rdb_storage_logger() -> logging.Logger:
    """The logger of Optuna's RDB storage module (``optuna.storages._rdb.storage``).

    Its warnings go through this private module's logger, not through ``optuna.logging``'s
    verbosity alone, so a filter on one message must be added to it by name.
    """
    return logging.getLogger("optuna.storages._rdb.storage")


def retried_trial_numbers(trials: Collection[FrozenTrial]) -> set[int]:
    """Numbers of the trials some queued trial retries (Optuna's ``retry_history``)."""
    return {n for t in trials for n in t.system_attrs.get(_RETRY_HISTORY, [])}


def retries_of(trial: FrozenTrial) -> int:
    """How often the trial's parameters have been retried before it."""
    return len(trial.system_attrs.get(_RETRY_HISTORY, []))


def retry_attrs(trial: FrozenTrial) -> Mapping[str, Any]:
    """The system attributes of a retry of ``trial``, as ``RetryFailedTrialCallback`` writes
    them (``failed_trial``: the first failure; ``retry_history``: every failure so far), with
    the failed trial's ``fixed_params`` (what ``enqueue_trial`` fixed) carried over.

    Stands in for a public way to re-queue a failed trial: the stale-trial retry and
    ``RetryFailedTrialCallback.retried_trial_number`` read these keys back.
    """
    fixed = trial.system_attrs.get(_FIXED_PARAMS)
    return {
        _FAILED_TRIAL: trial.system_attrs.get(_FAILED_TRIAL, trial.number),
        _RETRY_HISTORY: [*trial.system_attrs.get(_RETRY_HISTORY, []), trial.number],
        **({_FIXED_PARAMS: fixed} if fixed is not None else {}),
    }
