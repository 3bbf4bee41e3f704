"""skiptune's tables: their version, step-by-step migrations, and the checks that keep
another application's database (or a newer skiptune's) untouched."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import sqlalchemy
from sqlalchemy import inspect, select
from sqlalchemy.engine import Engine

from skiptune._install import UPGRADE_HINT
from skiptune._optuna_private import optuna_table_names
from skiptune._version import skiptune_version
from skiptune.errors import NoSkiptuneDatabaseError, StorageError
from skiptune.storage._engine import connect_read_only
from skiptune.storage._models import (
    SCHEMA_VERSION,
    Base,
    SchemaVersionRow,
    utcnow,
)

__all__ = ["MIGRATIONS", "check_readable_schema", "prepare_schema", "refuse_foreign_sqlite"]

# MIGRATIONS[v] upgrades skiptune's tables from schema version v to v + 1, inside one
# transaction. Empty while there is one version; keep every step once it ships.
MIGRATIONS: dict[int, Callable[[sqlalchemy.Connection], None]] = {}


def _foreign_tables(tables: set[str]) -> list[str]:
    """Tables that are neither skiptune's nor Optuna's: another application's database."""
    ours = {*Base.metadata.tables, *optuna_table_names()}
    return sorted(t for t in tables if t not in ours and not t.startswith("sqlite_"))

def _describe(tables: set[str]) -> str:
    foreign = _foreign_tables(tables)
    if not tables:
        return "it holds no tables"
    if foreign:
        shown = ", ".join(foreign[:4]) + (f" and {len(foreign) - 4} more" if len(foreign) > 4
                                          else "")
        return f"it holds another application's tables ({shown})"
    return "it is an Optuna database without skiptune's tables"

def refuse_foreign_sqlite(path: Path, display: str) -> None:
    """Refuse another application's SQLite file before a writing connection touches it (even
    switching it to WAL rewrites its header). A file SQLite cannot read is left to the
    writing open, which says so in one line."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        connection = connect_read_only(path)
        try:
            tables = {row[0] for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            connection.close()
    except sqlite3.Error:
        return
    if _foreign_tables(tables) and SchemaVersionRow.__tablename__ not in tables:
        raise StorageError(
            f"{display} is not a skiptune or Optuna database ({_describe(tables)}); pass a new "
            "path with db, e.g. skiptune.db",
            field="db",
        )

def check_readable_schema(engine: Engine, display: str, *, optuna_only: bool = False) -> None:
    """Refuse, without writing, a database that holds no skiptune tables or newer ones.

    With ``optuna_only``, a plain Optuna database (Optuna's tables, none of skiptune's) is
    readable too: a search checks its studies before giving it skiptune's tables.
    """
    with engine.connect() as connection:
        tables = set(inspect(connection).get_table_names())
        if (optuna_only and SchemaVersionRow.__tablename__ not in tables and tables
                and not _foreign_tables(tables)):
            return
        if SchemaVersionRow.__tablename__ not in tables:
            raise NoSkiptuneDatabaseError(
                f"{display} is not a skiptune database ({_describe(tables)}); "
                "pass the database skiptune-search wrote with db",
                field="db",
            )
        row = connection.execute(
            select(SchemaVersionRow.version, SchemaVersionRow.skiptune_version)
        ).first()
    stored = None if row is None else int(row[0])
    if stored is None or stored > SCHEMA_VERSION:
        raise StorageError(
            f"{display} was written by a newer skiptune "
            f"({None if row is None else row[1]}, schema {stored}); this skiptune "
            f"({skiptune_version()}) reads schema {SCHEMA_VERSION} and older: upgrade skiptune "
            f"({UPGRADE_HINT})"
        )
    if stored < SCHEMA_VERSION:
        raise StorageError(
            f"{display} holds skiptune schema {stored}, older than this skiptune's "
            f"{SCHEMA_VERSION}; a read command does not upgrade it: run skiptune-search on it "
            "once (it upgrades in place), then read it"
        )

def prepare_schema(engine: Engine, display: str) -> None:
    """Create skiptune's tables, or upgrade older ones; refuse tables of a newer skiptune."""
    with engine.begin() as connection:
        tables = set(inspect(connection).get_table_names())
        foreign = _foreign_tables(tables)
        if foreign and SchemaVersionRow.__tablename__ not in tables:
            # Adding 18 tables to another application's file is not ours to do.
            raise StorageError(
                f"{display} is not a skiptune or Optuna database "
                f"({_describe(tables)}); pass a new path with db, e.g. skiptune.db",
                field="db",
            )
        stored: int | None = None
        if SchemaVersionRow.__tablename__ in tables:
            row = connection.execute(
                select(SchemaVersionRow.version, SchemaVersionRow.skiptune_version).where(
                    SchemaVersionRow.id == 1
                )
            ).first()
            if row is not None:
                stored = int(row[0])
                if stored > SCHEMA_VERSION:
                    raise StorageError(
                        f"{display} was written by a newer skiptune ({row[1]}, "
                        f"schema {stored}); this skiptune ({skiptune_version()}) reads schema "
                        f"{SCHEMA_VERSION} and older: upgrade skiptune ({UPGRADE_HINT})"
                    )
        for version in range(SCHEMA_VERSION if stored is None else stored, SCHEMA_VERSION):
            MIGRATIONS[version](connection)
        Base.metadata.create_all(connection)
        values = {"version": SCHEMA_VERSION, "skiptune_version": skiptune_version()}
        if stored is None:
            connection.execute(
                sqlalchemy.insert(SchemaVersionRow).values(id=1, updated=utcnow(), **values)
            )
        elif stored < SCHEMA_VERSION:
            connection.execute(
                sqlalchemy.update(SchemaVersionRow)
                .where(SchemaVersionRow.id == 1)
                .values(updated=utcnow(), **values)
            )
