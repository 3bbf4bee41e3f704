"""A database server that refuses connections: waited for with backoff, then one clear line."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy

from skiptune.errors import StorageError
from skiptune.storage import open_storage
from tests.reliability.helpers import kill_launched, launch
from tests.tuner.helpers import DEMO, cli_env, pg_schema, require_postgres, search_command

PASSWORD = "hunter2-secret"


@pytest.mark.slow
def test_a_closed_port_is_retried_then_reported_in_one_line_without_the_password() -> None:
    url = f"postgresql+psycopg://skiptune:{PASSWORD}@127.0.0.1:1/studies"
    env = {**cli_env(), "SKIPTUNE_DB_RETRY_SECONDS": "1.5"}
    started = time.monotonic()
    result = subprocess.run(
        search_command("--model", str(DEMO), "--nfe", "3", "--rungs", "16,32", "--db", url,
                       "--device", "cpu", "--quiet"),
        env=env, capture_output=True, text=True, timeout=120,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: cannot reach the database "
                           "postgresql+psycopg://skiptune:***@127.0.0.1:1/studies (")
    assert "Connection refused" in line and "attempts in 1." in line
    assert "check that the server runs and accepts connections at 127.0.0.1:1" in line
    assert "SKIPTUNE_DB_RETRY_SECONDS" in line
    assert PASSWORD not in result.stderr + result.stdout and "Traceback" not in result.stderr
    assert elapsed > 1.0                                 # it waited before giving up


class _Proxy:
    """A TCP forwarder to the local PostgreSQL that can go away (its port then refuses)."""

    def __init__(self) -> None:
        with socket.socket() as probe:                   # a free port, closed until start()
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._running = threading.Event()
        self._lock = threading.Lock()                    # stop() cannot miss a new connection
        self.accepted = 0

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        listener.settimeout(0.05)
        self._sockets = [listener]
        self._running.set()
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Close the port and cut every connection, as a restarting server does."""
        with self._lock:
            self._running.clear()
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets = []

    def restart_in(self, seconds: float) -> None:
        self.stop()
        threading.Timer(seconds, self.start).start()

    def _accept(self, listener: socket.socket) -> None:
        while self._running.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                if not self._running.is_set():
                    client.close()
                    return
                self.accepted += 1
                server = socket.create_connection(("127.0.0.1", 5432))
                self._sockets += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxied_url() -> Iterator[tuple[str, _Proxy]]:
    require_postgres()
    proxy = _Proxy()
    with pg_schema() as url:
        yield url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"), proxy
        kill_launched()
    proxy.stop()


def test_a_server_briefly_away_is_waited_for_at_start_and_mid_run(
    proxied_url: tuple[str, _Proxy],
) -> None:
    url, proxy = proxied_url
    threading.Timer(0.5, proxy.start).start()            # refused for half a second
    started = time.monotonic()
    storage = open_storage(url, retry_seconds=20)
    assert time.monotonic() - started > 0.4 and proxy.accepted >= 1
    optuna_storage = storage.optuna_storage()
    try:
        # Connections cut and refused for half a second: the pool's pre-ping finds them dead and
        # the reconnection waits, for skiptune's engine and Optuna's alike.
        proxy.restart_in(0.5)
        assert storage.front_records() == []
        proxy.restart_in(0.5)
        assert optuna.get_all_study_summaries(optuna_storage) == []
        with storage.engine.connect() as connection:    # named, so pg_stat_activity says whose
            assert connection.execute(sqlalchemy.text(
                "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"
            )).scalar() == f"skiptune-{os.getpid()}"
    finally:
        storage.dispose()


def test_a_server_that_answers_no_is_not_retried() -> None:
    require_postgres()
    started = time.monotonic()
    with pytest.raises(StorageError, match='database "skiptune_no_such_db" does not exist'):
        open_storage("postgresql+psycopg://postgres@127.0.0.1:5432/skiptune_no_such_db",
                     retry_seconds=30)
    assert time.monotonic() - started < 5                # a refusal by the server is final


