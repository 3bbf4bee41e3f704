"""What the crash tests read back from a study database, independent of the code under test."""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import sqlalchemy
from optuna.trial import TrialState

from skiptune.storage import Storage
from skiptune.storage._stats import array_from_bytes
from skiptune.tuner import StudyConfig
from skiptune.tuner.search._front_writer import front_flags, front_points_of
from skiptune.tuner.search._space import queued_schedules
from skiptune.tuner.study._record import ROLE_ATTR, is_finished
from tests.tuner.helpers import cli_env, search_command

STUDY = "skiptune-demo_unet-heun-nfe3"
KILLED = -signal.SIGKILL                  # Popen.returncode of a process killed by SIGKILL

# state, value, params, failure kind (JSON text, or None)
TrialRow = tuple[str, float | None, tuple[tuple[str, float], ...], str | None]

LAUNCHED: list[subprocess.Popen] = []      # killed after each test (conftest), pass or fail


def launch(*args: str, failpoint: str | None = None, cache: Path | None = None,
           env: dict[str, str] | None = None) -> subprocess.Popen:
    """``skiptune-search ARGS`` in a subprocess, optionally set to die at a fail point."""
    env = {**cli_env(), **(env or {})}
    env.pop("SKIPTUNE_FAILPOINTS", None)
    if failpoint is not None:
        env["SKIPTUNE_FAILPOINTS"] = failpoint
    if cache is not None:
        env["SKIPTUNE_CACHE_DIR"] = str(cache)
    process = subprocess.Popen(search_command(*args), env=env, cwd=Path(__file__).parents[2],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    LAUNCHED.append(process)
    return process


def kill_launched() -> None:
    """SIGKILL every search this module started that still runs (a test ended early)."""
    while LAUNCHED:
        process = LAUNCHED.pop()
        if process.poll() is None:
            process.kill()
        process.communicate()


def terminal_trials(engine: sqlalchemy.Engine) -> dict[int, TrialRow]:
    """Every trial of the study in a final state (COMPLETE, PRUNED, FAIL), read with plain SQL.

    Empty while Optuna's tables or the study do not exist yet.
    """
    rows_sql = sqlalchemy.text(
        "SELECT t.number, t.state, v.value, a.value_json FROM trials t "
        "JOIN studies s USING (study_id) "
        "LEFT JOIN trial_values v ON v.trial_id = t.trial_id "
        "LEFT JOIN trial_user_attributes a ON a.trial_id = t.trial_id AND a.key = 'failure_kind' "
        "WHERE s.study_name = :name AND t.state IN ('COMPLETE', 'PRUNED', 'FAIL')"
    )
    params_sql = sqlalchemy.text(
        "SELECT t.number, p.param_name, p.param_value FROM trial_params p "
        "JOIN trials t USING (trial_id) JOIN studies s USING (study_id) "
        "WHERE s.study_name = :name"
    )
    try:
        with engine.connect() as connection:
            rows = connection.execute(rows_sql, {"name": STUDY}).all()
            params: dict[int, list[tuple[str, float]]] = {}
            for number, name, value in connection.execute(params_sql, {"name": STUDY}):
                params.setdefault(number, []).append((name, value))
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.ProgrammingError):
        return {}                         # Optuna's tables are not there yet
    return {
        number: (str(state), value, tuple(sorted(params.get(number, []))), kind)
        for number, state, value, kind in rows
    }


def finished_count(trials: dict[int, TrialRow]) -> int:
    """Trials that count toward the total: complete, pruned, or failed with non-finite samples."""
    return sum(
        state in ("COMPLETE", "PRUNED") or kind == '"non-finite"'
        for state, _value, _params, kind in trials.values()
    )


def assert_nothing_lost(before: dict[int, TrialRow], after: dict[int, TrialRow]) -> int:
    """Every trial final in ``before`` is unchanged in ``after``; returns how many differ."""
    lost = {n: row for n, row in before.items() if after.get(n) != row}
    assert not lost, f"finished trials lost or changed: {lost} → {[after.get(n) for n in lost]}"
    return len(lost)


def statistics_rows(engine: sqlalchemy.Engine) -> list[dict[str, Any]]:
    """The cached reference statistics, each decoded; a torn entry fails to decode here."""
    try:
        with engine.connect() as connection:
            rows = connection.execute(sqlalchemy.text(
                "SELECT key, mu, sigma, meta FROM skiptune_reference_statistics"
            )).all()
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.ProgrammingError):
        return []
    decoded = []
    for key, mu, sigma, meta in rows:
        mu_array, sigma_array = array_from_bytes(mu), array_from_bytes(sigma)
        dim = mu_array.shape[0]
        assert mu_array.shape == (dim,) and sigma_array.shape == (dim, dim), key
        assert np.isfinite(mu_array).all() and np.isfinite(sigma_array).all(), key
        decoded.append({"key": key, "mu": mu_array, "sigma": sigma_array,
                        "meta": json.loads(meta)})
    return decoded


def check_study(storage: Storage, total: int) -> list[optuna.trial.FrozenTrial]:
    """The end state a crashed-and-resumed study must reach; returns its trials.

    Exactly ``total`` finished trials, none RUNNING, each queued schedule (baseline and the
    paper's) finished exactly once, and the stored front equal to one recomputed from the
    trials, on-front flags included.
    """
    study = optuna.load_study(study_name=STUDY, storage=storage.optuna_storage())
    trials = study.get_trials()
    finished = [t for t in trials if is_finished(t)]
    assert len(finished) == total, Counter(t.state for t in trials)
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    config = StudyConfig.from_dict(study.user_attrs["skiptune_config"])
    queued = Counter(
        (role, json.dumps(params, sort_keys=True))
        for params, role in queued_schedules(config.space)
    )
    measured = Counter(
        (t.user_attrs[ROLE_ATTR], json.dumps(t.params, sort_keys=True))
        for t in finished if ROLE_ATTR in t.user_attrs
    )
    assert measured == queued, f"queued schedules measured {measured}, expected {queued}"

    expected = front_points_of(study, config)
    expected_flags = front_flags(expected)
    stored = storage.front_records(group=config.group)
    assert [(r.kind, r.value, r.trial_number, r.on_front) for r in sorted(stored, key=_kind)] == [
        (r.kind, r.value, r.trial_number, flag)
        for r, flag in sorted(zip(expected, expected_flags, strict=True), key=lambda p: p[0].kind)
    ]
    return trials


def _kind(record: Any) -> str:
    return str(record.kind)


def stale_failed(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """Trials failed for their worker's silence (no failure attribute: no code of ours ran)."""
    return [t for t in trials if t.state == TrialState.FAIL and "failure_kind" not in t.user_attrs]



def retries_of(
    failed: optuna.trial.FrozenTrial, trials: list[optuna.trial.FrozenTrial]
) -> list[optuna.trial.FrozenTrial]:
    """The trials queued to re-run ``failed`` itself (the last entry of their retry history)."""
    return [t for t in trials if t.system_attrs.get("retry_history", [None])[-1] == failed.number]
