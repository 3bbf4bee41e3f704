"""Database URLs: normalise what the user typed, and mask passwords before anything shows it."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote, quote_plus, unquote_plus

import sqlalchemy
from sqlalchemy.engine import URL, make_url

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
            f"cannot parse the database URL {_mask_text(text)!r} ({type(e).__name__}); pass a "
            "path such as skiptune.db, or a URL such as sqlite:///skiptune.db or "
            "postgresql+psycopg://user@host/db"
        ) from None   # not chained: SQLAlchemy's text quotes the URL with its password
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        database = str(Path(parsed.database).expanduser().resolve())
        parsed = parsed.set(database=database)
    return parsed


# Query keys that carry a secret (libpq's password and sslpassword, and the usual spellings of
# tokens); passfile, sslkey and sslcert name files, which are fine to show.
_SECRET_KEY_PARTS = ("password", "passwd", "pwd", "secret", "token", "apikey", "api_key")


def _is_secret_key(key: str) -> bool:
    name = unquote_plus(key).strip().lower()
    return any(part in name for part in _SECRET_KEY_PARTS)


def mask_url(url: str | URL) -> str:
    """The URL as text with every secret replaced by ``***``, safe to print, log or store.

    Masked: the password of ``user:password@host`` and the value of every query parameter
    whose (percent-decoded) name holds password, passwd, pwd, secret, token or apikey
    (``?password=``, ``?sslpassword=``, ``?pass%77ord=``...). Works on text that does not
    parse as a URL too, masking more rather than less. Every message that shows a database
    URL goes through here.
    """
    text = url.render_as_string(hide_password=False) if isinstance(url, URL) else str(url)
    return _mask_text(text)


def _mask_text(text: str) -> str:
    scheme, sep, rest = text.partition("://")
    if not sep:
        return _mask_query(text)
    if "@" in rest:
        # The last "@" ends the credentials; one inside the query only widens what is hidden.
        credentials, _, rest = rest.rpartition("@")
        user, colon, _password = credentials.partition(":")
        rest = f"{user}{':***' if colon else ''}@{rest}"
    return f"{scheme}://{_mask_query(rest)}"


def _mask_query(text: str) -> str:
    base, question, query = text.partition("?")
    if not question:
        return text
    fragment = ""
    if "#" in query:
        query, _, fragment = query.partition("#")
        fragment = "#***"
    parts = []
    for item in re.split(r"([&;])", query):
        key, equals, _value = item.partition("=")
        parts.append(f"{key}=***" if equals and _is_secret_key(key) else item)
    return f"{base}?{''.join(parts)}{fragment}"


def url_secrets(url: URL) -> list[str]:
    """Every secret ``url`` carries, as given and percent-encoded, longest first: to scrub
    from a driver's message, which may echo what it was given."""
    values = [url.password] if url.password else []
    for key, value in url.query.items():
        if _is_secret_key(key):
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
