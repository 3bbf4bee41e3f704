"""Databases written by earlier skiptune versions open, read and resume.

Each file in ``data/`` was written by that commit's own code:

- ``written-by-b3b1d35.db``, main before the storage re-cut:
  ``skiptune-search --model skiptune/assets/demo_unet.pt --nfe 3 --trials 4 --rungs 8,16``;
- ``written-by-1e944a3.db``, main before the typed configuration (``SearchConfig`` built at
  the edge, ``StudyConfig`` stored), with a validated study: the same command;
- ``written-by-2dac84c.db``, main before the second re-cut (the tuner split into
  ``study/``, ``search/`` and ``results/``): the same command.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import optuna
import pytest

from skiptune.models import load_model
from skiptune.storage import open_storage
from skiptune.tuner import best_schedule, front_report, list_studies
from tests.tuner.helpers import DEMO, REPO, cli_env, search_command

OLDER = sorted((Path(__file__).parent / "data").glob("written-by-*.db"))
STUDY = "skiptune-demo_unet-heun-nfe3"
older_databases = pytest.mark.parametrize("old", OLDER, ids=[p.stem for p in OLDER])


def copy_of(old: Path, tmp_path: Path) -> Path:
    target = tmp_path / "old.db"
    shutil.copyfile(old, target)
    return target


def test_every_older_database_is_here() -> None:
    assert [p.stem for p in OLDER] == [
        "written-by-1e944a3", "written-by-2dac84c", "written-by-b3b1d35"
    ]


@older_databases
def test_the_results_of_an_older_database_read_back(old: Path, tmp_path: Path) -> None:
    db = copy_of(old, tmp_path)
    (summary,) = list_studies(db)
    assert (summary.study_name, summary.finished, summary.trials_total) == (STUDY, 4, 4)
    assert summary.best_value is not None and summary.baseline_value is not None
    (report,) = front_report(db)
    assert [r.nfe for r in report.tuned] == [3] and [r.nfe for r in report.baseline] == [3]
    schedule = best_schedule(db, load_model(DEMO, device="cpu"), nfe=3)
    assert schedule == summary.best_schedule
    assert db.read_bytes() == old.read_bytes(), "reading changed the file"


@older_databases
def test_a_study_of_an_older_database_resumes(old: Path, tmp_path: Path) -> None:
    db = copy_of(old, tmp_path)
    before = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{db}").get_trials()
    result = subprocess.run(
        search_command("--model", str(DEMO.relative_to(REPO)), "--nfe", "3", "--trials", "5",
                       "--rungs", "8,16", "--db", str(db)),
        env=cli_env(), cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    after = open_storage(db).optuna_storage()
    trials = optuna.load_study(study_name=STUDY, storage=after).get_trials()
    assert len([t for t in trials if t.state.is_finished()]) == 5
    for old, new in zip(before, trials, strict=False):
        assert (old.number, old.params, old.value) == (new.number, new.params, new.value)
