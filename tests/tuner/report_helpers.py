"""A tiny searched and validated database with sample grids, shared by the report's tests."""

from __future__ import annotations

import shutil
from pathlib import Path

from skiptune.objectives import ObjectiveSettings
from skiptune.tuner import SearchConfig, search
from tests.tuner.helpers import DEMO

# The tiny search: the demo model at 3 NFE, 4 trials, rungs of 8 and 16, validated.
TINY_SEARCH = SearchConfig(nfe=3, trials=4, objective=ObjectiveSettings(rungs=(8, 16)),
                           heartbeat_interval=1, grace_period=3)


def searched_database(folder: Path) -> Path:
    """``folder/study.db`` searched with TINY_SEARCH (its grids in ``study.artifacts/``)."""
    db = folder / "study.db"
    search(DEMO, TINY_SEARCH, db=db)
    return db


def copy_database(db: Path, folder: Path) -> Path:
    """A copy of ``db`` and its artifact folder in ``folder`` (tests must not share changes)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(db, folder / db.name)
    artifacts = db.with_name(f"{db.stem}.artifacts")
    if artifacts.is_dir():
        shutil.copytree(artifacts, folder / artifacts.name)
    return folder / db.name
