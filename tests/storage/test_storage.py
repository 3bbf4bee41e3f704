"""The storage contract, run against SQLite and PostgreSQL alike, and its one-line errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy

from skiptune.errors import StorageError
from skiptune.storage import SCHEMA_VERSION, FrontRecord, Storage, mask_url, open_storage
from skiptune.storage import _schema as storage_schema
from tests.tuner.helpers import pg_schema, require_postgres


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "study.db")
        return
    require_postgres()
    with pg_schema() as schema_url:
        yield schema_url


def _set_version(storage: Storage, version: int) -> None:
    with storage.engine.begin() as connection:
        connection.execute(sqlalchemy.text(
            "UPDATE skiptune_schema_version SET version = :v WHERE id = 1"), {"v": version})


def test_opening_creates_the_schema_version_row(url: str) -> None:
    storage = open_storage(url)
    with storage.engine.connect() as connection:
        rows = connection.execute(sqlalchemy.text(
            "SELECT id, version FROM skiptune_schema_version")).all()
    assert rows == [(1, SCHEMA_VERSION)]
    storage.dispose()
    open_storage(url).dispose()          # reopening keeps the one row


def test_tables_of_a_newer_skiptune_are_refused(url: str) -> None:
    storage = open_storage(url)
    _set_version(storage, SCHEMA_VERSION + 1)
    storage.dispose()
    with pytest.raises(StorageError, match=r"newer skiptune .*upgrade skiptune"):
        open_storage(url)


def test_older_tables_are_upgraded_step_by_step(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = open_storage(url)
    _set_version(storage, SCHEMA_VERSION - 1)
    storage.dispose()
    applied = []
    monkeypatch.setitem(storage_schema.MIGRATIONS, SCHEMA_VERSION - 1,
                        lambda connection: applied.append(connection))
    storage = open_storage(url)
    with storage.engine.connect() as connection:
        version = connection.execute(sqlalchemy.text(
            "SELECT version FROM skiptune_schema_version")).scalar_one()
    assert len(applied) == 1 and version == SCHEMA_VERSION


def test_reference_statistics_cache_round_trips(url: str) -> None:
    cache = open_storage(url).statistics_cache
    mu, sigma = np.arange(4, dtype=np.float64), np.eye(4, dtype=np.float64) * 2.0
    assert cache.get("digits:abc") is None
    cache.put("digits:abc", mu, sigma, meta={"count": 10_000})
    got_mu, got_sigma = cache.get("digits:abc")
    np.testing.assert_array_equal(got_mu, mu)
    np.testing.assert_array_equal(got_sigma, sigma)
    assert cache.meta("digits:abc") == {"count": 10_000}
    cache.put("digits:abc", mu + 1, sigma, meta={"count": 5})     # replaces
    np.testing.assert_array_equal(cache.get("digits:abc")[0], mu + 1)


def _point(study: str, kind: str, nfe: int, value: float) -> FrontRecord:
    return FrontRecord(
        study_group="g", study_name=study, kind=kind, sampler="heun", nfe=nfe, value=value,
        metric="fd", num_samples=32, seed=0, comparison_key="k", model_fingerprint="f",
        trial_number=0, schedule={"rho_bottom": 0.6, "rho_top": 1.0, "shape": "linear",
                                  "gamma": 1.0},
    )


def test_front_update_replaces_one_study_and_reflags_the_group(url: str) -> None:
    storage = open_storage(url)

    def lowest_only(records: object) -> list[bool]:
        values = [r.value for r in records]  # type: ignore[attr-defined]
        return [v == min(values) for v in values]

    storage.update_front(group="g", study_name="a", points=[_point("a", "tuned", 9, 5.0)],
                         on_front=lowest_only)
    stored = storage.update_front(group="g", study_name="b",
                                  points=[_point("b", "tuned", 15, 3.0)], on_front=lowest_only)
    assert [(r.study_name, r.on_front) for r in stored] == [("a", False), ("b", True)]
    storage.update_front(group="g", study_name="b", points=[_point("b", "tuned", 15, 7.0)],
                         on_front=lowest_only)
    assert [(r.study_name, r.value, r.on_front) for r in storage.front_records(group="g")] == [
        ("a", 5.0, True), ("b", 7.0, False)]


def test_runs_are_recorded_without_any_password(url: str) -> None:
    storage = open_storage(url)
    storage.record_run(study_name="s", study_group="g", model_fingerprint="f", model_path="m.pt",
                       sampler="heun", nfe=9, objective_identity={"metric": "fd"},
                       config={"nfe": 9})
    (run,) = storage.runs(study_name="s")
    assert run.nfe == 9 and run.objective_identity == {"metric": "fd"}
    with storage.lock("study:s"):
        pass


def test_plain_paths_become_sqlite_and_default_is_skiptune_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    storage = open_storage()
    assert storage.display_url == f"sqlite:///{tmp_path / 'skiptune.db'}"
    assert (tmp_path / "skiptune.db").exists()


def test_unusable_databases_are_one_line_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "notes.db"
    garbage.write_text("these are my notes, not a database\n" * 10)
    cases = {
        "postgresql+psycopg://u:pw@host:notaport/db": "cannot parse the database URL",
        "/proc/skiptune-test.db": "read-only",
        str(tmp_path / "missing" / "x.db"): "does not exist",
        str(garbage): "not a SQLite database",
        "nosuchdialect://host/db": "no database driver",
        "sqlite://": "in-memory",
    }
    for url, expected in cases.items():
        with pytest.raises(StorageError) as info:
            open_storage(url)
        message = str(info.value)
        assert expected in message and "\n" not in message, (url, message)
        assert "pw@" not in message


def test_passwords_are_masked_in_errors_and_display() -> None:
    secret = "postgresql+psycopg://postgres:hunter2@127.0.0.1:1/test"
    assert mask_url(secret) == "postgresql+psycopg://postgres:***@127.0.0.1:1/test"
    with pytest.raises(StorageError) as info:
        open_storage(secret, retry_seconds=0)     # nothing listens there: no need to wait
    assert "hunter2" not in str(info.value) and "***" in str(info.value)
    assert "hunter2" not in repr(info.value.__cause__ or "")


def test_opening_a_sqlite_database_keeps_this_process_s_other_connections_locks(
    tmp_path: Path,
) -> None:
    """Closing any descriptor of a file drops every POSIX lock this process holds on it, so
    opening a database must not read the file itself while SQLite connections are open (a
    search's heartbeat thread, or a caller holding a storage). With the locks gone, another
    process believes it is the last connection, folds the WAL into the file and deletes it
    under ours: this process then reads "database disk image is malformed"."""
    import sqlite3
    import subprocess
    import sys

    db = tmp_path / "study.db"
    open_storage(db).dispose()
    held = sqlite3.connect(db)
    assert held.execute("SELECT count(*) FROM skiptune_schema_version").fetchone() == (1,)
    open_storage(db).dispose()                # must leave ``held``'s locks where they were
    subprocess.run([sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
                    "c.execute('CREATE TABLE other_process (x)'); c.commit(); c.close()",
                    str(db)], check=True)

    assert Path(f"{db}-wal").exists()         # not folded away: ``held`` is still open
    fresh = sqlite3.connect(db)
    assert fresh.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert fresh.execute("SELECT count(*) FROM other_process").fetchone() == (0,)
    fresh.close()
    held.close()


def test_a_database_killed_before_optuna_s_tables_reads_as_holding_no_study(url: str) -> None:
    """A search killed after skiptune's tables were created and before Optuna's (caching
    the reference statistics in between) leaves a database that read commands and the next
    search's check of stored studies read as empty, not as a missing ``version_info``."""
    import optuna

    open_storage(url).dispose()
    with open_storage(url, read_only=True) as reader:
        assert optuna.get_all_study_names(reader.optuna_storage()) == []
    with open_storage(url, read_only=True, optuna_only=True) as view, pytest.raises(KeyError):
        optuna.load_study(study_name="s", storage=view.optuna_storage())
    with open_storage(url) as writer:                      # a search then creates them
        assert optuna.get_all_study_names(writer.optuna_storage()) == []
    with open_storage(url, read_only=True) as reader:
        assert optuna.get_all_study_names(reader.optuna_storage()) == []


def test_optuna_s_tables_being_set_up_by_another_search_read_as_holding_no_study(
    url: str,
) -> None:
    """Two searches started together: one has created Optuna's tables and not yet stamped
    their revision, the last step of setting them up. The other's check of stored studies
    (read-only) sees no study, instead of trying to finish the set-up itself and failing on
    its read-only transaction ("cannot execute CREATE TABLE")."""
    import optuna

    with open_storage(url) as writer:
        optuna_storage = writer.optuna_storage()
        assert optuna.get_all_study_names(optuna_storage) == []
        with writer.engine.begin() as connection:        # back to before the stamp
            connection.execute(sqlalchemy.text("DROP TABLE alembic_version"))
    with open_storage(url, read_only=True, optuna_only=True) as view, pytest.raises(KeyError):
        optuna.load_study(study_name="s", storage=view.optuna_storage())
    with open_storage(url, read_only=True) as reader:
        assert optuna.get_all_study_names(reader.optuna_storage()) == []
        tables = sqlalchemy.inspect(reader.engine).get_table_names()
        assert "version_info" in tables and "alembic_version" not in tables   # read, not set up
