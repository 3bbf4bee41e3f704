"""Pareto fronts of NFE against proxy value, and what they say about speed: pure functions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

__all__ = [
    "FrontPoint",
    "SpeedClaim",
    "describe_claim",
    "front_flags",
    "pareto_front",
    "pareto_mask",
    "speed_claims",
]


class _Measured(Protocol):
    @property
    def nfe(self) -> int: ...

    @property
    def value(self) -> float: ...


P = TypeVar("P", bound=_Measured)


@dataclass(frozen=True)
class FrontPoint:
    """A measured schedule: ``nfe`` denoiser calls per image, ``value`` proxy FID (lower wins)."""

    nfe: int
    value: float


def _dominates(a: _Measured, b: _Measured) -> bool:
    """a dominates b: no more NFE and no worse value, and strictly better in one of them."""
    return a.nfe <= b.nfe and a.value <= b.value and (a.nfe < b.nfe or a.value < b.value)


def pareto_mask(points: Sequence[_Measured]) -> list[bool]:
    """For each point, whether it is on the front of (NFE, value), both minimised.

    A point is on the front if no other point has ≤ NFE and ≤ value with one of them strictly
    smaller. Equal points do not dominate each other, so both stay. A NaN value is never on
    the front. O(n²), for the handful of step budgets a study group holds.
    """
    finite = [not math.isnan(p.value) for p in points]
    return [
        finite[i]
        and not any(finite[j] and _dominates(q, p) for j, q in enumerate(points) if j != i)
        for i, p in enumerate(points)
    ]


def pareto_front(points: Sequence[P]) -> list[P]:
    """The points on the front of (NFE, value), by NFE then value (see :func:`pareto_mask`)."""
    mask = pareto_mask(points)
    front = [p for p, keep in zip(points, mask, strict=True) if keep]
    return sorted(front, key=lambda p: (p.nfe, p.value))


class _Stored(_Measured, Protocol):
    @property
    def study_group(self) -> str: ...

    @property
    def sampler(self) -> str: ...

    @property
    def comparison_key(self) -> str: ...


def front_flags(records: Sequence[_Stored]) -> list[bool]:
    """On-front flags of stored points: each sampler has its own front.

    A point (tuned or ρ = 1) is on the front when no other point of the same study group and
    sampler, measured alike (the same ``comparison_key``), has ≤ NFE and ≤ value with one strictly
    smaller (:func:`pareto_mask`). So a ρ = 1 point that a tuned point of its sampler beats
    at no more NFE is not on the front; another sampler's points never push it off.
    """
    flags = [False] * len(records)
    alike: dict[tuple[str, str, str], list[int]] = {}
    for i, record in enumerate(records):
        key = (record.study_group, record.sampler, record.comparison_key)
        alike.setdefault(key, []).append(i)
    for indices in alike.values():
        mask = pareto_mask([records[i] for i in indices])
        for i, keep in zip(indices, mask, strict=True):
            flags[i] = keep
    return flags


@dataclass(frozen=True)
class SpeedClaim:
    """Tuned at ``tuned_nfe`` reaches a value ≤ the baseline's at the larger ``baseline_nfe``
    (of one ``sampler``, where the claim names it)."""

    tuned_nfe: int
    tuned_value: float
    baseline_nfe: int
    baseline_value: float
    sampler: str | None = None

    @property
    def saving(self) -> float:
        """Fraction of denoiser calls saved: 1 − tuned NFE / baseline NFE."""
        return 1.0 - self.tuned_nfe / self.baseline_nfe


def speed_claims(tuned: Sequence[_Measured], baseline: Sequence[_Measured]) -> list[SpeedClaim]:
    """For each tuned point, the largest-NFE baseline point it matches or beats with fewer NFE.

    Pass only points measured alike (same metric, features, reference, N and seeds): the
    function compares values as given. Claims are ordered by saving, largest first; a tuned
    point that beats no baseline point at a higher NFE makes no claim.
    """
    claims = []
    for t in tuned:
        if math.isnan(t.value):
            continue
        beaten = [b for b in baseline if b.nfe > t.nfe and t.value <= b.value]
        if beaten:
            b = max(beaten, key=lambda p: (p.nfe, -p.value))
            claims.append(SpeedClaim(t.nfe, t.value, b.nfe, b.value))
    return sorted(claims, key=lambda c: (-c.saving, c.tuned_nfe))


def describe_claim(claim: SpeedClaim) -> str:
    """E.g. ``tuned at 9 NFE matches or beats baseline at 15 NFE (40% fewer evaluations)``,
    after ``heun: `` where the claim names its sampler."""
    return (
        ("" if claim.sampler is None else f"{claim.sampler}: ")
        + f"tuned at {claim.tuned_nfe} NFE matches or beats baseline at {claim.baseline_nfe} NFE "
        f"({claim.saving:.0%} fewer evaluations)"
    )
