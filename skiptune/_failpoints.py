"""Fail points: named places where a fault-injection test can make this process die.

A crash-safety test cannot hit "between the trial's tell and the front update" by timing a
signal; it names the place instead::

    SKIPTUNE_FAILPOINTS=front-write:2 skiptune-search ...

kills the process with SIGKILL (no cleanup, no ``finally``, like a lost machine) the 2nd
time it reaches ``failpoint("front-write")``. ``NAME:N:INT`` (or ``:TERM``) sends itself that
signal instead, a Ctrl-C or a scheduler's pre-emption landing exactly there; ``NAME`` alone
means ``NAME:1:KILL``; several are separated by commas. The variable is read once, at import:
with it unset a fail point costs one dict lookup. It is a testing aid, not a user setting; an
unknown name or signal is refused so that a typo cannot make a test pass by never firing.

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


SIGNALS = {"KILL": signal.SIGKILL, "INT": signal.SIGINT, "TERM": signal.SIGTERM}


def _parse(text: str) -> dict[str, tuple[int, signal.Signals]]:
    """``"a:2,b,c:3:INT"`` → ``{"a": (2, SIGKILL), "b": (1, SIGKILL), "c": (3, SIGINT)}``;
    a malformed or unknown entry is refused."""
    targets: dict[str, tuple[int, signal.Signals]] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, _, rest = entry.partition(":")
        count, _, signal_name = rest.partition(":")
        if name not in FAILPOINTS:
            raise ConfigurationError(
                f"{ENV} names unknown fail point {name!r}; known: {', '.join(FAILPOINTS)}"
            )
        if count and (not count.isdigit() or int(count) < 1):
            raise ConfigurationError(f"{ENV}: {entry!r} needs a hit count ≥ 1, e.g. {name}:2")
        if signal_name and signal_name not in SIGNALS:
            raise ConfigurationError(
                f"{ENV}: {entry!r} names unknown signal {signal_name!r}; known: "
                f"{', '.join(SIGNALS)}"
            )
        targets[name] = (int(count) if count else 1, SIGNALS[signal_name or "KILL"])
    return targets


_TARGETS = _parse(os.environ.get(ENV, ""))
_hits: dict[str, int] = {}


def armed(name: str) -> bool:
    """Whether ``name`` is set to signal this process (to skip wrapping hot paths otherwise)."""
    return name in _TARGETS


def failpoint(name: str) -> None:
    """Send this process its signal (SIGKILL unless told) if ``SKIPTUNE_FAILPOINTS`` names
    ``name`` and this is its N-th hit."""
    if name not in _TARGETS:
        return
    _hits[name] = _hits.get(name, 0) + 1
    count, signal_to_send = _TARGETS[name]
    if _hits[name] == count:
        os.kill(os.getpid(), signal_to_send)
