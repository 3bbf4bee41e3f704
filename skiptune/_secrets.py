"""The one URL masker: every secret a URL carries is ``***`` before any message shows it.

Pure text, standard library only, so that the exception base can use it: every
:class:`~skiptune.errors.SkiptuneError` line and every line the command line prints passes
through :func:`mask_secrets`. A database URL (``skiptune.storage.mask_url``) is masked by the
same rules.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

__all__ = ["has_userinfo", "is_secret_key", "mask_secrets", "mask_url_text"]

# Query keys that carry a secret (libpq's password and sslpassword, and the usual spellings of
# tokens: token, access_token, api_key, apikey, sig...); passfile, sslkey and sslcert name
# files, which are fine to show.
_SECRET_KEY_PARTS = ("password", "passwd", "pwd", "secret", "token", "apikey", "api_key",
                     "api-key", "signature", "credential")
_SECRET_KEYS = frozenset({"sig", "key"})        # Azure's SAS signature, Google's API key

# A URL inside free text: a scheme, "://", then everything up to white space or a quote.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
# A key=value pair after ?, & or ; anywhere in the text (a URL quoted without its scheme).
_PARAMETER = re.compile(r"(?<=[?&;])([^=&;?#\s'\"<>]+)=([^&;#\s'\"<>]*)")


def is_secret_key(key: str) -> bool:
    """Whether the query parameter ``key`` (percent-decoded, any case) names a secret."""
    name = unquote_plus(key).strip().lower()
    return name in _SECRET_KEYS or any(part in name for part in _SECRET_KEY_PARTS)


def has_userinfo(url: str) -> bool:
    """Whether ``url`` carries ``user@`` or ``user:password@`` before its host."""
    _scheme, sep, rest = url.partition("://")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0] if sep else ""
    return "@" in authority


def mask_url_text(text: str) -> str:
    """One URL (or text that should be one) with its password and secret parameters masked.

    The last "@" ends the credentials; one inside the query only widens what is hidden. Text
    that does not parse as a URL is masked too, more rather than less.
    """
    scheme, sep, rest = text.partition("://")
    if not sep:
        return _mask_query(text)
    if "@" in rest:
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
        parts.append(f"{key}=***" if equals and is_secret_key(key) else item)
    return f"{base}?{''.join(parts)}{fragment}"


def _mask_parameter(match: re.Match[str]) -> str:
    return f"{match.group(1)}=***" if is_secret_key(match.group(1)) else match.group(0)


def mask_secrets(text: str) -> str:
    """``text`` (a message) with every URL's password and secret query values as ``***``.

    Masked: ``user:password@`` in any ``scheme://`` URL (``postgresql://u:PW@h/db`` quoted by
    a driver or an adapter, ``http://me:pw@host/f``), and the value of every ``?key=`` or
    ``&key=`` whose name holds password, secret, token, apikey/api_key, signature or
    credential, or is sig or key (``?token=``, ``&access_token=``, ``?X-Amz-Signature=``),
    with or without a scheme.
    """
    masked = _URL_IN_TEXT.sub(lambda m: mask_url_text(m.group(0)), text)
    return _PARAMETER.sub(_mask_parameter, masked)
