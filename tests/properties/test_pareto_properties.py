"""Property tests of the Pareto front of (NFE, proxy value), both minimised (hypothesis)."""

from __future__ import annotations

import itertools
import math
import random

from hypothesis import given
from hypothesis import strategies as st

from skiptune.tuner.results import FrontPoint, pareto_front, pareto_mask

# Few distinct NFE and values, so that ties and duplicates are common; some NaN and ±inf.
values = st.one_of(
    st.integers(0, 6).map(float),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.sampled_from([math.inf, -math.inf, math.nan]),
)
points = st.lists(st.builds(FrontPoint, nfe=st.integers(1, 12), value=values), max_size=24)
finite_points = st.lists(
    st.builds(FrontPoint, nfe=st.integers(1, 12), value=st.integers(0, 6).map(float)),
    max_size=24,
)


def dominates(a: FrontPoint, b: FrontPoint) -> bool:
    """a is no worse in NFE and value and better in one: written out, not the library's."""
    return a.nfe <= b.nfe and a.value <= b.value and (a.nfe < b.nfe or a.value < b.value)


@given(points)
def test_no_front_point_is_dominated_by_any_point(candidates: list[FrontPoint]) -> None:
    mask = pareto_mask(candidates)
    assert len(mask) == len(candidates)
    for point, on_front in zip(candidates, mask, strict=True):
        if on_front:
            assert not math.isnan(point.value)
            assert not any(dominates(other, point) for other in candidates
                           if not math.isnan(other.value))


@given(points)
def test_every_point_off_the_front_is_dominated_by_a_front_point(
    candidates: list[FrontPoint],
) -> None:
    front = pareto_front(candidates)
    for point, on_front in zip(candidates, pareto_mask(candidates), strict=True):
        if not on_front and not math.isnan(point.value):
            assert any(dominates(f, point) for f in front), (point, front)


@given(points, st.randoms(use_true_random=False))
def test_the_front_does_not_depend_on_the_order(candidates: list[FrontPoint],
                                                rng: random.Random) -> None:
    shuffled = list(candidates)
    rng.shuffle(shuffled)
    assert _same(pareto_front(shuffled), pareto_front(candidates))
    # Each point keeps its own verdict wherever it stands.
    verdict = dict(zip(map(id, candidates), pareto_mask(candidates), strict=True))
    assert [verdict[id(p)] for p in shuffled] == pareto_mask(shuffled)


@given(points)
def test_the_front_of_the_front_is_the_front(candidates: list[FrontPoint]) -> None:
    front = pareto_front(candidates)
    assert _same(pareto_front(front), front)
    assert all(pareto_mask(front))


@given(finite_points)
def test_along_the_front_more_nfe_buys_a_strictly_better_value(
    candidates: list[FrontPoint],
) -> None:
    front = pareto_front(candidates)
    assert (front == []) == (candidates == [])
    for a, b in itertools.pairwise(front):
        assert (a.nfe, a.value) <= (b.nfe, b.value)
        if a.nfe < b.nfe:
            assert a.value > b.value
        else:
            assert a.value == b.value                 # equal points both stay


def _same(a: list[FrontPoint], b: list[FrontPoint]) -> bool:
    """Equal as sequences, counting NaN equal to itself (FrontPoint's == does not)."""
    return [(p.nfe, repr(p.value)) for p in a] == [(p.nfe, repr(p.value)) for p in b]
