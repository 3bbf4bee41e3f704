"""The one filter for Optuna's ExperimentalWarning, shared by the storage and the tuner.

skiptune uses a few features Optuna marks experimental (heartbeats and their retry callback,
TPE's ``group=True``); their warnings say nothing a user can act on.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import optuna

__all__ = ["quiet_experimental"]


@contextmanager
def quiet_experimental() -> Iterator[None]:
    """Silence Optuna's ExperimentalWarning while the block runs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield
