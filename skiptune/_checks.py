"""The whole-number check every validator shares."""

from __future__ import annotations

import numbers

__all__ = ["is_whole"]


def is_whole(value: object) -> bool:
    """True for an integer of any integral type (``int``, numpy's integers), never a bool.

    ``True`` is an ``int`` in Python, but ``steps=True`` is a mistake, not one step; an
    integral float (``10.0``) is not whole here either.
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
