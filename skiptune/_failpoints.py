"""Fail points: named places where a fault-injection test can make this process die.

A crash-safety test cannot hit "between the trial's tell and the front update" by timing a
signal; it names the place instead::

    SKIPTUNE_FAILPOINTS=front-write:2 skiptune-search ...

kills the process with SIGKILL (no cleanup, no ``finally``, like a lost machine) the 2nd
time it reaches ``failpoint("front-write")``. ``NAME`` alone means ``NAME:1``; several are
separated by commas. The variable is read once, at import: with it unset a fail point costs
one dict lookup. It is a testing aid, not a user setting; an unknown name is refused so that
a typo cannot make a test pass by never killing anything.

The fail points, in the order a search reaches them:

=================  ===========================================================================
reference-batch    a batch of reference-image features computed, statistics not yet stored
stats-put          inside the transaction that caches reference statistics, before commit
study-created      the study created, its skiptune configuration not yet stored
study-seeding      one baseline/paper schedule queued, the others not yet
trial-asked        a trial made RUNNING, its first heartbeat not yet recorded
sampling-step      inside sampling: before one denoiser evaluation
features-batch     features of one batch of samples computed, not yet scored
trial-result       the trial's measurements stored as attributes, its state not yet told
trial-told         the trial told (COMPLETE, PRUNED or FAIL), the stored front not yet updated
front-write        inside the front transaction: old points deleted, new ones added, no commit
=================  ===========================================================================
"""

from __future__ import annotations

import os
import signal

from skiptune.errors import ConfigurationError

__all__ = ["ENV", "FAILPOINTS", "armed", "failpoint"]

ENV = "SKIPTUNE_FAILPOINTS"
FAILPOINTS = (
    "reference-batch",
    "stats-put",
    "study-created",
    "study-seeding",
    "trial-asked",
    "sampling-step",
    "features-batch",
    "trial-result",
    "trial-told",
    "front-write",
)


def _parse(text: str) -> dict[str, int]:
    """``"a:2,b"`` → ``{"a": 2, "b": 1}``; a malformed or unknown entry is refused."""
    targets: dict[str, int] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, _, count = entry.partition(":")
        if name not in FAILPOINTS:
            raise ConfigurationError(
                f"{ENV} names unknown fail point {name!r}; known: {', '.join(FAILPOINTS)}"
            )
        if count and (not count.isdigit() or int(count) < 1):
            raise ConfigurationError(f"{ENV}: {entry!r} needs a hit count ≥ 1, e.g. {name}:2")
        targets[name] = int(count) if count else 1
    return targets


_TARGETS = _parse(os.environ.get(ENV, ""))
_hits: dict[str, int] = {}


def armed(name: str) -> bool:
    """Whether ``name`` is set to kill this process (to skip wrapping hot paths otherwise)."""
    return name in _TARGETS


def failpoint(name: str) -> None:
    """Die by SIGKILL if ``SKIPTUNE_FAILPOINTS`` names ``name`` and this is its N-th hit."""
    if name not in _TARGETS:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == _TARGETS[name]:
        os.kill(os.getpid(), signal.SIGKILL)
