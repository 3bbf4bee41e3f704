"""The whole-number check every validator shares, and the largest seed."""

from __future__ import annotations

import numbers
from typing import TypeGuard

__all__ = ["MAX_SEED", "is_whole"]

MAX_SEED = 2**63 - 1
"""The largest seed a ``torch.Generator`` takes; no sample's seed may pass it."""


def is_whole(value: object) -> TypeGuard[int]:
    """True for an integer of any integral type (``int``, numpy's integers), never a bool.

    ``True`` is an ``int`` in Python, but ``steps=True`` is a mistake, not one step; an
    integral float (``10.0``) is not whole here either. (Typed as a guard for ``int``:
    numpy's integers behave as one wherever skiptune uses them.)
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
