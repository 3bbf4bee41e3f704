"""Heartbeats of a running trial: the one place skiptune relies on Optuna's private side.

Optuna records heartbeats only inside ``study.optimize``; skiptune's ask/tell loop (a total
shared by every worker) records them itself. That needs a trial's storage id, which Optuna
keeps in the private ``_trial_id``, and, to find trials that never sent a heartbeat, a read
of Optuna's ``trial_heartbeats`` table. ``tests/tuner/test_optuna_private.py`` fails loudly
if a new Optuna version changes either.
"""

from __future__ import annotations

import copy
import datetime
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from skiptune.errors import SkiptuneError
from skiptune.storage import Storage

__all__ = ["fail_trials_without_heartbeat", "heartbeats", "trial_id"]


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of a trial (Optuna's public API gives only its number in the study)."""
    return int(trial._trial_id)


@contextmanager
def heartbeats(optuna_storage: Any, trial: optuna.Trial) -> Iterator[None]:
    """Record the trial's heartbeat every interval while the block runs, as optimize() does.

    Unlike Optuna's heartbeat thread, one that cannot be written is skipped, not raised with a
    traceback: a database that went away is reported once, by the main thread, and a trial
    that misses heartbeats is at worst failed as stale and re-queued.
    """
    interval = optuna_storage.get_heartbeat_interval()
    identifier = trial_id(trial)
    stop = threading.Event()

    def beat() -> None:
        while True:
            with suppress(SkiptuneError, optuna.exceptions.OptunaError,
                          sqlalchemy.exc.SQLAlchemyError):
                optuna_storage.record_heartbeat(identifier)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"skiptune-heartbeat-{identifier}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def fail_trials_without_heartbeat(
    study: optuna.Study, storage: Storage, optuna_storage: Any, grace_period: int
) -> None:
    """Fail and re-queue RUNNING trials that never sent a heartbeat and began long ago.

    Optuna's stale check passes over a trial with no heartbeat at all, and a worker killed
    between ``ask()`` and its first heartbeat leaves exactly that: a trial that would hold a
    slot of the total for ever. Call under the study's lock, where trials are asked.
    """
    now = datetime.datetime.now()          # Optuna stamps datetime_start with local time
    old = {
        trial_id(t): t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if t.datetime_start is not None
        and (now - t.datetime_start).total_seconds() > grace_period
    }
    if not old:
        return
    query = sqlalchemy.text(
        "SELECT trial_id FROM trial_heartbeats WHERE trial_id IN :ids"
    ).bindparams(sqlalchemy.bindparam("ids", expanding=True))
    with storage.session() as session:
        beating = set(session.scalars(query, {"ids": list(old)}))
    retry = optuna_storage.get_heartbeat_stale_trial_callback()
    for identifier in sorted(set(old) - beating):
        try:
            if not optuna_storage.set_trial_state_values(identifier, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue                      # another worker failed it first
        if retry is not None:
            retry(study, copy.deepcopy(optuna_storage.get_trial(identifier)))
