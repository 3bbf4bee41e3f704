"""What a search reports while it runs: plain, picklable, keyword-only records for a callback.

The library never prints; the CLI renders these (rich progress), and worker processes send
them to the parent through a queue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BatchSizeReduced",
    "CandidateValidated",
    "EventCallback",
    "Note",
    "ReferenceSampled",
    "RungDone",
    "SearchEvent",
    "StudyDone",
    "StudyStarted",
    "TrialFinished",
    "TrialStarted",
    "Waiting",
    "WorkerLost",
]


@dataclass(frozen=True, kw_only=True)
class StudyStarted:
    study_name: str
    nfe: int
    sampler: str
    trials_total: int
    finished: int               # trials already finished when this run began
    resumed: bool
    worker: int = 0


@dataclass(frozen=True, kw_only=True)
class TrialStarted:
    study_name: str
    trial_number: int
    schedule: dict[str, Any]
    role: str                   # "baseline", "paper" or "search"
    finished: int
    trials_total: int
    worker: int = 0


@dataclass(frozen=True, kw_only=True)
class RungDone:
    study_name: str
    trial_number: int
    rung_index: int
    num_samples: int
    value: float
    worker: int = 0


@dataclass(frozen=True, kw_only=True)
class TrialFinished:
    study_name: str
    trial_number: int
    state: str                  # "complete", "pruned" or "failed"
    value: float | None
    schedule: dict[str, Any]
    best_value: float | None
    baseline_value: float | None
    finished: int
    trials_total: int
    seconds: float
    reason: str = ""
    worker: int = 0


@dataclass(frozen=True, kw_only=True)
class BatchSizeReduced:
    """A batch of ``failed`` images ran out of memory; batches now hold at most ``batch_size``.

    The trial goes on with smaller batches and measures the same value (every sample has its
    own seed); only throughput drops. Sent once per halving, not per batch.
    """

    study_name: str
    trial_number: int
    failed: int
    batch_size: int
    reason: str                 # the allocator's message, first line
    worker: int = 0


@dataclass(frozen=True, kw_only=True)
class Waiting:
    """Every remaining slot is held by a running trial; wait for it to end or go stale."""

    study_name: str
    running: int
    seconds: float
    worker: int = 0


@dataclass(frozen=True, kw_only=True)
class StudyDone:
    study_name: str
    summary: Any                # a StudySummary
    worker: int = 0


@dataclass(frozen=True, kw_only=True)
class CandidateValidated:
    """One of a finished study's best schedules (or ρ = 1) re-scored on fresh seeds."""

    study_name: str
    trial_number: int
    role: str
    schedule: dict[str, Any]
    search_value: float         # its value on the search's seeds
    value: float | None         # at ``num_samples`` on fresh seeds; None: non-finite samples
    num_samples: int
    block: int = 0              # the seed block: b · num_samples seeds after the first
    worker: int = 0


@dataclass(frozen=True, kw_only=True)
class ReferenceSampled:
    """The self-reference (``--ref self``) is being sampled, once: ``done`` of ``total``
    samples so far (0 when it starts). Its statistics are then cached in the database;
    ``cached``: they were found there, and nothing is sampled (sent once, ``done == total``)."""

    source: str                 # the canonical spec, e.g. "self:heun:79:1024"
    done: int
    total: int
    cached: bool = False
    worker: int = 0


@dataclass(frozen=True)
class WorkerLost:
    """Worker process ``worker`` died (``exit_code``, negative: killed by that signal), and the
    others finished every study to its total: the results stand, the loss is worth a line."""

    worker: int
    exit_code: int | None


@dataclass(frozen=True, kw_only=True)
class Note:
    """One line the user should read with the results (e.g. that the reference comes from
    another Inception port than the features), reported once per search."""

    message: str


SearchEvent = (
    StudyStarted | TrialStarted | RungDone | TrialFinished | BatchSizeReduced | Waiting
    | StudyDone | WorkerLost | CandidateValidated | ReferenceSampled | Note
)
EventCallback = Callable[[SearchEvent], None]
