"""optuna-dashboard on a study database, with its artifact store wired in, so that each
trial's page shows the sample grid the validation stored for it."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

from optuna.artifacts import FileSystemArtifactStore

from skiptune._install import install_hint
from skiptune.errors import ConfigurationError
from skiptune.tuner.results._reading import reading_storage

__all__ = ["serve_dashboard"]


def serve_dashboard(
    db: str | Path | None = None,
    *,
    host: str = "127.0.0.1",               # only this machine, unless asked otherwise
    port: int = 8080,
    artifacts: str | Path | None = None,   # the grids' folder; default beside a SQLite file
) -> None:
    """Serve optuna-dashboard on ``db`` at http://host:port until interrupted.

    The database is opened read-only, as every results reader opens it. Needs the
    ``dashboard`` extra; without it, one ConfigurationError line says how to install it.
    """
    try:
        import optuna_dashboard
    except ImportError as e:
        raise ConfigurationError(
            f"skiptune dashboard needs optuna-dashboard: {install_hint('dashboard')}"
        ) from e
    from skiptune.storage import artifact_folder

    if not 0 < port < 65536:
        raise ConfigurationError(f"port must lie in 1..65535, got {port}", field="port")
    _check_address(host, port)
    with reading_storage(db) as storage:
        folder = artifact_folder(storage.url, artifacts)
        store = FileSystemArtifactStore(str(folder)) if folder and folder.is_dir() else None
        try:
            optuna_dashboard.run_server(storage.optuna_storage(), host=host, port=port,
                                        artifact_store=store)
        except OSError as e:       # binding fails before serving: a busy port, a foreign host
            raise _serving_error(e, host=host, port=port) from e


def _check_address(host: str, port: int) -> None:
    """Refuse a ``host`` this machine cannot resolve, or an address it cannot listen on (a
    busy port), before the database is opened and before the server prints its banner."""
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM)[0]
    except (OSError, UnicodeError) as e:
        raise ConfigurationError(
            f"host {host[:100]!r} cannot be resolved ({e.args[-1] if e.args else e}); pass an "
            "address of this machine, e.g. 127.0.0.1 or 0.0.0.0 for every interface",
            field="host",
        ) from e
    try:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as the server does
            probe.bind(address)
    except OSError as e:
        raise _serving_error(e, host=host, port=port) from e


def _serving_error(error: OSError, *, host: str, port: int) -> ConfigurationError:
    if error.errno == errno.EADDRINUSE:
        why = "the port is in use by another program; pass another port"
    elif error.errno == errno.EACCES:
        why = "permission denied: ports below 1024 need privileges; pass e.g. port 8080"
    else:
        why = f"{error.strerror or error}; pass an address of this machine, e.g. host 127.0.0.1"
    return ConfigurationError(f"cannot serve the dashboard on {host}:{port}: {why}",
                              field=("port", "host"))
