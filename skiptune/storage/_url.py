"""Database URLs: normalise what the user typed, and mask passwords before anything shows it."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy
from sqlalchemy.engine import URL, make_url

from skiptune.errors import StorageError

__all__ = ["DEFAULT_DB", "mask_url", "normalise_url"]

DEFAULT_DB = "skiptune.db"


def normalise_url(url: str | Path | None) -> URL:
    """Turn ``url`` into a SQLAlchemy URL: a plain path becomes ``sqlite:///<absolute path>``.

    ``None`` means ``./skiptune.db``. Anything with ``://`` is parsed as a SQLAlchemy URL
    (``sqlite:///path.db``, ``postgresql+psycopg://user@host/db``). Raises StorageError for a
    URL that cannot be parsed; its message never shows a password.
    """
    text = DEFAULT_DB if url is None else str(url)
    if not text.strip():
        raise StorageError("the database URL is empty; pass a path such as skiptune.db or a URL")
    if "://" not in text:
        return URL.create("sqlite", database=str(Path(text).expanduser().resolve()))
    try:
        parsed = make_url(text)
    except (sqlalchemy.exc.ArgumentError, ValueError) as e:
        raise StorageError(
            f"cannot parse the database URL {_mask_text(text)!r} ({type(e).__name__}); pass a "
            "path such as skiptune.db, or a URL such as sqlite:///skiptune.db or "
            "postgresql+psycopg://user@host/db"
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        database = str(Path(parsed.database).expanduser().resolve())
        parsed = parsed.set(database=database)
    return parsed


def mask_url(url: str | URL) -> str:
    """The URL as text with any password replaced by ``***``, safe to print, log or store."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return _mask_text(str(url))


def _mask_text(text: str) -> str:
    """Mask ``user:password@`` in a string that is not a parseable URL."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return text
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
