"""Open the study database: engine settings per backend, schema versioning, locks, records."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import itertools
import json
import logging
import math
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import event, inspect, select
from sqlalchemy.engine import URL, Engine
from sqlalchemy.orm import Session

from skiptune._failpoints import failpoint
from skiptune.errors import StorageError
from skiptune.storage._models import (
    SCHEMA_VERSION,
    Base,
    FrontPointRow,
    LockRow,
    RunRow,
    SchemaVersionRow,
    skiptune_version,
    utcnow,
)
from skiptune.storage._stats import DatabaseStatisticsCache
from skiptune.storage._url import mask_url, normalise_url, scrub

__all__ = [
    "MIGRATIONS",
    "FrontRecord",
    "NoSkiptuneDatabaseError",
    "RunRecord",
    "Storage",
    "open_storage",
]


class NoSkiptuneDatabaseError(StorageError):
    """A read found no skiptune database there: no file, an empty one, or no skiptune tables."""

# MIGRATIONS[v] upgrades skiptune's tables from schema version v to v + 1, inside one
# transaction. Empty while there is one version; keep every step once it ships.
MIGRATIONS: dict[int, Callable[[sqlalchemy.Connection], None]] = {}

_SQLITE_BUSY_TIMEOUT_S = 60.0     # wait this long for another writer before "database is locked"
RETRY_ENV = "SKIPTUNE_DB_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 15.0      # how long a refused connection is retried (a server restart)
_CONNECT_TIMEOUT_S = 10           # one attempt on a silent host, instead of the OS's minutes
_FIRST_DELAY_S, _MAX_DELAY_S = 0.25, 4.0


@dataclass(frozen=True)
class RunRecord:
    """One search invocation as stored in ``skiptune_runs``."""

    study_name: str
    study_group: str
    model_fingerprint: str
    model_path: str
    sampler: str
    nfe: int
    objective_identity: dict[str, Any]
    config: dict[str, Any]
    skiptune_version: str
    created: Any


@dataclass(frozen=True)
class FrontRecord:
    """A measured point of a study: its best tuned schedule or its baseline (ρ = 1).

    ``value`` is the proxy value (lower is better) at ``num_samples`` images from noise seed
    ``seed``; ``comparison_key`` is equal only for points measured the same way (metric,
    features, reference, N, seed), the only ones that may be compared.
    """

    study_group: str
    study_name: str
    kind: str                          # "tuned" or "baseline"
    sampler: str
    nfe: int
    value: float
    metric: str
    num_samples: int
    seed: int
    comparison_key: str
    model_fingerprint: str
    trial_number: int
    schedule: dict[str, Any]
    baseline_value: float | None = None
    on_front: bool = False


def _first_line(error: BaseException, url: URL | None = None) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return scrub(line, url)            # drivers may echo what they were given


# Transient failures to connect: the server is down, restarting, or briefly full. SQLSTATE
# class 08 is "connection exception", 57P03 "cannot connect now", 53300 "too many
# connections". Client-side failures (refused, timed out) carry no SQLSTATE, only text.
_TRANSIENT_SQLSTATES = ("08", "57P03", "53300")
_TRANSIENT_TEXT = (
    "connection refused", "timeout expired", "timed out", "could not connect",
    "server closed the connection", "no route to host", "network is unreachable",
    "is starting up", "is shutting down", "too many clients", "connection reset",
)


def _is_transient(error: BaseException) -> bool:
    """Whether a failed connection attempt may succeed if retried (not a bad password)."""
    sqlstate = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    if sqlstate:
        return str(sqlstate).startswith(_TRANSIENT_SQLSTATES)
    text = str(error).lower()
    return any(fragment in text for fragment in _TRANSIENT_TEXT)


def _retry_connections(engine: Engine, *, seconds: float, display: str) -> None:
    """Retry ``engine``'s refused connections with exponential backoff for up to ``seconds``.

    Every new connection goes through this, at start and whenever the pool replaces one
    (``pool_pre_ping`` finds it dead), so a server that restarts mid-search is waited for.
    When time runs out: one StorageError naming the masked URL and what to check.
    """

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]) -> Any:
        started = time.monotonic()
        delay = _FIRST_DELAY_S
        for attempt in itertools.count(1):
            try:
                return dialect.connect(*cargs, **cparams)
            except dialect.loaded_dbapi.Error as e:
                if not _is_transient(e):
                    raise                     # a bad password or database: say so at once
                elapsed = time.monotonic() - started
                if elapsed >= seconds:
                    where = _host_port(engine.url)
                    raise StorageError(
                        f"cannot reach the database {display} ({_first_line(e, engine.url)}) "
                        f"after {attempt} attempt{'s' if attempt > 1 else ''} in {elapsed:.1f} "
                        f"s; check that the server runs and accepts connections at {where} "
                        f"(host, port, firewall), or set {RETRY_ENV} to wait longer"
                    ) from None
                # Jitter: workers that lost the server together do not return in lockstep;
                # the last wait is cut short so that the total stays within ``seconds``.
                time.sleep(min(delay * random.uniform(0.75, 1.25), seconds - elapsed))
                delay = min(2 * delay, _MAX_DELAY_S)
        raise AssertionError("unreachable")


def _host_port(url: URL) -> str:
    """``host:port`` the driver dials (the backend's usual port when the URL names none)."""
    port = url.port or {"postgresql": 5432, "mysql": 3306}.get(url.get_backend_name())
    return f"{url.host or 'localhost'}{f':{port}' if port else ''}"


def _resolve_retry_seconds(value: float | None) -> float:
    """Seconds to retry refused connections: ``value``, else $SKIPTUNE_DB_RETRY_SECONDS, or 15."""
    if value is None:
        text = os.environ.get(RETRY_ENV, "").strip()
        if not text:
            return DEFAULT_RETRY_SECONDS
        try:
            value = float(text)
        except ValueError:
            raise StorageError(
                f"{RETRY_ENV} must be a number of seconds such as 15, got {text!r}"
            ) from None
    if not math.isfinite(value) or value < 0:
        raise StorageError(f"the connection retry time must be ≥ 0 seconds, got {value}")
    return float(value)


class Storage:
    """skiptune's view of one study database (the same one that holds Optuna's tables).

    Build it with :func:`open_storage`. ``url`` carries the password, for connecting only;
    ``display_url`` is what may be printed, logged or stored.
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
            _make_sqlite_transactions_immediate(self.engine)
        else:
            _retry_connections(self.engine, seconds=retry_seconds, display=self.display_url)
        self._thread_lock = threading.Lock()
        self._optuna_storages: dict[tuple[int | None, int | None], Any] = {}
        self.statistics_cache = DatabaseStatisticsCache(self)

    # -- engine ---------------------------------------------------------------------------

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    def engine_kwargs(self) -> dict[str, Any]:
        """Engine options for this backend, also given to Optuna's RDBStorage.

        SQLite: a busy timeout, so a writer waits for another instead of failing at once.
        Other backends: a small pool (each worker holds a few connections: its own, Optuna's
        and the heartbeat thread's) and ``pool_pre_ping`` to survive dropped connections.
        PostgreSQL also gets a connect timeout and ``application_name`` ``skiptune-<pid>``
        (so ``pg_stat_activity`` shows whose connections they are), unless the URL sets them.
        """
        if self.is_sqlite and self.read_only:
            return {"creator": functools.partial(_connect_read_only, Path(str(self.url.database)))}
        if self.is_sqlite:
            return {"connect_args": {"timeout": _SQLITE_BUSY_TIMEOUT_S}}
        kwargs: dict[str, Any] = {
            "pool_size": self.pool_size,
            "max_overflow": self.max_overflow,
            "pool_pre_ping": True,
        }
        if self.url.get_backend_name() == "postgresql":
            defaults = {"connect_timeout": _CONNECT_TIMEOUT_S,
                        "application_name": f"skiptune-{os.getpid()}"}
            connect_args = {
                key: value for key, value in defaults.items() if key not in self.url.query
            }
            if self.read_only:
                # Every transaction of a read command is read-only on the server too; added
                # to the URL's own options (a search_path, say), which connect_args replace.
                given = self.url.query.get("options", "")
                given = given if isinstance(given, str) else " ".join(given)
                connect_args["options"] = f"{given} -c default_transaction_read_only=on".strip()
            kwargs["connect_args"] = connect_args
        return kwargs

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
            kwargs["skip_table_creation"] = True      # and no lock: nothing is created
        try:
            # Optuna creates its tables on first use; two processes doing that at once on a
            # server collide ("duplicate key ... pg_type"), so creation takes turns.
            with (contextlib.nullcontext() if self.read_only else self.lock("optuna-tables")), \
                    _quiet_experimental_warnings():
                storage = optuna.storages.RDBStorage(
                    url, engine_kwargs=self.engine_kwargs(), **kwargs
                )
        except (sqlalchemy.exc.SQLAlchemyError, RuntimeError) as e:
            raise StorageError(
                f"cannot open Optuna's tables in {self.display_url}: {_first_line(e, self.url)}"
            ) from None
        if not self.is_sqlite:
            _retry_connections(storage.engine, seconds=self.retry_seconds,
                               display=self.display_url)
        _drop_query_fallback_warning()
        self._optuna_storages[key] = storage
        return storage

    def dispose(self) -> None:
        """Close every pooled connection, skiptune's and Optuna's (before a fork, or when done)."""
        self.engine.dispose()
        for storage in self._optuna_storages.values():
            storage.engine.dispose()
        self._optuna_storages.clear()

    def database_error(self, error: BaseException) -> StorageError:
        """``error`` from the database (or Optuna's wrapping of it) as one StorageError line.

        A connection lost mid-query says so and how to go on; anything else names the URL
        and the driver's first line. Never a password.
        """
        cause = error
        if not isinstance(error, sqlalchemy.exc.SQLAlchemyError) and error.__cause__ is not None:
            cause = error.__cause__               # Optuna's StorageInternalError wraps the driver's
        reason = _first_line(cause, self.url)
        lost = isinstance(cause, sqlalchemy.exc.DBAPIError) and (
            cause.connection_invalidated or _is_transient(cause.orig)
        )
        if lost:
            return StorageError(
                f"lost the connection to the database {self.display_url} ({reason}); check that "
                "the server runs and is reachable, then rerun the same command to resume "
                "(finished trials are kept)"
            )
        return StorageError(f"database error in {self.display_url}: {reason}")

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
            raise self.database_error(e) from None

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold a named lock shared by every worker on this database while the block runs.

        PostgreSQL and other servers: ``SELECT … FOR UPDATE`` on a row of ``skiptune_locks``,
        in a transaction of its own. SQLite has no row locks, so an exclusive ``flock`` on a
        file beside the database stands in (workers on one machine only).
        """
        if self.is_sqlite:
            with self._thread_lock, _file_lock(Path(f"{self.url.database}.skiptune-lock")):
                yield
            return
        self._ensure_lock_row(name)
        try:
            with self.engine.connect() as connection, connection.begin():
                connection.execute(
                    select(LockRow.name).where(LockRow.name == name).with_for_update()
                )
                yield
        except sqlalchemy.exc.SQLAlchemyError as e:
            raise self.database_error(e) from None

    def _ensure_lock_row(self, name: str) -> None:
        with contextlib.suppress(sqlalchemy.exc.IntegrityError), self.session() as session:
            if session.get(LockRow, name) is None:
                session.add(LockRow(name=name))

    # -- runs -----------------------------------------------------------------------------

    def record_run(
        self,
        *,
        study_name: str,
        study_group: str,
        model_fingerprint: str,
        model_path: str,
        sampler: str,
        nfe: int,
        objective_identity: dict[str, Any],
        config: dict[str, Any],
    ) -> None:
        """Add a row to ``skiptune_runs`` for one search invocation on one study."""
        with self.session() as session:
            session.add(
                RunRow(
                    study_name=study_name,
                    study_group=study_group,
                    model_fingerprint=model_fingerprint,
                    model_path=model_path,
                    sampler=sampler,
                    nfe=nfe,
                    objective_identity=json.dumps(objective_identity, sort_keys=True, default=str),
                    config=json.dumps(config, sort_keys=True, default=str),
                    skiptune_version=skiptune_version(),
                    created=utcnow(),
                )
            )

    def runs(self, *, study_name: str | None = None) -> list[RunRecord]:
        """Stored runs, oldest first, of one study or of all."""
        query = select(RunRow).order_by(RunRow.id)
        if study_name is not None:
            query = query.where(RunRow.study_name == study_name)
        with self.session() as session:
            return [
                RunRecord(
                    study_name=row.study_name,
                    study_group=row.study_group,
                    model_fingerprint=row.model_fingerprint,
                    model_path=row.model_path,
                    sampler=row.sampler,
                    nfe=row.nfe,
                    objective_identity=json.loads(row.objective_identity),
                    config=json.loads(row.config),
                    skiptune_version=row.skiptune_version,
                    created=row.created,
                )
                for row in session.scalars(query)
            ]

    # -- Pareto front ---------------------------------------------------------------------

    def front_records(
        self, *, group: str | None = None, kind: str | None = None
    ) -> list[FrontRecord]:
        """Stored front points (every study's tuned and baseline point), by group, NFE, kind."""
        query = select(FrontPointRow).order_by(
            FrontPointRow.study_group, FrontPointRow.nfe, FrontPointRow.kind, FrontPointRow.id
        )
        if group is not None:
            query = query.where(FrontPointRow.study_group == group)
        if kind is not None:
            query = query.where(FrontPointRow.kind == kind)
        with self.session() as session:
            return [_record_from_row(row) for row in session.scalars(query)]

    def update_front(
        self,
        *,
        group: str,
        study_name: str,
        points: Sequence[FrontRecord],
        on_front: Callable[[Sequence[FrontRecord]], Sequence[bool]],
    ) -> list[FrontRecord]:
        """Replace ``study_name``'s points by ``points`` and re-flag the group's front, atomically.

        ``on_front`` receives every point of the group after the replacement and returns, for
        each, whether it is on the front. One transaction: a reader sees the old front or the
        new one, never a mix. Callers serialise concurrent updates of a group with
        :meth:`lock`. Returns the group's points as stored.
        """
        with self.session() as session:
            session.execute(
                sqlalchemy.delete(FrontPointRow).where(FrontPointRow.study_name == study_name)
            )
            for point in points:
                session.add(_row_from_record(point))
            session.flush()
            failpoint("front-write")       # old points deleted, new ones written, no commit
            rows = list(
                session.scalars(
                    select(FrontPointRow)
                    .where(FrontPointRow.study_group == group)
                    .order_by(FrontPointRow.id)
                )
            )
            flags = list(on_front([_record_from_row(row) for row in rows]))
            if len(flags) != len(rows):
                raise StorageError(f"on_front returned {len(flags)} flags for {len(rows)} points")
            for row, flag in zip(rows, flags, strict=True):
                row.on_front = bool(flag)
            return [_record_from_row(row) for row in rows]


def _record_from_row(row: FrontPointRow) -> FrontRecord:
    return FrontRecord(
        study_group=row.study_group,
        study_name=row.study_name,
        kind=row.kind,
        sampler=row.sampler,
        nfe=row.nfe,
        value=row.value,
        metric=row.metric,
        num_samples=row.num_samples,
        seed=row.seed,
        comparison_key=row.comparison_key,
        model_fingerprint=row.model_fingerprint,
        trial_number=row.trial_number,
        schedule=json.loads(row.schedule),
        baseline_value=row.baseline_value,
        on_front=bool(row.on_front),
    )


def _row_from_record(record: FrontRecord) -> FrontPointRow:
    return FrontPointRow(
        study_group=record.study_group,
        study_name=record.study_name,
        kind=record.kind,
        sampler=record.sampler,
        nfe=record.nfe,
        value=record.value,
        baseline_value=record.baseline_value,
        metric=record.metric,
        num_samples=record.num_samples,
        seed=record.seed,
        comparison_key=record.comparison_key,
        model_fingerprint=record.model_fingerprint,
        trial_number=record.trial_number,
        schedule=json.dumps(record.schedule, sort_keys=True),
        on_front=record.on_front,
        updated=utcnow(),
    )


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    try:
        handle = open(path, "a+")  # noqa: SIM115 (held for the lock's lifetime)
    except OSError as e:
        raise StorageError(f"cannot create the lock file {str(path)!r}: {e.strerror}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _not_query_fallback_warning(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Caught an error from sqlalchemy")


def _drop_query_fallback_warning() -> None:
    """Keep off the terminal the warning Optuna's RDB storage logs, with the whole SQL, before
    retrying a failed trials query the slow way. On a lost connection the retry fails too and
    skiptune reports that in one line of its own; when the retry works there is nothing to do.
    Adding the same filter function again is a no-op (``Filterer.addFilter``)."""
    logging.getLogger("optuna.storages._rdb.storage").addFilter(_not_query_fallback_warning)


@contextlib.contextmanager
def _quiet_experimental_warnings() -> Iterator[None]:
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def _make_sqlite_transactions_immediate(engine: Engine) -> None:
    """WAL journal and ``BEGIN IMMEDIATE`` transactions on SQLite.

    WAL lets readers go on while one process writes. A deferred transaction that reads and
    then writes fails at once ("database is locked") if another connection wrote meanwhile,
    which Optuna's heartbeat thread does every few seconds; an immediate one takes the write
    lock first and waits up to the busy timeout instead.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None   # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(_SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sqlalchemy.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A SQLite connection that cannot write, and leaves no file behind.

    ``mode=ro``: SQLite itself refuses every write, so a read command cannot create, migrate
    or journal-switch the database whatever code path runs. A WAL database that no process
    has open has no ``-wal`` file; a read-only connection would create ``-wal`` and ``-shm``
    and could not delete them, so it is then opened ``immutable`` (nothing is written, no
    lock taken: the file is only read). With a ``-wal`` present (a search is running), the
    normal read-only connection sees its latest commits.
    """
    query = "mode=ro" if Path(f"{path}-wal").exists() else "mode=ro&immutable=1"
    return sqlite3.connect(f"{path.as_uri()}?{query}", uri=True,
                           timeout=_SQLITE_BUSY_TIMEOUT_S, check_same_thread=False)


def _check_sqlite_path(url: URL, *, read_only: bool = False) -> None:
    """Refuse, in one line, a SQLite path that cannot hold a database (or, ``read_only``,
    that holds none)."""
    try:
        _check_sqlite_file(url, read_only=read_only)
    except OSError as e:
        # A name longer than the file system allows (ENAMETOOLONG), a loop of links...
        raise StorageError(
            f"--db {str(url.database)[:80]!r}… cannot be used ({e.strerror or e}); pass a "
            "shorter path such as skiptune.db"
        ) from None


def _check_sqlite_file(url: URL, *, read_only: bool) -> None:
    database = url.database
    if database in (None, "", ":memory:"):
        raise StorageError(
            "an in-memory SQLite database cannot be shared between skiptune and Optuna; "
            "pass a file path such as skiptune.db"
        )
    path = Path(database)
    if path.is_dir():
        raise StorageError(f"--db {str(path)!r} is a folder; pass a file path such as skiptune.db")
    if not path.parent.is_dir():
        raise StorageError(
            f"the folder of the database {str(path)!r} does not exist; create it or pass "
            "another path"
        )
    if read_only:
        if not path.exists():
            raise NoSkiptuneDatabaseError(
                f"no database at {str(path)!r}; run skiptune-search first, or pass the "
                "database it wrote with --db"
            )
        if path.stat().st_size == 0:
            raise NoSkiptuneDatabaseError(
                f"{str(path)!r} is an empty file, not a skiptune database; pass the database "
                "skiptune-search wrote with --db"
            )
        return
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise StorageError(
            f"the database {str(path)!r} is read-only or unreadable for you, and skiptune "
            "writes to it (trials, locks); copy it to a writable folder and pass the copy with --db"
        )
    if not path.exists() and not os.access(path.parent, os.W_OK):
        raise StorageError(
            f"cannot create the database {str(path)!r}: its folder is read-only; pass a path "
            "in a writable folder"
        )
    # Whether the file is a database is SQLite's to say (open_storage turns its "file is not a
    # database" into one line): reading the file here and closing it would drop every POSIX
    # lock this process's open SQLite connections hold on it, and let another process fold
    # and delete the WAL under them.


def _optuna_tables() -> set[str]:
    from optuna.storages._rdb import models

    return {*models.BaseModel.metadata.tables, "alembic_version"}


def _foreign_tables(tables: set[str]) -> list[str]:
    """Tables that are neither skiptune's nor Optuna's: another application's database."""
    ours = {*Base.metadata.tables, *_optuna_tables()}
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


def _refuse_foreign_sqlite(path: Path, display: str) -> None:
    """Refuse another application's SQLite file before a writing connection touches it (even
    switching it to WAL rewrites its header). A file SQLite cannot read is left to the
    writing open, which says so in one line."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        connection = _connect_read_only(path)
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
            "path with --db, e.g. skiptune.db"
        )


def _check_readable_schema(storage: Storage) -> None:
    """Refuse, without writing, a database that holds no skiptune tables or newer ones."""
    with storage.engine.connect() as connection:
        tables = set(inspect(connection).get_table_names())
        if SchemaVersionRow.__tablename__ not in tables:
            raise NoSkiptuneDatabaseError(
                f"{storage.display_url} is not a skiptune database ({_describe(tables)}); "
                "pass the database skiptune-search wrote with --db"
            )
        row = connection.execute(
            select(SchemaVersionRow.version, SchemaVersionRow.skiptune_version)
        ).first()
    stored = None if row is None else int(row[0])
    if stored is None or stored > SCHEMA_VERSION:
        raise StorageError(
            f"{storage.display_url} was written by a newer skiptune "
            f"({None if row is None else row[1]}, schema {stored}); this skiptune "
            f"({skiptune_version()}) reads schema {SCHEMA_VERSION} and older: upgrade skiptune "
            "(pip install -U skiptune)"
        )
    if stored < SCHEMA_VERSION:
        raise StorageError(
            f"{storage.display_url} holds skiptune schema {stored}, older than this skiptune's "
            f"{SCHEMA_VERSION}; a read command does not upgrade it: run skiptune-search on it "
            "once (it upgrades in place), then read it"
        )


def _prepare_schema(storage: Storage) -> None:
    """Create skiptune's tables, or upgrade older ones; refuse tables of a newer skiptune."""
    engine = storage.engine
    with engine.begin() as connection:
        tables = set(inspect(connection).get_table_names())
        foreign = _foreign_tables(tables)
        if foreign and SchemaVersionRow.__tablename__ not in tables:
            # Adding 18 tables to another application's file is not ours to do.
            raise StorageError(
                f"{storage.display_url} is not a skiptune or Optuna database "
                f"({_describe(tables)}); pass a new path with --db, e.g. skiptune.db"
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
                        f"{storage.display_url} was written by a newer skiptune ({row[1]}, "
                        f"schema {stored}); this skiptune ({skiptune_version()}) reads schema "
                        f"{SCHEMA_VERSION} and older: upgrade skiptune (pip install -U skiptune)"
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


def open_storage(
    url: str | Path | None = None,
    *,
    pool_size: int = 2,          # connections kept open per process (servers only)
    max_overflow: int = 2,       # extra connections allowed at peaks (servers only)
    must_exist: bool = False,    # refuse to create a new SQLite file (for reading results)
    retry_seconds: float | None = None,  # retry refused connections this long (servers only)
    read_only: bool = False,     # read results: never create, migrate or write anything
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
        _check_sqlite_path(parsed, read_only=read_only)
        if not read_only:
            _refuse_foreign_sqlite(Path(str(parsed.database)), display)
        if must_exist and not Path(str(parsed.database)).exists():
            raise StorageError(
                f"no database at {parsed.database!r}; run skiptune-search first, or pass the "
                "database it wrote with --db"
            )
    seconds = _resolve_retry_seconds(retry_seconds)
    try:
        storage = Storage(
            parsed, pool_size=pool_size, max_overflow=max_overflow, retry_seconds=seconds,
            read_only=read_only,
        )
    except (sqlalchemy.exc.NoSuchModuleError, ImportError) as e:
        raise StorageError(
            f"no database driver for {display} ({_first_line(e, parsed)}); for PostgreSQL install "
            "psycopg (pip install 'psycopg[binary]') and use postgresql+psycopg://"
        ) from None
    except sqlalchemy.exc.ArgumentError as e:
        raise StorageError(f"invalid database URL {display}: {_first_line(e)}") from None
    try:
        if read_only:
            _check_readable_schema(storage)
        else:
            try:
                _prepare_schema(storage)
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
                # Another process created the tables at the same moment: check again.
                _prepare_schema(storage)
    except StorageError:
        storage.dispose()
        raise
    except sqlalchemy.exc.SQLAlchemyError as e:
        storage.dispose()
        reason = _first_line(e, parsed)
        if storage.is_sqlite and "file is not a database" in reason:
            raise StorageError(
                f"{parsed.database!r} is not a SQLite database; pass another path with --db"
            ) from None
        if storage.is_sqlite and ("unable to open" in reason or "readonly" in reason):
            raise StorageError(
                f"cannot write the database {parsed.database!r} ({reason}): its place is "
                "read-only; pass a path in a writable folder with --db"
            ) from None
        raise StorageError(f"cannot open the database {display}: {reason}") from None
    return storage
