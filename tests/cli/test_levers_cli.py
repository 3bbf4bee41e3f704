"""Several samplers and the step grid in one search, from the command line: it runs, resumes,
validates, ``best`` names the best sampler and schedule per budget, ``export`` writes the σ list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from skiptune import cli, tuner
from skiptune.sampling import grid_sigmas, steps_for_nfe
from skiptune.steps import StepGrid
from tests.tuner.helpers import DEMO

pytestmark = pytest.mark.slow       # the module's search takes 20 s on one core
runner = CliRunner()
SEARCH = ["--model", str(DEMO), "--nfe", "3", "--nfe", "5", "--sampler", "heun",
          "--sampler", "ipndm", "--space", "rho+steps", "--trials", "5", "--rungs", "8,16",
          "--validate-top", "2", "--validation-n", "16", "--device", "cpu", "--json"]


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    db = tmp_path_factory.mktemp("levers") / "s.db"
    result = runner.invoke(cli.search_app, [*SEARCH, "--db", str(db)])
    assert result.exit_code == 0, result.output
    return db, json.loads(result.stdout)


def test_one_study_per_sampler_and_budget_each_validated(searched: tuple[Path, list]) -> None:
    _db, summaries = searched
    assert [(s["sampler"], s["nfe"]) for s in summaries] == [
        ("heun", 3), ("ipndm", 3), ("heun", 5), ("ipndm", 5)]
    for s in summaries:
        assert s["finished"] == 5 and s["validated"] and s["validation_num_samples"] == 16
        grid = s["best_schedule"]["steps"]      # every trial, the baseline too, has a grid
        assert 0.002 <= grid["sigma_min"] < grid["sigma_max"] <= 80.0


def test_a_rerun_resumes_without_measuring_again(searched: tuple[Path, list]) -> None:
    db, summaries = searched
    again = runner.invoke(cli.search_app, [*SEARCH, "--db", str(db)])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout) == summaries


def test_best_marks_the_best_sampler_of_each_budget(searched: tuple[Path, list]) -> None:
    db, summaries = searched
    table = runner.invoke(cli.app, ["best", "--db", str(db)])
    assert table.exit_code == 0, table.output
    # One ★ per budget in the rows, one in the caption that says what it means.
    assert table.stdout.count("★") == 3 and "best sampler and schedule" in table.stdout
    marked = tuner.best_per_budget(tuner.list_studies(db))
    for nfe in (3, 5):
        winner = min((s for s in summaries if s["nfe"] == nfe),
                     key=lambda s: (s["best_value"], s["sampler"]))
        assert winner["study"] in marked


def test_export_names_the_best_of_the_budget_and_writes_its_sigmas(
    searched: tuple[Path, list], tmp_path: Path
) -> None:
    db, summaries = searched
    out = tmp_path / "best.json"
    result = runner.invoke(cli.app, ["export", "--nfe", "5", "-o", str(out), "--db", str(db)])
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    winner = min((s for s in summaries if s["nfe"] == 5),
                 key=lambda s: (s["best_value"], s["sampler"]))
    assert written["sampler"] == winner["sampler"]
    assert written["schedule"] == winner["best_schedule"]
    grid = StepGrid.from_dict(written["schedule"]["steps"])
    steps = steps_for_nfe(written["sampler"], 5)
    assert written["sigmas"] == grid_sigmas(steps, grid).tolist()
    assert len(written["sigmas"]) == steps + 1 and written["sigmas"][-1] == 0.0


def test_sample_from_the_export_walks_its_grid(searched: tuple[Path, list],
                                               tmp_path: Path) -> None:
    import numpy as np

    from skiptune import TuningSchedule, load_model
    from skiptune.sampling import sample_images

    db, _summaries = searched
    exported = tmp_path / "best.json"
    assert runner.invoke(cli.app, ["export", "--nfe", "5", "-o", str(exported), "--db",
                                   str(db)]).exit_code == 0
    written = json.loads(exported.read_text())
    out = tmp_path / "x.npz"
    result = runner.invoke(cli.app, ["sample", "--model", str(DEMO), "--from", str(exported),
                                     "-n", "2", "--device", "cpu", "-o", str(out)])
    assert result.exit_code == 0, result.output
    model = load_model(DEMO, device="cpu")
    expected = sample_images(model, schedule=TuningSchedule.from_dict(written["schedule"]), nfe=5,
                             sampler=written["sampler"], num_samples=2)
    pixels = np.load(out)["images"]
    assert pixels.shape == (2, 28, 28, 1)
    as_written = ((expected.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    assert np.array_equal(pixels, as_written.permute(0, 2, 3, 1).numpy())
    # The export's grid, not the sampler's own: without it the images differ.
    plain = sample_images(model, schedule=TuningSchedule.from_dict(
        {k: v for k, v in written["schedule"].items() if k != "steps"}), nfe=5,
        sampler=written["sampler"], num_samples=2)
    assert not torch.equal(expected, plain)
