"""Validation on fresh seeds: the winner's curse measured away, stored, resumed, refused."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from skiptune.errors import ConfigurationError
from skiptune.models import load_model
from skiptune.storage import open_storage
from skiptune.tuner import (
    CandidateValidated,
    SearchConfig,
    ValidationSettings,
    export_schedule,
    front_report,
    list_studies,
    search,
    validation_result,
)
from skiptune.tuner.search._run import prepare_study, run_study
from skiptune.tuner.search._service import plan_study
from skiptune.tuner.search._validation import validate_study
from tests.tuner.helpers import DEMO, FAST_HEARTBEAT, TINY, CountingValidations


def _study(db: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(db).optuna_storage())


@pytest.mark.slow
def test_a_finished_search_reports_values_validated_on_fresh_seeds(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    events: list[object] = []
    six = SearchConfig(nfe=3, trials=6, objective=TINY, **FAST_HEARTBEAT)
    (summary,) = search(DEMO, six, db=db, device="cpu", on_event=events.append)
    validated = [e for e in events if isinstance(e, CandidateValidated)]
    # By default ρ = 1 and the best distinct schedule, each at 2 × the last rung.
    assert len(validated) == 2 and {e.num_samples for e in validated} == {64}
    assert validated[0].role == "baseline"
    result = validation_result(_study(db, summary.study_name))
    assert result is not None and result.seed == 32           # seeds 32 … 95: none a trial's
    assert summary.validated and summary.validation_num_samples == 64
    values = [e.value for e in validated if e.value is not None]
    assert summary.best_value == min(values)
    assert summary.baseline_value == validated[0].value
    assert summary.search_best_value is not None
    # The validated value is a new measurement, not the search's (the winner's curse).
    assert summary.best_value != summary.search_best_value
    assert summary.gain_low is not None and summary.gain_high is not None
    assert summary.gain_low <= summary.improvement <= summary.gain_high  # type: ignore[operator]

    (tuned,) = front_report(db)[0].tuned
    assert tuned.validated and tuned.value == summary.best_value
    assert tuned.validation["num_samples"] == 64
    exported = export_schedule(db, nfe=3)
    assert exported.validation is not None and exported.value == summary.best_value
    assert exported.to_dict()["validated"] is True

    # A rerun finds the validation done: nothing is measured again.
    events.clear()
    (again,) = search(DEMO, six, db=db, device="cpu", on_event=events.append)
    assert not any(isinstance(e, CandidateValidated) for e in events)
    assert again.best_value == summary.best_value


@pytest.mark.slow
def test_a_killed_validation_resumes_without_redoing_finished_candidates(
    tmp_path: Path,
) -> None:
    storage = open_storage(tmp_path / "s.db")
    model = load_model(DEMO, device="cpu")
    config, objective = plan_study(model, SearchConfig(nfe=3, trials=5, objective=TINY,
                                                       group="g"), 3)
    prepare_study(storage, config)
    # Finished before validation existed (or with --no-validation): not validated yet.
    summary = run_study(storage, config, objective, validation=ValidationSettings(enabled=False),
                        **FAST_HEARTBEAT)
    assert summary.done and not summary.validated
    study = _study(tmp_path / "s.db", config.study_name)
    assert validation_result(study) is None

    settings = ValidationSettings(top_k=2)
    killed = CountingValidations(objective, interrupt_at=3)
    with pytest.raises(KeyboardInterrupt):
        validate_study(storage, study, config, killed, settings)
    assert validation_result(study) is None                  # incomplete: nothing reported
    resumed = CountingValidations(objective)
    summary = run_study(storage, config, resumed, validation=settings, **FAST_HEARTBEAT)
    assert resumed.measured == 1                            # only the candidate still missing
    assert summary.validated and len(validation_result(study).candidates) == 3  # type: ignore[union-attr]
    again = CountingValidations(objective)
    validate_study(storage, study, config, again, settings)
    assert again.measured == 0


def test_a_validation_smaller_than_the_last_rung_is_refused_before_any_write(
    tmp_path: Path,
) -> None:
    db = tmp_path / "s.db"
    with pytest.raises(ConfigurationError,
                       match=r"validation\.num_samples 16 is smaller than the last rung \(32\)"):
        search(DEMO, SearchConfig(nfe=3, trials=2, objective=TINY,
                                  validation=ValidationSettings(num_samples=16)),
               db=db, device="cpu")
    assert not db.exists()
    with pytest.raises(ConfigurationError, match=r"validation\.top_k") as info:
        ValidationSettings(top_k=0)
    assert info.value.field == "validation.top_k" and "--" not in str(info.value)


def test_list_studies_reads_the_validation_back(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    (summary,) = search(DEMO, SearchConfig(
        nfe=3, trials=3, objective=TINY, validation=ValidationSettings(top_k=1, num_samples=32),
        **FAST_HEARTBEAT), db=db, device="cpu")
    (listed,) = list_studies(db)
    assert listed == summary and listed.validated and listed.validation_num_samples == 32


def test_two_workers_never_validate_a_candidate_twice(tmp_path: Path) -> None:
    import threading

    storage = open_storage(tmp_path / "s.db")
    model = load_model(DEMO, device="cpu")
    config, objective = plan_study(model, SearchConfig(nfe=3, trials=2, objective=TINY,
                                                       group="g"), 3)
    prepare_study(storage, config)
    run_study(storage, config, objective, validation=ValidationSettings(enabled=False),
              **FAST_HEARTBEAT)
    settings = ValidationSettings(top_k=1, num_samples=32)
    counters = [CountingValidations(objective), CountingValidations(objective)]
    # Each worker opens the database itself, as worker processes do; the study's lock
    # (a file lock beside SQLite) serialises them.
    threads = [
        threading.Thread(target=validate_study, args=(
            open_storage(tmp_path / "s.db"), _study(tmp_path / "s.db", config.study_name),
            config, counter, settings))
        for counter in counters
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = validation_result(_study(tmp_path / "s.db", config.study_name))
    assert result is not None
    assert sorted(c.measured for c in counters) == [0, len(result.candidates)]
