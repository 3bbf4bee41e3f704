"""Where a study database keeps its Optuna artifacts (the sample grids shown by the report
and optuna-dashboard): a folder the user names, or ``<db stem>.artifacts/`` beside SQLite."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL

__all__ = ["artifact_folder"]


def artifact_folder(url: URL, given: str | Path | None = None) -> Path | None:
    """The artifact folder of the database at ``url``: ``given`` when named, else
    ``<db stem>.artifacts/`` beside a SQLite file; None for a server database with none named
    (its images are not stored: a server has no folder beside it that every worker shares)."""
    if given is not None:
        return Path(given).expanduser()
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    database = Path(url.database)
    return database.with_name(f"{database.stem}.artifacts")
