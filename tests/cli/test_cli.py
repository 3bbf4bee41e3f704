"""The CLI through typer's CliRunner: what the library received, what the user sees."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from skiptune import cli, tuner
from skiptune.objectives import ObjectiveSettings
from tests.tuner.helpers import DEMO

runner = CliRunner()


def _spy(monkeypatch: pytest.MonkeyPatch, name: str) -> list[dict[str, Any]]:
    """Record the arguments of ``tuner.<name>`` while still calling the real function."""
    calls: list[dict[str, Any]] = []
    real = getattr(tuner, name)

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append({"args": args, **kwargs})
        result = real(*args, **kwargs)
        calls[-1]["result"] = result
        return result

    monkeypatch.setattr(tuner, name, spy)
    return calls


def _one_error_line(result: Any) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.output
    return lines[0]


def test_best_lists_one_row_per_budget(demo_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _spy(monkeypatch, "list_studies")
    result = runner.invoke(cli.app, ["best", "--db", str(demo_db), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert calls[0]["args"] == (str(demo_db),) and calls[0]["group"] is None
    assert [r["nfe"] for r in rows] == [3, 5]
    assert rows == [s.to_dict() for s in calls[0]["result"]]
    assert all(r["best_value"] <= r["baseline_value"] for r in rows)
    table = runner.invoke(cli.app, ["best", "--db", str(demo_db), "--study", "demo_unet"])
    assert table.exit_code == 0 and "demo_unet" in table.stdout and "heun" in table.stdout


def test_front_states_what_it_means_for_speed(demo_db: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _spy(monkeypatch, "front_report")
    result = runner.invoke(cli.app, ["front", "--db", str(demo_db)])
    assert result.exit_code == 0, result.output
    (report,) = calls[0]["result"]
    assert report.sentence in " ".join(result.stdout.split())
    assert [p.nfe for p in report.tuned] == [3, 5] and [p.nfe for p in report.baseline] == [3, 5]
    as_json = json.loads(runner.invoke(cli.app, ["front", "--db", str(demo_db), "--json"]).stdout)
    assert as_json[0]["sentence"] == report.sentence and as_json[0]["num_samples"] == 32


def test_export_writes_what_the_library_returned(demo_db: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _spy(monkeypatch, "export_schedule")
    out = tmp_path / "rho.json"
    result = runner.invoke(cli.app, ["export", "--nfe", "5", "-o", str(out), "--db", str(demo_db)])
    assert result.exit_code == 0, result.output
    call = calls[0]
    assert call["nfe"] == 5 and call["sampler"] is None and call["path"] == str(out)
    written = json.loads(out.read_text())
    assert written == {**call["result"].to_dict(), "skiptune_version": written["skiptune_version"]}
    assert set(written) >= {"schedule", "nfe", "sampler", "value", "baseline_value",
                            "num_samples", "model_fingerprint"}
    missing = runner.invoke(cli.app, ["export", "--nfe", "9", "-o", str(out), "--db", str(demo_db)])
    assert missing.exit_code == 1 and "no searched schedule at 9 NFE" in _one_error_line(missing)


def test_studies_and_plot(demo_db: Path, tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["studies", "--db", str(demo_db), "--json"])
    assert result.exit_code == 0, result.output
    assert [(s["nfe"], s["finished"], s["running"]) for s in json.loads(result.stdout)] == [
        (3, 5, 0), (5, 5, 0)]
    png = tmp_path / "front.png"
    result = runner.invoke(cli.app, ["plot", "-o", str(png), "--db", str(demo_db)])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sample_writes_a_grid_and_arrays(tmp_path: Path) -> None:
    png, npz = tmp_path / "grid.png", tmp_path / "x.npz"
    common = ["--model", str(DEMO), "--nfe", "3", "--rho-bottom", "0.6", "-n", "4",
              "--device", "cpu"]
    assert runner.invoke(cli.app, ["sample", *common, "-o", str(png)]).exit_code == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert runner.invoke(cli.app, ["sample", *common, "-o", str(npz)]).exit_code == 0
    import numpy as np

    assert np.load(npz)["images"].shape == (4, 28, 28, 1)


def test_search_forwards_only_what_the_user_set(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    received: dict[str, Any] = {}

    def fake_search(model: str, config: tuner.SearchConfig, **kwargs: Any) -> list[Any]:
        received.update(model=model, config=config, **kwargs)
        return []

    monkeypatch.setattr(tuner, "search", fake_search)
    result = runner.invoke(cli.search_app, [
        "--model", "ckpt.pt", "--nfe", "9", "--nfe", "15", "--rho-top", "1.0",
        "--rungs", "64,256", "--metric", "kid", "--quiet"])
    assert result.exit_code == 0, result.output
    # The one typed configuration, with the library's defaults for everything not typed.
    assert received.pop("config") == tuner.SearchConfig(
        nfe=(9, 15), space=tuner.SearchSpace(rho_top=1.0),
        objective=ObjectiveSettings(metric="kid", rungs=(64, 256)))
    # Not a user option but the renderer: even --quiet prints warnings (out of memory).
    assert received.pop("on_event").render is cli._warn
    assert received == {"model": "ckpt.pt", "trust_pickle": False}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nfe", "4"], "nearest budgets it can meet are 3 and 5"),
        (["--nfe", "3", "--db", "/proc/skiptune.db"], "read-only"),
        (["--nfe", "3", "--workers", "2"], "use PostgreSQL"),
        (["--nfe", "3", "--rho-bottom-range", "1.2,0.3"], "0 ≤ low < high"),
        (["--nfe", "3", "--db", "postgresql+psycopg://me:hunter2@127.0.0.1:1/x"], "me:***@"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_1(argv: list[str], message: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKIPTUNE_DB_RETRY_SECONDS", "0")     # an unreachable server, at once
    result = runner.invoke(cli.search_app, ["--model", str(DEMO), "--db",
                                            str(tmp_path / "s.db"), *argv])
    assert result.exit_code == 1, result.output
    line = _one_error_line(result)
    assert message in line and "hunter2" not in result.output


def test_reading_a_missing_database_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.db"
    for command in (["best"], ["front"], ["studies"], ["export", "--nfe", "9", "-o", "x.json"]):
        result = runner.invoke(cli.app, [*command, "--db", str(missing)])
        assert result.exit_code == 1 and "no database at" in _one_error_line(result)
    assert not missing.exists()


def test_usage_errors_exit_2() -> None:
    result = runner.invoke(cli.search_app, ["--model", str(DEMO), "--nfe", "3",
                                            "--optimizer", "bayes"])
    assert result.exit_code == 2
    result = runner.invoke(cli.search_app, ["--model", str(DEMO), "--nfe", "3",
                                            "--rho-top", "1", "--rho-top-range", "0.3,1"])
    assert result.exit_code == 2


def test_the_summary_table_keeps_every_cell_whole_at_80_columns() -> None:
    from rich.console import Console

    from skiptune.schedule import TuningSchedule
    from skiptune.tuner import StudySummary

    # The widest row a search prints: a power schedule, a validated value, a long group.
    summary = StudySummary(
        group="demo_unet", sampler="dpmpp_2m", nfe=15, study_name="skiptune-demo_unet-nfe15",
        best_schedule=TuningSchedule(rho_bottom=0.792, rho_top=0.686, shape="power", gamma=0.7),
        best_value=8.042, baseline_value=29.54, validated=True, validation_num_samples=1024,
        validation_seed=256, num_samples=256, seed=0, finished=30, trials_total=30,
        known_values={"paper": 25.75}, gain_low=0.65, gain_high=0.75, validation_level=0.95,
        search_best_value=17.13, metric="fd", model_fingerprint="f" * 64, model="demo",
        optimizer="tpe", complete=30, pruned=0, failed=0, running=0, best_trial=7,
        seconds_per_trial=1.0)
    console = Console(width=80, record=True, force_terminal=False)
    console.print(cli._summary_table([summary], "skiptune search (192 s)"))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    (header,) = [line for line in lines if "sampler" in line]
    assert header.split() == ["group", "sampler", "NFE", "best", "ρ", "proxy", "ρ", "=", "1",
                              "gain", "N", "trials"]
    (row,) = [line for line in lines if "→" in line]
    assert row.split() == ["demo_unet", "dpmpp_2m", "15", "0.79→0.69", "γ0.70", "8.042",
                           "29.54", "73%", "1024", "30/30"]


def test_progress_rows_name_the_sampler_of_each_budget() -> None:
    import io

    from rich.console import Console

    from skiptune.tuner import StudyStarted

    progress = cli._SearchProgress(Console(file=io.StringIO(), width=100))
    with progress:
        for sampler in ("heun", "ipndm"):
            progress(StudyStarted(study_name=f"s-{sampler}-nfe5", nfe=5, sampler=sampler,
                                  trials_total=3, finished=0, resumed=False))
        rows = [task.fields["study"] for task in progress._progress.tasks]
    assert rows == ["heun 5 NFE", "ipndm 5 NFE"]


def test_version_prints_the_installed_version() -> None:
    from skiptune._version import skiptune_version

    result = runner.invoke(cli.app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"skiptune {skiptune_version()}"


def _help(app: Any, *args: str) -> str:
    result = runner.invoke(app, [*args, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("command", ["search", "best", "front", "export", "studies", "plot",
                                     "sample", "report", "dashboard"])
def test_help_shows_values_as_a_person_writes_them(command: str) -> None:
    text = _help(cli.app, command)
    assert not re.search(r"<(int|float|str|list)", text), text
    assert "range>" not in text


def test_the_metavars_say_what_to_write() -> None:
    search = _help(cli.search_app)
    for option, metavar in (("--nfe", "N"), ("--rungs", "N,N"), ("--model", "PATH"),
                            ("--rho-bottom-range", "LOW,HIGH"), ("--db", "PATH|URL"),
                            ("--optimizer", "[tpe|gp|cmaes|random|qmc|grid]")):
        assert re.search(rf"{re.escape(option)} {re.escape(metavar)}\s", search), option
    sample = " ".join(_help(cli.app, "sample").split())
    assert "--sampler NAME Sampler: euler, heun" in sample
    assert "-n, --num-samples N How many images" in sample
    assert "--seed N Noise seed of image 0" in sample
