"""The one parser of the numbers and lists a user types: every list and spec option uses it.

ASCII only, strictly: ``int()`` and ``float()`` also read ``٣٢`` (Arabic-Indic digits),
``1_1`` (a digit separator), ``inf`` and ``nan``, and a split on commas drops an empty item
(``1,,2``) or an empty list (``''``) without a word. Here each of those is one
ConfigurationError line that says what was wrong and what to write; the command line puts
the option's name in front of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from skiptune.errors import ConfigurationError

__all__ = ["MAX_DIGITS", "parse_list", "parse_name", "parse_number", "parse_whole"]

T = TypeVar("T")

_WHOLE = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
MAX_DIGITS = 30
"""Longest whole number read (digits): far above any count skiptune takes, far below what
makes ``int()`` slow; a longer one is refused, not read."""


class _Unreadable(ConfigurationError):
    """One typed value that cannot be read; ``phrase`` says why, without the advice."""

    def __init__(self, text: str, reason: str, example: str) -> None:
        self.phrase = f"{text!r} {reason}"
        super().__init__(f"{self.phrase}; write e.g. {example}")


def _refuse(text: str, reason: str, example: str) -> ConfigurationError:
    return _Unreadable(text, reason, example)


def parse_whole(text: str, *, example: str = "64") -> int:
    """``text`` as a whole number written in ASCII digits (an optional sign, no ``_``)."""
    if _WHOLE.fullmatch(text) is None:
        raise _refuse(text, "is not a whole number in ASCII digits 0-9", example)
    if len(text.lstrip("+-")) > MAX_DIGITS:
        raise _refuse(text, f"has more than {MAX_DIGITS} digits", example)
    return int(text)


def parse_number(text: str, *, example: str = "0.5") -> float:
    """``text`` as a finite decimal number in ASCII (``1.5``, ``-2e-3``; no ``inf``, ``nan``)."""
    if _NUMBER.fullmatch(text) is None or len(text) > MAX_DIGITS * 2:
        raise _refuse(text, "is not a decimal number in ASCII digits 0-9", example)
    return float(text)


def parse_name(text: str, *, example: str = "linear") -> str:
    """``text`` as a name: an ASCII letter, then letters, digits, ``_`` or ``-``."""
    if _NAME.fullmatch(text) is None:
        raise _refuse(text, "is not a name (ASCII letters, digits, _ or -)", example)
    return text


def parse_list(
    text: str,
    item: Callable[[str], T],
    *,
    what: str,
    example: str,
    count: int | None = None,
) -> tuple[T, ...]:
    """``text`` as comma-separated items, each read by ``item``; spaces around an item are
    allowed. An empty list, an empty item (``1,,2``, a trailing comma), an item ``item``
    refuses or, with ``count``, another number of items is one ConfigurationError:
    "expected [count] ``what`` like ``example``, got ``text``: the reason"."""
    expected = f"expected {f'{count} ' if count is not None else ''}{what} like {example}"

    def refuse(reason: str) -> ConfigurationError:
        return ConfigurationError(f"{expected}, got {text!r}: {reason}")

    if not text.strip():
        raise refuse("it is empty")
    parts = [part.strip() for part in text.split(",")]
    for position, part in enumerate(parts, start=1):
        if not part:
            raise refuse(f"item {position} is empty")
    if count is not None and len(parts) != count:
        raise refuse(f"{len(parts)} given")
    values = []
    for position, part in enumerate(parts, start=1):
        try:
            values.append(item(part))
        except _Unreadable as e:
            raise refuse(f"item {position} {e.phrase}") from None
    return tuple(values)