@pytest.mark.slow
def test_a_server_gone_mid_search_ends_it_with_one_line(proxied_url: tuple[str, _Proxy]) -> None:
    url, proxy = proxied_url
    proxy.start()
    direct = sqlalchemy.create_engine(url.replace(f":{proxy.port}/", ":5432/"))
    search = launch("--model", str(DEMO), "--nfe", "3", "--rungs", "16,32", "--trials", "30",
                    "--db", url, "--device", "cpu", "--heartbeat", "1", "--quiet",
                    env={"SKIPTUNE_DB_RETRY_SECONDS": "1"})
    deadline = time.monotonic() + 120
    while not _complete_trials(direct):                  # mid-search: one trial done
        assert search.poll() is None and time.monotonic() < deadline, search.stderr.read()
        time.sleep(0.1)
    proxy.stop()                                         # and the server is gone for good
    _, err = search.communicate(timeout=120)
    direct.dispose()
    assert search.returncode == 1
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err   # not a thread's
    line = err.strip()
    # Cut mid-query, or refused when reconnecting: which one depends on the moment.
    assert line.startswith(("error: lost the connection to the database postgresql+psycopg://",
                            "error: cannot reach the database postgresql+psycopg://")), line
    assert "rerun the same command" in line or "SKIPTUNE_DB_RETRY_SECONDS" in line


def _complete_trials(engine: sqlalchemy.Engine) -> int:
    try:
        with engine.connect() as connection:
            return connection.execute(sqlalchemy.text(
                "SELECT count(*) FROM trials WHERE state = 'COMPLETE'"
            )).scalar_one()
    except sqlalchemy.exc.ProgrammingError:
        return 0                                         # Optuna's tables not there yet


def test_optunas_multi_line_query_fallback_warning_is_kept_off_the_terminal(tmp_path: Path) -> None:
    # A connection lost mid-query makes Optuna log the whole failed SQL before its fallback
    # query fails too; skiptune's own one line must be all that is printed, in every process
    # that opens Optuna's storage (a --workers child included).
    storage = open_storage(tmp_path / "studies.db")
    try:
        storage.optuna_storage()
        storage.optuna_storage(heartbeat_interval=1, grace_period=2)   # a second: no 2nd filter
    finally:
        storage.dispose()
    rdb_logger = logging.getLogger("optuna.storages._rdb.storage")

    def record(message: str) -> logging.LogRecord:
        return rdb_logger.makeRecord(rdb_logger.name, logging.WARNING, __file__, 0, message,
                                     None, None)

    assert not rdb_logger.filter(record("Caught an error from sqlalchemy: (psycopg.Operational"
                                        "Error) server closed the connection\n[SQL: SELECT ...]"))
    assert rdb_logger.filter(record("Heartbeat of trial 3 failed"))
    assert len(rdb_logger.filters) == 1


def test_a_connection_lost_inside_a_transaction_reads_as_lost_when_met_again() -> None:
    # The statement after a connection dropped mid-transaction gets SQLAlchemy's "can't
    # reconnect until invalid transaction is rolled back": the same loss, said the same way.
    from skiptune.storage._engine import database_error

    url = sqlalchemy.engine.make_url("postgresql+psycopg://u:secret@db.example/x")
    error = sqlalchemy.exc.PendingRollbackError(
        "Can't reconnect until invalid transaction is rolled back.", code="8s2b")
    message = str(database_error(error, url, "postgresql+psycopg://u:***@db.example/x"))
    assert message.startswith("lost the connection to the database postgresql+psycopg://u:***@")
    assert "rerun the same command" in message and "secret" not in message
    other = sqlalchemy.exc.PendingRollbackError("This Session's transaction has been rolled back")
    assert str(database_error(other, url, "db")).startswith("database error in db")
