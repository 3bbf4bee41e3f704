"""The whole-number check every validator shares."""

from __future__ import annotations

import numbers
from typing import TypeGuard

__all__ = ["is_whole"]


def is_whole(value: object) -> TypeGuard[int]:
    """True for an integer of any integral type (``int``, numpy's integers), never a bool.

    ``True`` is an ``int`` in Python, but ``steps=True`` is a mistake, not one step; an
    integral float (``10.0``) is not whole here either. (Typed as a guard for ``int``:
    numpy's integers behave as one wherever skiptune uses them.)
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
