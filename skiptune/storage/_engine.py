"""Engines per backend: SQLite path checks and read-only connections, connection retries
for database servers, and database errors turned into one line without a password."""

from __future__ import annotations

import functools
import itertools
import math
import os
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine

from skiptune.errors import NoSkiptuneDatabaseError, StorageError, first_line
from skiptune.storage._url import scrub

__all__ = [
    "DEFAULT_RETRY_SECONDS",
    "RETRY_ENV",
    "SQLITE_BUSY_TIMEOUT_S",
    "check_sqlite_path",
    "connect_read_only",
    "database_error",
    "driver_line",
    "engine_kwargs",
    "is_transient",
    "make_sqlite_transactions_immediate",
    "resolve_retry_seconds",
    "retry_connections",
]

SQLITE_BUSY_TIMEOUT_S = 60.0     # wait this long for another writer before "database is locked"
RETRY_ENV = "SKIPTUNE_DB_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 15.0      # how long a refused connection is retried (a server restart)
_CONNECT_TIMEOUT_S = 10           # one attempt on a silent host, instead of the OS's minutes
_FIRST_DELAY_S, _MAX_DELAY_S = 0.25, 4.0


def driver_line(error: BaseException, url: URL | None = None) -> str:
    """:func:`skiptune.errors.first_line` of the driver's own error, without ``url``'s password."""
    line = first_line(getattr(error, "orig", None) or error)
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

def is_transient(error: BaseException) -> bool:
    """Whether a failed connection attempt may succeed if retried (not a bad password)."""
    sqlstate = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    if sqlstate:
        return str(sqlstate).startswith(_TRANSIENT_SQLSTATES)
    text = str(error).lower()
    return any(fragment in text for fragment in _TRANSIENT_TEXT)

def retry_connections(engine: Engine, *, seconds: float, display: str) -> None:
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
                if not is_transient(e):
                    raise                     # a bad password or database: say so at once
                elapsed = time.monotonic() - started
                if elapsed >= seconds:
                    where = _host_port(engine.url)
                    # Not chained: the driver's text may echo the URL with its password.
                    raise StorageError(
                        f"cannot reach the database {display} ({driver_line(e, engine.url)}) "
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

def resolve_retry_seconds(value: float | None) -> float:
    """Seconds to retry refused connections: ``value``, else $SKIPTUNE_DB_RETRY_SECONDS, or 15."""
    if value is None:
        text = os.environ.get(RETRY_ENV, "").strip()
        if not text:
            return DEFAULT_RETRY_SECONDS
        try:
            value = float(text)
        except ValueError as e:
            raise StorageError(
                f"{RETRY_ENV} must be a number of seconds such as 15, got {text!r}"
            ) from e
    if not math.isfinite(value) or value < 0:
        raise StorageError(f"the connection retry time must be ≥ 0 seconds, got {value}")
    return float(value)


def engine_kwargs(
    url: URL, *, read_only: bool, pool_size: int, max_overflow: int
) -> dict[str, Any]:
    """Engine options for this backend, also given to Optuna's RDBStorage.

    SQLite: a busy timeout, so a writer waits for another instead of failing at once.
    Other backends: a small pool (each worker holds a few connections: its own, Optuna's
    and the heartbeat thread's) and ``pool_pre_ping`` to survive dropped connections.
    PostgreSQL also gets a connect timeout and ``application_name`` ``skiptune-<pid>``
    (so ``pg_stat_activity`` shows whose connections they are), unless the URL sets them.
    """
    if url.get_backend_name() == "sqlite" and read_only:
        return {"creator": functools.partial(connect_read_only, Path(str(url.database)))}
    if url.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    kwargs: dict[str, Any] = {
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        "pool_pre_ping": True,
    }
    if url.get_backend_name() == "postgresql":
        defaults = {"connect_timeout": _CONNECT_TIMEOUT_S,
                    "application_name": f"skiptune-{os.getpid()}"}
        connect_args = {key: value for key, value in defaults.items() if key not in url.query}
        if read_only:
            # Every transaction of a read command is read-only on the server too; added to
            # the URL's own options (a search_path, say), which connect_args replace.
            given = url.query.get("options", "")
            given = given if isinstance(given, str) else " ".join(given)
            connect_args["options"] = f"{given} -c default_transaction_read_only=on".strip()
        kwargs["connect_args"] = connect_args
    return kwargs


# SQLAlchemy's code for "Can't reconnect until invalid transaction is rolled back": a
# connection invalidated (lost) inside a transaction, met again by the next statement.
_INVALIDATED_IN_TRANSACTION = "8s2b"


def database_error(error: BaseException, url: URL, display: str) -> StorageError:
    """``error`` from the database (or Optuna's wrapping of it) as one StorageError line.

    A connection lost mid-query says so and how to go on; anything else names the URL
    and the driver's first line. Never a password.
    """
    cause = error
    if not isinstance(error, sqlalchemy.exc.SQLAlchemyError) and error.__cause__ is not None:
        cause = error.__cause__               # Optuna's StorageInternalError wraps the driver's
    reason = driver_line(cause, url)
    dropped = isinstance(cause, sqlalchemy.exc.DBAPIError) and (
        cause.connection_invalidated or (cause.orig is not None and is_transient(cause.orig)))
    lost = dropped or getattr(cause, "code", None) == _INVALIDATED_IN_TRANSACTION
    if lost:
        return StorageError(
            f"lost the connection to the database {display} ({reason}); check that "
            "the server runs and is reachable, then rerun the same command to resume "
            "(finished trials are kept)"
        )
    return StorageError(f"database error in {display}: {reason}")


def make_sqlite_transactions_immediate(engine: Engine) -> None:
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
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sqlalchemy.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def connect_read_only(path: Path) -> sqlite3.Connection:
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
                           timeout=SQLITE_BUSY_TIMEOUT_S, check_same_thread=False)

