"""Heartbeats of a running trial, recorded by skiptune's own ask/tell loop.

Optuna records heartbeats only inside ``study.optimize``; skiptune's ask/tell loop (a total
shared by every worker) records them itself. That needs a trial's storage id and, to find
trials that never sent a heartbeat, a read of Optuna's heartbeat table: both are Optuna's
private side, used through ``skiptune._optuna_private``.
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
from optuna.trial import TrialState

from skiptune._optuna_private import heartbeating_trials, trial_id
from skiptune.errors import SkiptuneError
from skiptune.storage import Storage

__all__ = ["fail_trials_without_heartbeat", "heartbeats"]


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
    with storage.session() as session:
        beating = heartbeating_trials(session, old)
    retry = optuna_storage.get_heartbeat_stale_trial_callback()
    for identifier in sorted(set(old) - beating):
        try:
            if not optuna_storage.set_trial_state_values(identifier, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue                      # another worker failed it first
        if retry is not None:
            retry(study, copy.deepcopy(optuna_storage.get_trial(identifier)))
