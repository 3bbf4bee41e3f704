"""FreeU in the search space: stored forms, known points, suggestions, and refusals."""

from __future__ import annotations

import optuna
import pytest

from skiptune.errors import ConfigurationError
from skiptune.freeu import FREEU_DEFAULTS, FreeU
from skiptune.schedule import TuningSchedule
from skiptune.tuner import SearchConfig, SearchSpace
from skiptune.tuner.search import queued_schedules
from skiptune.tuner.search._service import _space_for
from skiptune.tuner.search._space import suggest_schedule
from skiptune.tuner.study import schedule_from_params

SD15 = (1.5, 1.6, 0.9, 0.2)


def test_a_rho_space_is_stored_as_before_freeu_existed() -> None:
    """Studies stored before FreeU compare equal: no new keys in a ρ-only space."""
    stored = SearchSpace().to_dict()
    assert not {"kind", "freeu_b", "freeu_s", "freeu_known"} & set(stored)
    assert SearchSpace.from_dict(stored) == SearchSpace()


@pytest.mark.parametrize("kind", ["freeu", "rho+freeu"])
def test_freeu_spaces_round_trip(kind: str) -> None:
    space = SearchSpace(kind=kind, freeu_b=(1.0, 1.6), freeu_known=SD15)
    assert SearchSpace.from_dict(space.to_dict()) == space


def test_freeu_space_queues_the_neutral_baseline_then_the_family_defaults() -> None:
    queued = queued_schedules(SearchSpace(kind="freeu", freeu_known=SD15))
    assert queued == [
        ({"b1": 1.0, "b2": 1.0, "s1": 1.0, "s2": 1.0}, "baseline"),
        ({"b1": 1.5, "b2": 1.6, "s1": 0.9, "s2": 0.2}, "freeu"),
    ]
    assert schedule_from_params(queued[0][0]).is_identity
    assert schedule_from_params(queued[1][0]) == TuningSchedule(rho_bottom=1.0, freeu=FreeU(*SD15))


def test_combined_space_queues_baseline_paper_and_freeu_points() -> None:
    queued = queued_schedules(SearchSpace(kind="rho+freeu", freeu_known=SD15))
    roles = [role for _params, role in queued]
    assert roles == ["baseline", "paper", "paper", "paper", "freeu"]
    baseline, *_paper, freeu = (params for params, _role in queued)
    assert baseline["rho_bottom"] == 1.0 and baseline["b1"] == 1.0
    assert freeu["rho_bottom"] == 1.0 and freeu["b1"] == 1.5
    assert all(params["s1"] == 1.0 for params, role in queued if role == "paper")


def test_suggestions_stay_inside_the_freeu_bounds() -> None:
    space = SearchSpace(kind="freeu", freeu_b=(1.1, 1.3), freeu_s=(0.2, 0.4))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(10):
        schedule = suggest_schedule(study.ask(), space)
        assert schedule.rho_bottom == 1.0 and schedule.rho_top == 1.0
        assert schedule.freeu is not None
        assert 1.1 <= schedule.freeu.b1 <= 1.3 and 1.1 <= schedule.freeu.b2 <= 1.3
        assert 0.2 <= schedule.freeu.s1 <= 0.4 and 0.2 <= schedule.freeu.s2 <= 0.4


def test_grid_searches_rho_only() -> None:
    with pytest.raises(ConfigurationError, match="grid optimizer searches ρ only"):
        SearchConfig(nfe=9, optimizer="grid", space=SearchSpace(kind="freeu", shapes=("linear",)))


def test_freeu_needs_a_model_with_freeu_stages(demo_model) -> None:
    assert demo_model.freeu_stages == ()
    with pytest.raises(ConfigurationError, match=r"space\.kind rho"):
        _space_for(demo_model, SearchSpace(kind="freeu"))
    assert _space_for(demo_model, SearchSpace()) == SearchSpace()


def test_the_model_family_picks_the_known_freeu_point(demo_model, monkeypatch) -> None:
    monkeypatch.setattr(demo_model, "freeu_stages", ("stand-in",))
    monkeypatch.setattr(demo_model, "freeu_family", "sdxl")
    resolved = _space_for(demo_model, SearchSpace(kind="freeu"))
    xl = FREEU_DEFAULTS["sdxl"]
    assert resolved.freeu_known == (xl.b1, xl.b2, xl.s1, xl.s2) == (1.3, 1.4, 0.9, 0.2)
    mine = SearchSpace(kind="freeu", freeu_known=(1.1, 1.1, 0.5, 0.5))
    assert _space_for(demo_model, mine) == mine          # a user's own point is kept


def test_schedules_carry_freeu_through_their_dicts() -> None:
    assert "freeu" not in TuningSchedule(0.6).to_dict()          # ρ-only exports are unchanged
    schedule = TuningSchedule(0.6, freeu=FreeU(*SD15))
    assert schedule.to_dict()["freeu"] == {"s1": 0.9, "s2": 0.2, "b1": 1.5, "b2": 1.6}
    assert TuningSchedule.from_dict(schedule.to_dict()) == schedule
    assert TuningSchedule(1.0, freeu=FreeU()).is_identity
    assert not TuningSchedule(1.0, freeu=FreeU(b1=1.1)).is_identity
    with pytest.raises(ConfigurationError, match="unknown FreeU keys"):
        TuningSchedule.from_dict({"rho_bottom": 1.0, "freeu": {"b3": 1.0}})