def check_sqlite_path(url: URL, *, read_only: bool = False) -> None:
    """Refuse, in one line, a SQLite path that cannot hold a database (or, ``read_only``,
    that holds none)."""
    try:
        _check_sqlite_file(url, read_only=read_only)
    except OSError as e:
        # A name longer than the file system allows (ENAMETOOLONG), a loop of links...
        raise StorageError(
            f"db {str(url.database)[:80]!r}… cannot be used ({e.strerror or e}); pass a "
            "shorter path such as skiptune.db",
            field="db",
        ) from e

def _check_sqlite_file(url: URL, *, read_only: bool) -> None:
    database = url.database
    if database in (None, "", ":memory:"):
        raise StorageError(
            "an in-memory SQLite database cannot be shared between skiptune and Optuna; "
            "pass a file path such as skiptune.db"
        )
    path = Path(database)
    if path.is_dir():
        raise StorageError(f"db {str(path)!r} is a folder; pass a file path such as skiptune.db",
                           field="db")
    if not path.parent.is_dir():
        raise StorageError(
            f"the folder of the database {str(path)!r} does not exist; create it or pass "
            "another path"
        )
    if read_only:
        if not path.exists():
            raise NoSkiptuneDatabaseError(
                f"no database at {str(path)!r}; run skiptune-search first, or pass the "
                "database it wrote with db",
                field="db",
            )
        if path.stat().st_size == 0:
            raise NoSkiptuneDatabaseError(
                f"{str(path)!r} is an empty file, not a skiptune database; pass the database "
                "skiptune-search wrote with db",
                field="db",
            )
        return
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise StorageError(
            f"the database {str(path)!r} is read-only or unreadable for you, and skiptune "
            "writes to it (trials, locks); copy it to a writable folder and pass the copy with db",
            field="db",
        )
    if not path.exists() and not os.access(path.parent, os.W_OK):
        raise StorageError(
            f"cannot create the database {str(path)!r}: its folder is read-only; pass a path "
            "in a writable folder"
        )
