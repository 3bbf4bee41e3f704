"""Database URLs: normalise what the user typed, and mask passwords before anything shows it."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, quote_plus

import sqlalchemy
from sqlalchemy.engine import URL, make_url

from skiptune._secrets import is_secret_key, mask_url_text
from skiptune.errors import StorageError

__all__ = ["DEFAULT_DB", "mask_url", "normalise_url", "scrub", "url_secrets"]

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
            f"cannot parse the database URL {mask_url_text(text)!r} ({type(e).__name__}); "
            "pass a path such as skiptune.db, or a URL such as sqlite:///skiptune.db or "
            "postgresql+psycopg://user@host/db"
        ) from None   # not chained: SQLAlchemy's text quotes the URL with its password
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        database = str(Path(parsed.database).expanduser().resolve())
        parsed = parsed.set(database=database)
    return parsed


def mask_url(url: str | URL) -> str:
    """The URL as text with every secret replaced by ``***``, safe to print, log or store.

    Masked: the password of ``user:password@host`` and the value of every query parameter
    whose (percent-decoded) name names a secret (``?password=``, ``?sslpassword=``,
    ``?pass%77ord=``, ``?token=``...): :func:`skiptune._secrets.mask_url_text`, the rules
    every message is masked by. Works on text that does not parse as a URL too, masking
    more rather than less.
    """
    text = url.render_as_string(hide_password=False) if isinstance(url, URL) else str(url)
    return mask_url_text(text)


def url_secrets(url: URL) -> list[str]:
    """Every secret ``url`` carries, as given and percent-encoded, longest first: to scrub
    from a driver's message, which may echo what it was given."""
    values = [url.password] if url.password else []
    for key, value in url.query.items():
        if is_secret_key(key):
            values += [value] if isinstance(value, str) else list(value)
    found = {form for v in values if v for form in (str(v), quote(str(v), safe=""),
                                                    quote_plus(str(v)))}
    return sorted(found, key=len, reverse=True)


def scrub(text: str, url: URL | None) -> str:
    """``text`` with every secret of ``url`` replaced by ``***``."""
    if url is not None:
        for secret in url_secrets(url):
            text = text.replace(secret, "***")
    return text
