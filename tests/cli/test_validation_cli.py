"""The search command's validation options: passed to the library, refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from skiptune import cli
from tests.tuner.helpers import DEMO

runner = CliRunner()


def _search(db: Path, *extra: str) -> object:
    return runner.invoke(cli.search_app, ["--model", str(DEMO), "--nfe", "3", "--trials", "2",
                                          "--rungs", "8,16", "--db", str(db), "--device", "cpu",
                                          *extra])


def test_a_validation_below_the_last_rung_is_one_line_and_stores_nothing(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    result = _search(db, "--validation-n", "8")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --validation-n 8 is smaller than")
    assert not db.exists()
    result = _search(db, "--validate-top", "0")
    assert result.exit_code == 1 and "--validate-top must be" in result.stderr
    assert not db.exists()


def test_the_summary_shows_the_validated_value_and_its_interval(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    result = _search(db, "--validate-top", "1", "--validation-n", "32", "--json")
    assert result.exit_code == 0, result.output
    (summary,) = json.loads(result.stdout)
    assert summary["validated"] and summary["validation_num_samples"] == 32
    assert summary["gain_low"] <= summary["improvement"] <= summary["gain_high"]
    table = runner.invoke(cli.app, ["best", "--db", str(db)])
    assert "validated at N = 32" in table.stdout
