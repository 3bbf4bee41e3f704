"""What the search needs of an objective: the contract ``ProxyObjective`` meets.

A protocol, not a base class: the trial loop and validation call exactly these members, so
any object with them (a test's, a user's own measurement) can be searched with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from skiptune.objectives import BatchReduced, CandidateReport, Evaluation, RungReport
from skiptune.schedule import TuningSchedule

__all__ = ["Objective"]


class Objective(Protocol):
    """A built objective (``skiptune.objectives.build_objective``), as the search uses it."""

    @property
    def identity(self) -> dict[str, Any]:
        """What the scores depend on; a resumed study must find the same dict."""
        ...

    def evaluate(
        self,
        schedule: TuningSchedule,
        *,
        report: RungReport | None = None,              # after each rung; may raise to stop
        on_batch_reduced: BatchReduced | None = None,  # told when a batch runs out of memory
        keep_features: bool = False,                   # keep the samples' features [N, D]
        keep_images: int = 0,                          # keep the first this many images
    ) -> Evaluation:
        """Score one schedule rung by rung (lower is better)."""
        ...

    def evaluate_many(
        self,
        schedules: Sequence[TuningSchedule],
        *,
        report: CandidateReport | None = None,         # per candidate after each rung
        on_batch_reduced: BatchReduced | None = None,  # told when a batch runs out of memory
    ) -> list[Evaluation | BaseException]:
        """Score several schedules sampled in shared batches; each candidate's outcome is
        its Evaluation or what stopped it (pruning, non-finite samples)."""
        ...

    def for_validation(self, *, num_samples: int, seed: int) -> Objective:
        """The same measurement on other seeds: one rung of ``num_samples`` images."""
        ...

    def score(self, features: np.ndarray) -> float:
        """The metric of generated features float [N, D] against the reference."""
        ...
