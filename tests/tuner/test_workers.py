"""Four worker processes on one PostgreSQL study: exact total, baselines queued exactly once."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import optuna
import pytest
from optuna.trial import TrialState

from skiptune.storage import open_storage
from skiptune.tuner import list_studies, validation_result
from tests.tuner.helpers import DEMO, pg_schema, require_postgres, start_search

pytestmark = pytest.mark.slow


@pytest.fixture
def pg_url() -> Iterator[str]:
    require_postgres()
    with pg_schema() as url:
        yield url


def test_two_commands_of_two_workers_share_one_study_exactly(pg_url: str) -> None:
    # Two machines' worth of commands started together, each with two worker processes:
    # both race to create the study and queue its baselines, four workers race to ask.
    args = ("--model", str(DEMO), "--nfe", "3", "--trials", "9", "--rungs", "16,32",
            "--db", pg_url, "--device", "cpu", "--workers", "2", "--heartbeat", "2",
            "--grace", "10", "--json")
    commands = [start_search(*args) for _ in range(2)]
    for command in commands:
        out, err = command.communicate(timeout=400)
        assert command.returncode == 0, err
        assert json.loads(out)[0]["finished"] == 9

    storage = open_storage(pg_url)
    (summary,) = list_studies(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage.optuna_storage())
    trials = study.get_trials()
    states = Counter(t.state for t in trials)
    assert states[TrialState.COMPLETE] + states[TrialState.PRUNED] == 9
    assert len(trials) == 9, states                   # not one trial more than the total
    roles = Counter(t.user_attrs.get("skiptune_role", "search") for t in trials)
    assert roles == {"baseline": 1, "paper": 3, "search": 5}
    baseline = next(t for t in trials if t.user_attrs.get("skiptune_role") == "baseline")
    assert baseline.state == TrialState.COMPLETE
    # The study ends validated: its summary reports ρ = 1 as re-measured on fresh seeds.
    validation = validation_result(study)
    assert summary.validated and validation is not None and validation.baseline is not None
    assert validation.baseline.trial == baseline.number
    assert validation.baseline.search_value == baseline.value
    assert summary.baseline_value == validation.baseline.value
    assert len(storage.runs(study_name=summary.study_name)) == 2
