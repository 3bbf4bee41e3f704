"""Racing on fresh seed blocks: the search's answer is an incumbent that beat its challengers
on images no trial used, with the evidence behind it growing as the search runs longer.

Every trial is scored on the same seeds (common random numbers), so a search that compares
hundreds of trials on them ends up choosing the schedule that best fits those noises: the
winner's curse. SMAC's intensification answers it, and so does this module:

* the search **races** at checkpoints of finished trials: ``first``, ``2·first``, ``4·first``,
  … and at its total (:func:`race_checkpoints`);
* race m (counting from 1) first extends the **incumbent** and the **runner-up** (the last
  incumbent a challenger displaced) to 2^(m−1) seed blocks (at most ``max_blocks``); the
  better of the two on the mean over all of them is the incumbent. Then it takes the
  ``top_k · m`` best distinct schedules by search value that were never raced as
  **challengers**. Each is measured block by block on the incumbent's blocks and dropped as
  soon as its mean over the blocks so far is not below the incumbent's mean over the same
  blocks (paired: same seeds, same N); one that survives every block becomes the incumbent,
  and the one it displaced the runner-up. ρ = 1 is the first incumbent, never a runner-up.

So a challenger replaces the incumbent only on more, and new, evidence, and the evidence at
the top doubles from race to race as the trials between races do: racing stays a steady
share of the images. A challenger that won on a few blocks by luck is not final either: the
schedule it displaced keeps collecting blocks beside it and takes its place back when the
larger evidence says so. Values are compared only at equal N on identical seeds, where the
Fréchet distance's bias (which depends on N and on the schedule) cancels best; block b holds
the seeds ``first_seed + b·N`` … of :class:`SeedBlocks`.

The logic here is pure: :func:`race` takes a ``measure(candidate, block)`` callable. The
search stores each measurement as a study user attribute (``_validation``), a benchmark can
keep them in files, and both get the same decisions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = [
    "RACE_FIRST", "RaceState", "SeedBlocks", "blocks_of_race", "race", "race_checkpoints",
    "race_number",
]

RACE_FIRST = 10            # finished trials at the first race: the default search's size

C = TypeVar("C")           # a candidate: a trial, or whatever the caller races


def race_checkpoints(total: int, *, first: int = RACE_FIRST) -> list[int]:
    """The finished-trial counts at which a search of ``total`` trials races:
    ``first``, ``2·first``, ``4·first``, … below ``total``, then ``total`` itself.

    They do not depend on ``total`` below it, so a longer search makes every decision a
    shorter one made, and then more.
    """
    points = []
    point = max(1, int(first))
    while point < total:
        points.append(point)
        point *= 2
    return [*points, int(total)]


def race_number(checkpoint: int, total: int, *, first: int = RACE_FIRST) -> int:
    """m, counting from 1, of the race at ``checkpoint`` in a search of ``total`` trials."""
    return race_checkpoints(total, first=first).index(checkpoint) + 1


def blocks_of_race(number: int, max_blocks: int) -> int:
    """Seed blocks behind the incumbent after race ``number`` (from 1): 1, 2, 4, … at most
    ``max_blocks``."""
    return max(1, min(max_blocks, 2 ** (max(1, number) - 1)))


@dataclass(frozen=True)
class SeedBlocks:
    """Blocks of ``size`` seeds that no trial uses: block b is ``first_seed + b·size`` onward."""

    first_seed: int
    size: int

    def seed(self, block: int) -> int:
        return self.first_seed + block * self.size


@dataclass(frozen=True)
class RaceState:
    """What the races so far decided: the incumbent and every schedule raced, by key."""

    incumbent: str | None = None
    runner_up: str | None = None            # the incumbent displaced last (never ρ = 1)
    raced: tuple[str, ...] = ()
    checkpoints: tuple[int, ...] = ()       # the finished-trial counts already raced
    blocks: int = 0                         # seed blocks behind the incumbent

    def to_dict(self) -> dict[str, Any]:
        return {"incumbent": self.incumbent, "runner_up": self.runner_up,
                "raced": list(self.raced),
                "checkpoints": list(self.checkpoints), "blocks": self.blocks}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RaceState:
        if not data:
            return cls()
        return cls(incumbent=data.get("incumbent"), runner_up=data.get("runner_up"),
                   raced=tuple(data.get("raced", ())),
                   checkpoints=tuple(int(c) for c in data.get("checkpoints", ())),
                   blocks=int(data.get("blocks", 0)))


@dataclass
class _Standing(Generic[C]):
    """A candidate and its values on blocks 0, 1, … (math.inf: non-finite samples)."""

    candidate: C
    values: list[float] = field(default_factory=list)

    def mean(self, blocks: int) -> float:
        return sum(self.values[:blocks]) / blocks


def race(
    state: RaceState,
    ranked: Sequence[C],
    *,
    checkpoint: int,                    # the finished-trial count this race is for
    number: int,                        # m: 2^(m−1) blocks, top_k · m challengers
    top_k: int,
    max_blocks: int,
    key: Callable[[C], Hashable],
    measure: Callable[[C, int], float],   # a candidate's value on one seed block
    baseline: C | None = None,          # ρ = 1: the first incumbent
) -> RaceState:
    """Race m of a search (see the module's docstring); returns the state after it.

    ``ranked``: the distinct schedules with a search value, best first. ``measure`` may
    return a stored value: a race run again on the same state and values decides the same.
    """
    def name(candidate: C) -> str:
        return str(key(candidate))

    by_key = {name(c): c for c in ranked}
    base = None if baseline is None else name(baseline)
    if baseline is not None:
        by_key.setdefault(name(baseline), baseline)
    raced = list(state.raced)
    first = state.incumbent if state.incumbent in by_key else base
    second = state.runner_up if state.runner_up in by_key else None
    blocks = blocks_of_race(number, max_blocks)
    incumbent = None if first is None else _Standing(by_key[first])
    runner_up = None if second is None else _Standing(by_key[second])
    for standing in (s for s in (incumbent, runner_up) if s is not None):
        standing.values = [measure(standing.candidate, b) for b in range(blocks)]
        if name(standing.candidate) not in raced:
            raced.append(name(standing.candidate))
    if incumbent is not None and runner_up is not None and (
            runner_up.mean(blocks) < incumbent.mean(blocks)):
        incumbent, runner_up = runner_up, incumbent
    fresh = [c for c in ranked if name(c) not in raced][:max(1, top_k) * max(1, number)]
    for candidate in fresh:
        raced.append(name(candidate))
        challenger = _Standing(candidate)
        if incumbent is None:
            challenger.values = [measure(candidate, b) for b in range(blocks)]
            incumbent = challenger
            continue
        for b in range(blocks):
            challenger.values.append(measure(candidate, b))
            if not challenger.mean(b + 1) < incumbent.mean(b + 1):
                break                   # not better on the blocks so far: dropped
        else:
            incumbent, runner_up = challenger, incumbent
    second = None if runner_up is None else name(runner_up.candidate)
    return RaceState(
        incumbent=None if incumbent is None else name(incumbent.candidate),
        runner_up=None if second == base else second,
        raced=tuple(raced),
        checkpoints=(*state.checkpoints, checkpoint),
        blocks=0 if incumbent is None else blocks,
    )


def finite_or_inf(value: float | None) -> float:
    """A measured value for comparisons: non-finite samples (None, NaN) lose every race."""
    return math.inf if value is None or not math.isfinite(value) else float(value)
