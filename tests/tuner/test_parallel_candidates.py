"""--parallel-candidates: trials asked together, sampled in one batch, measured the same."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from skiptune.errors import ConfigurationError
from skiptune.storage import open_storage
from skiptune.tuner import RungDone, SearchConfig, TrialStarted, ValidationSettings, search
from tests.tuner.helpers import DEMO, FAST_HEARTBEAT, TINY

OPTIONS = {"nfe": 3, "trials": 4, "objective": TINY, "pruning": False,
           "validation": ValidationSettings(enabled=False), **FAST_HEARTBEAT}


def _values(db: Path, name: str) -> dict[str, float]:
    study = optuna.load_study(study_name=name, storage=open_storage(db).optuna_storage())
    return {str(sorted(t.params.items())): float(t.value) for t in study.get_trials()}


def test_batched_trials_measure_what_sequential_trials_measure(tmp_path: Path) -> None:
    (one,) = search(DEMO, SearchConfig(**OPTIONS), db=tmp_path / "one.db", device="cpu")
    events: list[object] = []
    (two,) = search(DEMO, SearchConfig(parallel_candidates=2, **OPTIONS), db=tmp_path / "two.db",
                    device="cpu", on_event=events.append)
    assert two.finished == 4 and two.complete == 4
    # The baseline and the paper's three schedules: the same four, in two batches of two.
    started = [e.finished for e in events if isinstance(e, TrialStarted)]
    assert started == [0, 1, 2, 3]
    kinds = [type(e).__name__ for e in events if isinstance(e, TrialStarted | RungDone)]
    assert kinds[:3] == ["TrialStarted", "TrialStarted", "RungDone"]    # one batch, two trials
    sequential, batched = _values(tmp_path / "one.db", one.study_name), _values(
        tmp_path / "two.db", two.study_name)
    assert sequential.keys() == batched.keys()
    for params, value in sequential.items():
        assert math.isclose(batched[params], value, rel_tol=1e-4), params


def test_fewer_than_one_candidate_is_refused_before_any_write(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"^parallel_candidates must be"):
        search(DEMO, SearchConfig(parallel_candidates=0, **OPTIONS), db=tmp_path / "s.db")
    assert not (tmp_path / "s.db").exists()
