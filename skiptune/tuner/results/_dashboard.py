"""optuna-dashboard on a study database, with its artifact store wired in, so that each
trial's page shows the sample grid the validation stored for it."""

from __future__ import annotations

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
    with reading_storage(db) as storage:
        folder = artifact_folder(storage.url, artifacts)
        store = FileSystemArtifactStore(str(folder)) if folder and folder.is_dir() else None
        optuna_dashboard.run_server(storage.optuna_storage(), host=host, port=port,
                                    artifact_store=store)
