"""The study database as one object: :class:`Storage` and :func:`open_storage`.

A thin facade over the parts in this package: engines and their errors (``_engine``), named
locks (``_locks``), skiptune's tables and their versions (``_schema``), and the records
(``_runs``, ``_front``, ``_stats``), which are handed this storage's session factory.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from skiptune._optuna import quiet_experimental
from skiptune._optuna_private import rdb_storage_logger
from skiptune.errors import StorageError
from skiptune.storage._engine import (
    DEFAULT_RETRY_SECONDS,
    check_sqlite_path,
    database_error,
    driver_line,
    engine_kwargs,
    make_sqlite_transactions_immediate,
    resolve_retry_seconds,
    retry_connections,
)
from skiptune.storage._front import FrontRecord, front_records, update_front
from skiptune.storage._locks import file_lock, row_lock
from skiptune.storage._runs import RunRecord, record_run, runs
from skiptune.storage._schema import check_readable_schema, prepare_schema, refuse_foreign_sqlite
from skiptune.storage._stats import DatabaseStatisticsCache
from skiptune.storage._url import mask_url, normalise_url

__all__ = ["Storage", "open_storage"]


class Storage:
    """skiptune's view of one study database (the same one that holds Optuna's tables).

    Build it with :func:`open_storage`. ``url`` carries the password, for connecting only;
    ``display_url`` is what may be printed, logged or stored. A context manager:
    ``with open_storage(url) as storage:`` disposes its engines (and Optuna's) at the end.
    """

    def __init__(
        self,
        url: URL,
        *,
        pool_size: int,
        max_overflow: int,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
        read_only: bool = False,
    ) -> None:
        self.url = url
        self.read_only = read_only
        self.display_url = mask_url(url)
        self.pool_size = pool_size
        self.max_overflow = max_overflow
        self.retry_seconds = retry_seconds
        self.engine = sqlalchemy.create_engine(url, **self.engine_kwargs())
        if self.is_sqlite and not read_only:
            make_sqlite_transactions_immediate(self.engine)
        else:
            retry_connections(self.engine, seconds=retry_seconds, display=self.display_url)
        self._thread_lock = threading.Lock()
        self._optuna_storages: dict[tuple[int | None, int | None], Any] = {}
        self.statistics_cache = DatabaseStatisticsCache(self.session)

    # -- engine ---------------------------------------------------------------------------

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    def engine_kwargs(self) -> dict[str, Any]:
        """Engine options for this backend, also given to Optuna's RDBStorage."""
        return engine_kwargs(self.url, read_only=self.read_only, pool_size=self.pool_size,
                             max_overflow=self.max_overflow)

    def optuna_storage(
        self,
        *,
        heartbeat_interval: int | None = None,       # seconds between a trial's heartbeats
        grace_period: int | None = None,             # seconds without one before it is stale
        stale_trial_callback: Callable[..., None] | None = None,
    ) -> Any:
        """Optuna's ``RDBStorage`` on this database, with heartbeats when asked for.

        One instance per heartbeat setting, reused: each holds its own connection pool, so a
        process keeps at most two (plain, and with heartbeats) whatever it opens.
        """
        import optuna

        key = (heartbeat_interval, grace_period)
        if key in self._optuna_storages:
            return self._optuna_storages[key]
        kwargs: dict[str, Any] = {}
        if heartbeat_interval is not None:
            kwargs["heartbeat_interval"] = heartbeat_interval
            kwargs["grace_period"] = grace_period
            kwargs["heartbeat_stale_trial_callback"] = stale_trial_callback
        url = self.url.render_as_string(hide_password=False)
        if self.read_only:
            if not self._has_optuna_tables():
                # A search killed between skiptune's tables and Optuna's, or one creating
                # Optuna's now, has no study yet: an empty storage reads as exactly that.
                self._optuna_storages[key] = optuna.storages.InMemoryStorage()
                return self._optuna_storages[key]
            kwargs["skip_table_creation"] = True      # and no lock: nothing is created
        try:
            # Optuna creates its tables on first use; two processes doing that at once on a
            # server collide ("duplicate key ... pg_type"), so creation takes turns.
            creating = contextlib.nullcontext() if self.read_only else self.lock("optuna-tables")
            with creating, quiet_experimental():
                storage = optuna.storages.RDBStorage(
                    url, engine_kwargs=self.engine_kwargs(), **kwargs
                )
        except (sqlalchemy.exc.SQLAlchemyError, RuntimeError, optuna.exceptions.OptunaError) as e:
            raise StorageError(
                f"cannot open Optuna's tables in {self.display_url}: {driver_line(e, self.url)}"
            ) from None   # not chained: the driver's text may echo the URL with its password
        if not self.is_sqlite:
            retry_connections(storage.engine, seconds=self.retry_seconds,
                               display=self.display_url)
        _drop_query_fallback_warning()
        self._optuna_storages[key] = storage
        return storage

    def _has_optuna_tables(self) -> bool:
        """Whether Optuna's tables are there and set up. Optuna's last step of setting them up
        stamps alembic's revision (in one transaction); until then the tables can exist
        without it, and Optuna would finish the set-up, which a reader cannot do."""
        try:
            with self.engine.connect() as connection:
                if "alembic_version" not in sqlalchemy.inspect(connection).get_table_names():
                    return False
                return connection.execute(sqlalchemy.text(
                    "SELECT count(*) FROM alembic_version")).scalar_one() > 0
        except sqlalchemy.exc.SQLAlchemyError as e:
            # Not chained: the driver's text may echo the URL with its password.
            raise self.database_error(e) from None

    def dispose(self) -> None:
        """Close every pooled connection, skiptune's and Optuna's (before a fork, or when done)."""
        self.engine.dispose()
        for storage in self._optuna_storages.values():
            if hasattr(storage, "engine"):             # an RDBStorage, not the empty view
                storage.engine.dispose()
        self._optuna_storages.clear()

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *_exc: object) -> None:
        """``with open_storage(url) as storage:`` closes every pool when the block ends."""
        self.dispose()

    def database_error(self, error: BaseException) -> StorageError:
        """``error`` from the database (or Optuna's wrapping of it) as one StorageError line."""
        return database_error(error, self.url, self.display_url)

    # -- transactions and locks ------------------------------------------------------------

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        try:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                yield session
        except sqlalchemy.exc.IntegrityError:
            raise
        except sqlalchemy.exc.SQLAlchemyError as e:
            # Not chained: the driver's text may echo the URL with its password.
            raise self.database_error(e) from None

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold a named lock shared by every worker on this database while the block runs.

        PostgreSQL and other servers: ``SELECT … FOR UPDATE`` on a row of ``skiptune_locks``,
        in a transaction of its own. SQLite has no row locks, so an exclusive ``flock`` on a
        file beside the database stands in (workers on one machine only).
        """
        if self.is_sqlite:
            with self._thread_lock, file_lock(Path(f"{self.url.database}.skiptune-lock")):
                yield
            return
        with row_lock(self.engine, self.session, name, translate=self.database_error):
            yield

    # -- records --------------------------------------------------------------------------

    def record_run(self, **fields: Any) -> None:
        """Add a row to ``skiptune_runs`` for one search invocation on one study."""
        record_run(self.session, **fields)

    def runs(self, *, study_name: str | None = None) -> list[RunRecord]:
        """Stored runs, oldest first, of one study or of all."""
        return runs(self.session, study_name=study_name)

    def front_records(
        self, *, group: str | None = None, kind: str | None = None
    ) -> list[FrontRecord]:
        """Stored front points (every study's tuned and baseline point), by group, NFE, kind."""
        return front_records(self.session, group=group, kind=kind)

    def update_front(
        self,
        *,
        group: str,
        study_name: str,
        points: Sequence[FrontRecord],
        on_front: Callable[[Sequence[FrontRecord]], Sequence[bool]],
    ) -> list[FrontRecord]:
        """Replace ``study_name``'s points and re-flag the group's front, in one transaction.

        Callers serialise concurrent updates of a group with :meth:`lock`.
        """
        return update_front(self.session, group=group, study_name=study_name,
                                   points=points, on_front=on_front)


def _not_query_fallback_warning(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Caught an error from sqlalchemy")


def _drop_query_fallback_warning() -> None:
    """Keep off the terminal the warning Optuna's RDB storage logs, with the whole SQL, before
    retrying a failed trials query the slow way. On a lost connection the retry fails too and
    skiptune reports that in one line of its own; when the retry works there is nothing to do.
    Adding the same filter function again is a no-op (``Filterer.addFilter``)."""
    rdb_storage_logger().addFilter(_not_query_fallback_warning)


def open_storage(
    url: str | Path | None = None,
    *,
    pool_size: int = 2,          # connections kept open per process (servers only)
    max_overflow: int = 2,       # extra connections allowed at peaks (servers only)
    must_exist: bool = False,    # refuse to create a new SQLite file (for reading results)
    retry_seconds: float | None = None,  # retry refused connections this long (servers only)
    read_only: bool = False,     # read results: never create, migrate or write anything
    optuna_only: bool = False,   # read_only: also open a plain Optuna database
) -> Storage:
    """Open (creating if needed) the study database and skiptune's tables in it.

    Args:
        url: a SQLAlchemy URL (``sqlite:///path.db``, ``postgresql+psycopg://user@host/db``)
            or a plain file path, which means SQLite; None means ``./skiptune.db``.
        must_exist: raise StorageError instead of creating a SQLite file that is not there.
        read_only: for commands that only read (best, front, studies, export, plot): the
            connection itself is read-only (SQLite ``mode=ro``, PostgreSQL
            ``default_transaction_read_only``), no table is created or migrated, no lock file
            is made, and a database without skiptune's tables (empty, another application's,
            a plain Optuna one) is refused in one line instead of being given them.
        optuna_only: with ``read_only``, a plain Optuna database is opened too, for reading
            its studies through :meth:`Storage.optuna_storage` (skiptune's own records are
            not there to read).
        retry_seconds: a server that refuses connections (down, restarting, full) is retried
            with exponential backoff (0.25 s doubling to 4 s, jittered) for this long, at
            start and whenever a connection is replaced; default $SKIPTUNE_DB_RETRY_SECONDS
            or 15. 0 tries once.
        pool_size, max_overflow: connection pool of a database server, per process. A
            searching worker keeps two pools (skiptune's and Optuna's) and uses at most two
            connections of each at once: 4 per worker with the defaults, as measured in
            ``pg_stat_activity`` (docs/search.md, "Several workers").

    Raises StorageError, in one line with any password masked, for a URL that cannot be
    parsed, a missing driver, a path in a read-only place, a file that is not a database, a
    server that refuses the connection, or tables written by a newer skiptune.
    """
    parsed = normalise_url(url)
    display = mask_url(parsed)
    if parsed.get_backend_name() == "sqlite":
        check_sqlite_path(parsed, read_only=read_only)
        if not read_only:
            refuse_foreign_sqlite(Path(str(parsed.database)), display)
        if must_exist and not Path(str(parsed.database)).exists():
            raise StorageError(
                f"no database at {parsed.database!r}; run skiptune-search first, or pass the "
                "database it wrote with db",
                field="db",
            )
    seconds = resolve_retry_seconds(retry_seconds)
    try:
        storage = Storage(
            parsed, pool_size=pool_size, max_overflow=max_overflow, retry_seconds=seconds,
            read_only=read_only,
        )
    except (sqlalchemy.exc.NoSuchModuleError, ImportError) as e:
        raise StorageError(
            f"no database driver for {display} ({driver_line(e, parsed)}); for PostgreSQL install "
            "psycopg (pip install 'psycopg[binary]') and use postgresql+psycopg://"
        ) from None   # not chained: the driver's text may echo the URL with its password
    except sqlalchemy.exc.ArgumentError as e:
        # Not chained: the driver's text may echo the URL with its password.
        raise StorageError(f"invalid database URL {display}: {driver_line(e)}") from None
    try:
        if read_only:
            check_readable_schema(storage.engine, storage.display_url, optuna_only=optuna_only)
        else:
            try:
                prepare_schema(storage.engine, storage.display_url)
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
                # Another process created the tables at the same moment: check again.
                prepare_schema(storage.engine, storage.display_url)
    except StorageError:
        storage.dispose()
        raise
    except sqlalchemy.exc.SQLAlchemyError as e:
        storage.dispose()
        reason = driver_line(e, parsed)
        if storage.is_sqlite and "file is not a database" in reason:
            raise StorageError(
                f"{parsed.database!r} is not a SQLite database; pass another path with db",
                field="db",
            ) from e
        if storage.is_sqlite and ("unable to open" in reason or "readonly" in reason):
            raise StorageError(
                f"cannot write the database {parsed.database!r} ({reason}): its place is "
                "read-only; pass a path in a writable folder with db",
                field="db",
            ) from e
        # Not chained: a server driver's text may echo the URL with its password.
        raise StorageError(f"cannot open the database {display}: {reason}") from None
    return storage
