"""A search killed with SIGKILL mid-trial resumes to its exact total, losing nothing."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from skiptune.storage import open_storage
from skiptune.tuner import StudyConfig, list_studies
from skiptune.tuner.search._front_writer import front_points_of
from tests.tuner.helpers import (
    DEMO,
    assert_runs_what_it_was_given,
    cli_env,
    default_ctrl_c,
    search_command,
    start_search,
)

pytestmark = pytest.mark.slow

STUDY = "skiptune-demo_unet-heun-nfe3"


def _states(db: Path) -> list[tuple[int, str, bool]]:
    """(number, state, evaluating) per trial; a trial is evaluating once its heartbeat starts,
    which is after all its parameters are stored."""
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=30) as connection:
        try:
            return connection.execute(
                "SELECT t.number, t.state, EXISTS (SELECT 1 FROM trial_heartbeats h"
                " WHERE h.trial_id = t.trial_id) FROM trials t ORDER BY t.number"
            ).fetchall()
        except sqlite3.OperationalError:
            return []                      # tables not created yet


def test_sigkill_mid_trial_then_rerun_reaches_the_total(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    args = ("--model", str(DEMO), "--nfe", "3", "--trials", "7", "--rungs", "16,32",
            "--db", str(db), "--device", "cpu", "--heartbeat", "1", "--grace", "3", "--quiet")
    process = start_search(*args)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        states = _states(db)
        finished = [n for n, s, _ in states if s in ("COMPLETE", "PRUNED")]
        evaluating = [n for n, s, beating in states if s == "RUNNING" and beating]
        if len(finished) >= 3 and evaluating:
            break
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    else:
        pytest.fail("the search did not reach three finished trials in time")
    process.send_signal(signal.SIGKILL)
    process.wait()
    storage = open_storage(db)
    before = {t.number: t for t in optuna.load_study(
        study_name=STUDY, storage=storage.optuna_storage()).get_trials()}
    killed = [n for n, t in before.items() if t.state == TrialState.RUNNING]
    kept = {n: t.value for n, t in before.items() if t.state in (TrialState.COMPLETE,
                                                                  TrialState.PRUNED)}
    assert len(killed) == 1 and len(kept) >= 3

    rerun = subprocess.run(search_command(*args), env=cli_env(), capture_output=True,
                           text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr

    study = optuna.load_study(study_name=STUDY, storage=storage.optuna_storage())
    trials = {t.number: t for t in study.get_trials()}
    finished = [t for t in trials.values() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 7
    assert not [t for t in trials.values() if t.state == TrialState.RUNNING]
    assert {n: trials[n].value for n in kept} == kept              # nothing finished was lost
    assert trials[killed[0]].state == TrialState.FAIL              # the zombie was failed...
    (retry,) = [t for t in trials.values() if t.system_attrs.get("failed_trial") == killed[0]]
    assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED)    # ...and re-run
    assert_runs_what_it_was_given(retry, trials[killed[0]])

    config = StudyConfig.from_dict(study.user_attrs["skiptune_config"])
    expected = {(p.kind, p.value, p.trial_number) for p in front_points_of(study, config)}
    stored = {(r.kind, r.value, r.trial_number) for r in storage.front_records()}
    assert stored == expected
    (summary,) = list_studies(storage)
    assert summary.finished == summary.trials_total == 7 and summary.running == 0


@pytest.mark.parametrize("stop", ["INT", "TERM"], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_on_the_command_fails_the_trial_and_says_how_to_resume(
    stop: str, tmp_path: Path
) -> None:
    db = tmp_path / "s.db"
    # The signal lands inside the second trial's sampling, by a fail point rather than a timer
    # (a timed signal missed when a busy machine let the search finish first): batches of 16 at
    # 3 NFE make a trial of rungs 16,64 call the denoiser 12 times, so call 17 is in trial 2.
    env = {**cli_env(), "SKIPTUNE_FAILPOINTS": f"sampling-step:17:{stop}"}
    process = subprocess.Popen(
        search_command("--model", str(DEMO), "--nfe", "3", "--trials", "5", "--rungs", "16,64",
                       "--batch-size", "16", "--no-pruning", "--db", str(db), "--device",
                       "cpu", "--quiet"),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=default_ctrl_c,
    )
    _, err = process.communicate(timeout=180)
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("error: interrupted")
    assert "rerun the same command" in err and "Traceback" not in err
    storage = open_storage(db)
    study = optuna.load_study(study_name=STUDY, storage=storage.optuna_storage())
    trials = study.get_trials()
    (interrupted,) = [t for t in trials if t.state == TrialState.FAIL]
    assert interrupted.number == 1 and interrupted.user_attrs["failure_kind"] == "interrupted"
    (queued,) = [t for t in trials if t.system_attrs.get("failed_trial") == interrupted.number]
    assert queued.state == TrialState.WAITING and queued.params == interrupted.params
    # The database is consistent: intact, nothing left RUNNING, the completed trial kept with
    # its value, and the stored front the one its trials give.
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    (complete,) = [t for t in trials if t.state == TrialState.COMPLETE]
    assert complete.number == 0 and complete.value is not None
    config = StudyConfig.from_dict(study.user_attrs["skiptune_config"])
    expected = {(p.kind, p.value, p.trial_number) for p in front_points_of(study, config)}
    assert {(r.kind, r.value, r.trial_number) for r in storage.front_records()} == expected
    storage.dispose()
