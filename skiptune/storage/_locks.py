"""Named locks shared by every worker on one database: a row lock on a server, a file lock
beside a SQLite file (workers on one machine only)."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Callable, Iterator
from pathlib import Path

import sqlalchemy
from sqlalchemy import select
from sqlalchemy.engine import Engine

from skiptune.errors import StorageError
from skiptune.storage._models import LockRow, SessionFactory

__all__ = ["file_lock", "row_lock"]


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    try:
        handle = open(path, "a+")  # noqa: SIM115 (held for the lock's lifetime)
    except OSError as e:
        raise StorageError(f"cannot create the lock file {str(path)!r}: {e.strerror}") from e
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()



@contextlib.contextmanager
def row_lock(
    engine: Engine,
    session: SessionFactory,
    name: str,
    *,
    translate: Callable[[BaseException], StorageError],   # a database error as one line
) -> Iterator[None]:
    """Hold ``SELECT … FOR UPDATE`` on row ``name`` of ``skiptune_locks`` while the block runs,
    in a transaction of its own (the row is created first if missing)."""
    with contextlib.suppress(sqlalchemy.exc.IntegrityError), session() as transaction:
        if transaction.get(LockRow, name) is None:
            transaction.add(LockRow(name=name))
    try:
        with engine.connect() as connection, connection.begin():
            connection.execute(select(LockRow.name).where(LockRow.name == name).with_for_update())
            yield
    except sqlalchemy.exc.SQLAlchemyError as e:
        # Not chained: the driver's text may echo the URL with its password.
        raise translate(e) from None
