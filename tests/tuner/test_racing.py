"""Racing on fresh seed blocks: a challenger replaces the incumbent only on more, and new,
evidence; the evidence at the top grows with the search; races resume and share blocks."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import optuna
import pytest

from skiptune.models import load_model
from skiptune.storage import open_storage
from skiptune.tuner import SearchConfig, ValidationSettings, search, validation_result
from skiptune.tuner.search import RaceState, SeedBlocks, race, race_checkpoints
from skiptune.tuner.search._run import prepare_study, run_study
from skiptune.tuner.search._service import plan_study
from skiptune.tuner.search._validation import validate_study
from skiptune.tuner.study import RACE_ATTR, canonical_schedule
from tests.tuner.helpers import DEMO, FAST_HEARTBEAT, TINY, CountingValidations

# -- the rule, on values given by hand ------------------------------------------------------


def test_checkpoints_double_from_ten_and_end_at_the_total() -> None:
    assert race_checkpoints(10) == [10]
    assert race_checkpoints(5) == [5]
    assert race_checkpoints(60) == [10, 20, 40, 60]
    assert race_checkpoints(80) == [10, 20, 40, 80]
    # A longer search makes every race a shorter one made, then more.
    for shorter, longer in ((20, 300), (40, 1000), (11, 12)):
        assert race_checkpoints(longer)[: len(race_checkpoints(shorter)) - 1] == (
            race_checkpoints(shorter)[:-1])
    assert SeedBlocks(first_seed=64, size=128).seed(2) == 320


class _Table:
    """measure(candidate, block) from a table, counting what was measured."""

    def __init__(self, values: dict[str, list[float]]) -> None:
        self.values, self.calls = values, []  # type: list[tuple[str, int]]

    def __call__(self, candidate: str, block: int) -> float:
        self.calls.append((candidate, block))
        return self.values[candidate][block]


def _race(state: RaceState, ranked: list[str], table: _Table, *, checkpoint: int,
          number: int, top_k: int = 1) -> RaceState:
    return race(state, ranked, checkpoint=checkpoint, number=number, top_k=top_k,
                max_blocks=16, key=lambda c: c, measure=table, baseline="rho1")


def test_a_challenger_that_wins_one_block_but_loses_on_more_is_not_reported() -> None:
    table = _Table({
        "rho1": [30.0, 30.0, 30.0],
        "honest": [20.0, 20.0, 20.0],
        "lucky": [19.0, 25.0, 25.0],     # best on block 0 only: the winner's curse
    })
    first = _race(RaceState(), ["honest"], table, checkpoint=10, number=1)
    assert first.incumbent == "honest" and first.blocks == 1
    # Race 2: the incumbent gets a second block first, then the challenger runs its blocks.
    second = _race(first, ["lucky", "honest"], table, checkpoint=20, number=2)
    assert second.incumbent == "honest" and second.blocks == 2
    assert ("honest", 1) in table.calls and ("lucky", 1) in table.calls
    assert second.checkpoints == (10, 20) and set(second.raced) == {"rho1", "honest", "lucky"}


def test_a_challenger_worse_on_its_first_block_is_dropped_there() -> None:
    table = _Table({"rho1": [30.0] * 4, "a": [20.0] * 4, "b": [21.0, 1.0, 1.0, 1.0]})
    state = _race(RaceState(), ["a"], table, checkpoint=10, number=1)
    state = _race(state, ["b", "a"], table, checkpoint=40, number=3)
    assert state.incumbent == "a" and ("b", 1) not in table.calls    # dropped after block 0


def test_a_better_challenger_takes_over_with_the_incumbents_evidence() -> None:
    table = _Table({"rho1": [30.0] * 4, "a": [20.0] * 4, "b": [19.0, 18.0, 19.5, 20.5]})
    state = _race(RaceState(), ["a"], table, checkpoint=10, number=1)
    # Race 3: the incumbent's evidence doubles twice, to 4 blocks; b wins on their mean.
    state = _race(state, ["b", "a"], table, checkpoint=40, number=3)
    assert state.incumbent == "b" and state.blocks == 4
    assert {("a", 3), ("b", 3)} <= set(table.calls)
    # With evidence capped at 2 blocks, the same race is decided on those.
    capped = race(RaceState(), ["a"], checkpoint=10, number=3, top_k=1, max_blocks=2,
                  key=lambda c: c, measure=table, baseline="rho1")
    assert capped.blocks == 2


def test_a_challenger_lucky_on_few_blocks_gives_way_when_the_evidence_grows() -> None:
    # "lucky" beats "honest" on blocks 0-1 but is worse over 4: the schedule it displaced
    # (the runner-up) keeps collecting blocks beside it and takes its place back.
    table = _Table({"rho1": [30.0] * 4, "honest": [20.0] * 4,
                    "lucky": [19.0, 19.0, 24.0, 24.0]})
    state = _race(RaceState(), ["honest"], table, checkpoint=10, number=1)
    state = _race(state, ["lucky", "honest"], table, checkpoint=20, number=2)
    assert (state.incumbent, state.runner_up) == ("lucky", "honest")
    state = _race(state, ["lucky", "honest"], table, checkpoint=40, number=3)
    assert (state.incumbent, state.runner_up, state.blocks) == ("honest", "lucky", 4)
    assert ("honest", 3) in table.calls and ("lucky", 3) in table.calls
    # ρ = 1, displaced first, is never a runner-up: it gets no blocks beyond its first.
    assert ("rho1", 1) not in table.calls


def test_nothing_beats_rho_1_then_rho_1_is_the_answer_and_top_k_grows_with_races() -> None:
    table = _Table({"rho1": [10.0] * 2, **{c: [11.0] * 2 for c in "abcdef"}})
    state = _race(RaceState(), list("abcdef"), table, checkpoint=10, number=1, top_k=2)
    assert state.incumbent == "rho1" and set(state.raced) == {"rho1", "a", "b"}
    state = _race(state, list("abcdef"), table, checkpoint=20, number=2, top_k=2)
    assert set(state.raced) == {"rho1", *"abcdef"}          # 2 · 2 new challengers
    assert RaceState.from_dict(state.to_dict()) == state


# -- the search, on the demo model ------------------------------------------------------------


class _Flattering:
    """The real objective, except that one schedule's trials report a search value lower
    than any other: it wins on the shared seeds whatever it does on fresh ones."""

    def __init__(self, objective: Any, flattered: dict[str, float]) -> None:
        self.objective, self.flattered = objective, flattered
        self.validations: list[tuple[str, int]] = []

    @property
    def identity(self) -> dict:
        return self.objective.identity

    def evaluate(self, schedule: Any, **kwargs: Any) -> Any:
        from dataclasses import replace

        if schedule.to_dict() != self.flattered:
            return self.objective.evaluate(schedule, **kwargs)
        report = kwargs.pop("report", None)
        evaluation = self.objective.evaluate(schedule, **kwargs)
        for index, (num_samples, _value) in enumerate(evaluation.rung_values):
            if report is not None:
                report(index, num_samples, 0.0)          # never pruned: it looks the best
        return replace(evaluation, value=0.0)

    def for_validation(self, **kwargs: Any) -> Any:
        outer, inner = self, self.objective.for_validation(**kwargs)

        class Validating:
            score = inner.score

            def evaluate(self, schedule: Any, **kw: Any) -> Any:
                outer.validations.append((str(schedule.to_dict()), kwargs["seed"]))
                return inner.evaluate(schedule, **kw)

        return Validating()


def _planned(tmp_path: Path, trials: int) -> tuple[Any, Any, Any]:
    storage = open_storage(tmp_path / "s.db")
    model = load_model(DEMO, device="cpu")
    config, objective = plan_study(model, SearchConfig(
        nfe=3, trials=trials, objective=TINY, group="g",
        validation=ValidationSettings(num_samples=32)), 3)
    prepare_study(storage, config)
    return storage, config, objective


def _study(tmp_path: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(tmp_path / "s.db")
                             .optuna_storage())


@pytest.mark.slow
def test_the_lowest_search_value_loses_the_race_on_fresh_seeds(tmp_path: Path) -> None:
    # ρ 1.2 → 1.2 is worse than ρ = 1 on the demo model at 3 NFE (FD 578 against 520 at
    # N = 32); the search is told it is the best trial of all.
    storage, config, objective = _planned(tmp_path, 12)
    ruin = {"rho_bottom": 1.2, "rho_top": 1.2, "shape": "linear", "gamma": 1.0}
    study = _study(tmp_path, config.study_name)
    study.enqueue_trial({"rho_bottom": 1.2, "rho_top": 1.2, "shape": "linear"})
    flattering = _Flattering(objective, ruin)
    settings = ValidationSettings(num_samples=32)
    summary = run_study(storage, config, flattering, validation=settings, **FAST_HEARTBEAT)
    study = _study(tmp_path, config.study_name)
    values = [t.value for t in study.get_trials(deepcopy=False) if t.value is not None]
    assert min(values) == 0.0                                # the search's best, by far
    result = validation_result(study)
    assert result is not None
    assert canonical_schedule(result.chosen.params) != canonical_schedule(ruin)
    raced = {canonical_schedule(c.params) for c in result.candidates}
    assert canonical_schedule(ruin) in raced                 # it was raced, and lost
    # Raced at 10 trials and at the total (12): two blocks behind the answer.
    assert study.user_attrs[RACE_ATTR]["checkpoints"] == [10, 12]
    assert result.blocks == 2 and result.deciding_images == 64
    assert summary.validated and summary.best_value == result.chosen.value
    # Every block measured once: no (schedule, seed) twice.
    assert len(flattering.validations) == len(set(flattering.validations))


@pytest.mark.slow
def test_a_race_killed_midway_resumes_without_measuring_anything_twice(tmp_path: Path) -> None:
    storage, config, objective = _planned(tmp_path, 12)
    settings = ValidationSettings(num_samples=32, top_k=2)
    run_study(storage, config, objective, validation=ValidationSettings(enabled=False),
              **FAST_HEARTBEAT)
    study = _study(tmp_path, config.study_name)
    uninterrupted = CountingValidations(objective)
    # The reference: the same race in a copy of the database, never stopped.
    copy = tmp_path / "copy"
    copy.mkdir()
    with sqlite3.connect(tmp_path / "s.db") as source, sqlite3.connect(copy / "s.db") as target:
        source.backup(target)                               # WAL included
    validate_study(open_storage(copy / "s.db"), _study(copy, config.study_name), config,
                   uninterrupted, settings, total=12)
    killed = CountingValidations(objective, interrupt_at=4)
    with pytest.raises(KeyboardInterrupt):
        validate_study(storage, study, config, killed, settings, total=12)
    assert validation_result(study) is None                  # incomplete: nothing reported
    resumed = CountingValidations(objective)
    validate_study(storage, _study(tmp_path, config.study_name), config, resumed, settings,
                   total=12)
    assert killed.measured - 1 + resumed.measured == uninterrupted.measured
    mine = validation_result(_study(tmp_path, config.study_name))
    theirs = validation_result(_study(copy, config.study_name))
    assert mine is not None and theirs is not None
    assert mine.chosen == theirs.chosen and mine.blocks == theirs.blocks


def test_two_workers_share_the_race_blocks(tmp_path: Path) -> None:
    storage, config, objective = _planned(tmp_path, 10)
    run_study(storage, config, objective, validation=ValidationSettings(enabled=False),
              **FAST_HEARTBEAT)
    settings = ValidationSettings(num_samples=32, top_k=2)
    counters = [CountingValidations(objective), CountingValidations(objective)]
    threads = [threading.Thread(target=validate_study, args=(
        open_storage(tmp_path / "s.db"), _study(tmp_path, config.study_name), config, counter,
        settings)) for counter in counters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = validation_result(_study(tmp_path, config.study_name))
    assert result is not None
    # One worker measured every candidate on the shared blocks; the other found them stored.
    assert sorted(c.measured for c in counters) == [0, len(result.candidates)]


@pytest.mark.slow
def test_a_longer_search_reports_the_incumbent_of_its_races(tmp_path: Path) -> None:
    db = tmp_path / "long.db"
    events: list[Any] = []
    (summary,) = search(DEMO, SearchConfig(
        nfe=3, trials=12, objective=TINY, validation=ValidationSettings(num_samples=32),
        **FAST_HEARTBEAT), db=db, device="cpu", on_event=events.append)
    study = optuna.load_study(study_name=summary.study_name,
                              storage=open_storage(db).optuna_storage())
    result = validation_result(study)
    assert result is not None and result.blocks == 2 and result.num_samples == 32
    assert study.user_attrs[RACE_ATTR]["checkpoints"] == [10, 12]
    blocks = {e.block for e in events if type(e).__name__ == "CandidateValidated"}
    assert blocks == {0, 1}
    assert result.race_images >= result.deciding_images == 64
    assert summary.validated and summary.best_value == result.chosen.value
