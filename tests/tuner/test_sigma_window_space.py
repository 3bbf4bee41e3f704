"""A σ window as an optional part of the search space; the default space stores as before."""

from __future__ import annotations

from pathlib import Path

import pytest

from skiptune.errors import ConfigurationError
from skiptune.tuner import SearchConfig, SearchSpace, ValidationSettings, search
from tests.tuner.helpers import DEMO, FAST_HEARTBEAT, TINY


def test_the_default_space_serialises_as_before_windows() -> None:
    assert "sigma_window" not in SearchSpace().to_dict()
    windowed = SearchSpace(sigma_window=(0.1, 10.0))
    assert windowed.to_dict()["sigma_window"] == [0.1, 10.0]
    assert SearchSpace.from_dict(windowed.to_dict()) == windowed
    assert SearchSpace.from_dict(SearchSpace().to_dict()) == SearchSpace()


def test_bad_windows_are_refused_before_anything_is_stored(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="σ_lo < σ_hi"):
        SearchSpace(sigma_window=(5.0, 1.0))
    db = tmp_path / "s.db"
    with pytest.raises(ConfigurationError, match="outside the model's σ range"):
        search(DEMO, SearchConfig(nfe=3, trials=2, objective=TINY,
                                  space=SearchSpace(sigma_window=(0.01, 500.0))),
               db=db, device="cpu")
    assert not db.exists()


def test_a_windowed_search_finds_a_windowed_schedule(tmp_path: Path) -> None:
    space = SearchSpace(rho_top=1.0, shapes=("linear",), sigma_window=(0.01, 50.0))
    (summary,) = search(DEMO, SearchConfig(
        nfe=3, trials=5, objective=TINY, space=space,
        validation=ValidationSettings(top_k=1, num_samples=32), **FAST_HEARTBEAT),
        db=tmp_path / "s.db", device="cpu")
    assert summary.best_schedule is not None and summary.best_schedule.has_window
    assert 0.01 <= summary.best_schedule.sigma_lo < summary.best_schedule.sigma_hi <= 50.0  # type: ignore[operator]
