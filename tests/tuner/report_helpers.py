"""Tiny searched and validated databases with sample grids, shared by the report's tests: one
sampler at one budget, and several samplers at several budgets."""

from __future__ import annotations

import shutil
from pathlib import Path

from skiptune.objectives import ObjectiveSettings
from skiptune.tuner import SearchConfig, search
from tests.tuner.helpers import DEMO

# The tiny search: the demo model at 3 NFE, 4 trials, rungs of 8 and 16, validated.
TINY_SEARCH = SearchConfig(nfe=3, trials=4, objective=ObjectiveSettings(rungs=(8, 16)),
                           heartbeat_interval=1, grace_period=3)

# Issue 40's reproduction made small: two samplers at two budgets, 3 trials each (ρ = 1, the
# paper's schedule, one searched), one rung of 8 images, validated at its default 2 × 8 = 16
# images on seeds 8–23: the search's N and seeds differ from the validation's.
SEVERAL_SAMPLERS = SearchConfig(nfe=(3, 5), sampler=("heun", "ipndm"), trials=3,
                                objective=ObjectiveSettings(rungs=(8,)), heartbeat_interval=1,
                                grace_period=3)
_several: dict[str, Path] = {}


def searched_database(folder: Path) -> Path:
    """``folder/study.db`` searched with TINY_SEARCH (its grids in ``study.artifacts/``)."""
    db = folder / "study.db"
    search(DEMO, TINY_SEARCH, db=db)
    return db


def several_samplers_database(root: Path) -> Path:
    """``root/several.db`` searched with SEVERAL_SAMPLERS, once per test process (about 20 s
    on one core); read it, never write it."""
    if "path" not in _several:
        db = root / "several.db"
        search(DEMO, SEVERAL_SAMPLERS, db=db, device="cpu")
        _several["path"] = db
    return _several["path"]


def copy_database(db: Path, folder: Path) -> Path:
    """A copy of ``db`` and its artifact folder in ``folder`` (tests must not share changes)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(db, folder / db.name)
    artifacts = db.with_name(f"{db.stem}.artifacts")
    if artifacts.is_dir():
        shutil.copytree(artifacts, folder / artifacts.name)
    return folder / db.name
