"""Issue 38, class 19: a search on a plain Optuna database (Optuna's tables, studies skiptune
did not make) gives it skiptune's tables and keeps those studies as they are, and says so in
one note, once: not on the next search of that database, nor on a new or skiptune database."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import optuna
import pytest

from skiptune.tuner import Note, SearchConfig, ValidationSettings, search
from tests.badinput.test_classes import SEARCH, _run
from tests.tuner.helpers import DEMO, TINY

ADOPTED = "was a plain Optuna database: skiptune added its own tables beside Optuna's"


def _plain_optuna(path: Path, studies: Sequence[str]) -> dict[str, int]:
    """An Optuna database holding ``studies`` (2 trials each; none: its tables alone)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{path}"
    for name in studies or ("made-and-deleted",):
        study = optuna.create_study(study_name=name, storage=url)
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    if not studies:
        optuna.delete_study(study_name="made-and-deleted", storage=url)
    return _trials(path)


def _trials(path: Path) -> dict[str, int]:
    url = f"sqlite:///{path}"
    return {s.study_name: len(optuna.load_study(study_name=s.study_name, storage=url).trials)
            for s in optuna.get_all_study_summaries(url)}


def _adopted_notes(db: Path) -> list[str]:
    events: list[object] = []
    config = SearchConfig(nfe=3, trials=1, objective=TINY, pruning=False,
                          validation=ValidationSettings(enabled=False))
    search(DEMO, config, db=db, device="cpu", on_event=events.append)
    return [e.message for e in events if isinstance(e, Note) and "plain Optuna" in e.message]


@pytest.mark.parametrize(("studies", "said"), [
    (["theirs"], "keeps its 1 study (theirs) as it is"),
    ([], "skiptune added its own tables beside Optuna's"),
    (["a", "b", "c", "d", "e"], "keeps its 5 studies (a, b, c and 2 more) as they are"),
])
def test_a_plain_optuna_database_is_adopted_with_one_note(
    tmp_path: Path, studies: list[str], said: str
) -> None:
    db = tmp_path / "optuna.db"
    before = _plain_optuna(db, studies)
    [note] = _adopted_notes(db)
    assert ADOPTED in note and said in note and str(db) in note, note
    after = _trials(db)
    assert {name: after[name] for name in before} == before     # theirs, as they were
    assert len(after) == len(before) + 1                         # and skiptune's beside them
    assert _adopted_notes(db) == []                              # said once: it is ours now


def test_a_new_or_skiptune_database_gets_no_such_note(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    assert _adopted_notes(db) == []
    assert _adopted_notes(db) == []


def test_the_command_line_prints_the_note(tmp_path: Path) -> None:
    db = tmp_path / "optuna.db"
    _plain_optuna(db, ["theirs"])
    result = _run("search", *SEARCH, "--db", str(db), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if ADOPTED in line]
    assert len(notes) == 1 and notes[0].startswith("note: ") and "(theirs)" in notes[0]
