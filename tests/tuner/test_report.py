"""Sample grids kept with a validated study, and the report page that shows them."""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from PIL import Image
from typer.testing import CliRunner

from skiptune import cli
from skiptune.errors import ConfigurationError, FileAccessError
from skiptune.storage import artifact_folder, normalise_url, open_storage
from skiptune.tuner import ValidationSettings, search
from skiptune.tuner.results._report import (
    FrontSeries,
    factors_svg,
    front_svg,
    png_size,
    write_report,
)
from skiptune.tuner.search import _grids
from skiptune.tuner.search._grids import GRID_SAMPLES
from skiptune.tuner.study import GRID_ATTR, NUM_SKIPS_ATTR, grid_artifacts, role_of
from tests.tuner.helpers import DEMO
from tests.tuner.report_helpers import TINY_SEARCH, copy_database, searched_database


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return searched_database(tmp_path_factory.mktemp("searched"))


def _study(db: Path) -> optuna.Study:
    storage = open_storage(db, read_only=True).optuna_storage()
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


def test_the_artifact_folder_sits_beside_sqlite_and_is_named_for_a_server() -> None:
    assert artifact_folder(normalise_url("/data/runs.db")) == Path("/data/runs.artifacts")
    server = normalise_url("postgresql+psycopg://postgres@127.0.0.1:5432/test")
    assert artifact_folder(server) is None
    assert artifact_folder(server, "/srv/grids") == Path("/srv/grids")


def test_a_validated_study_keeps_one_grid_per_baseline_known_point_and_candidate(
    searched: Path,
) -> None:
    study = _study(searched)
    folder = searched.with_name("study.artifacts")
    with_grid = {t.number: grid_artifacts(t) for t in study.trials if grid_artifacts(t)}
    validated = {c["trial"] for c in _candidates(study)}
    roles = {role_of(t) for t in study.trials if t.number in with_grid}
    assert validated <= set(with_grid) and "baseline" in roles
    for ids in with_grid.values():
        assert len(ids) == 1
        data = (folder / ids[0]).read_bytes()
        width, height = png_size(data)
        # 4 × 4 digits of 28 px with 2 px padding, enlarged 5× to be at least 512 px wide.
        assert (width, height) == (5 * (4 * 30 + 2), 5 * (4 * 30 + 2))
    seed = study.user_attrs[GRID_ATTR]["seed"]
    assert study.user_attrs[GRID_ATTR]["num_samples"] == GRID_SAMPLES
    assert seed == TINY_SEARCH.seed + 16      # the first validation seeds: no trial used them
    assert study.user_attrs[NUM_SKIPS_ATTR] > 1


def _candidates(study: optuna.Study) -> list[dict]:
    return [v for k, v in study.user_attrs.items() if k.startswith("skiptune_validated:")]


def test_a_rerun_stores_no_second_grid_and_refills_a_deleted_folder(
    searched: Path, tmp_path: Path
) -> None:
    db = copy_database(searched, tmp_path)
    before = {t.number: grid_artifacts(t) for t in _study(db).trials}
    search(DEMO, TINY_SEARCH, db=db)
    assert {t.number: grid_artifacts(t) for t in _study(db).trials} == before
    shutil.rmtree(tmp_path / "study.artifacts")
    search(DEMO, TINY_SEARCH, db=db)
    after = _study(db).trials
    stored = [ids for t in after if (ids := grid_artifacts(t))]
    assert len(stored) == len([ids for ids in before.values() if ids])
    assert all(sum((tmp_path / "study.artifacts" / i).is_file() for i in ids) == 1
               for ids in stored)


def _grid_pixels(db: Path) -> dict[int, np.ndarray]:
    folder = db.with_name(f"{db.stem}.artifacts")
    return {t.number: np.asarray(Image.open(file), dtype=np.int16)
            for t in _study(db).trials for ids in [grid_artifacts(t)]
            for file in [folder / i for i in ids] if file.is_file()}


def test_validated_grids_are_the_validations_own_images_and_sample_nothing_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A validated candidate's grid is its validation's first images, on the grid's seeds:
    only the grid trials validation did not measure (known points) are sampled for a grid,
    and a grid sampled afresh (a rerun refilling a deleted folder) is the same picture."""
    sampled: list[int] = []
    real = _grids.sample_images

    def counting(*args: Any, **kwargs: Any) -> Any:
        sampled.append(kwargs["num_samples"])
        return real(*args, **kwargs)

    monkeypatch.setattr(_grids, "sample_images", counting)
    db = searched_database(tmp_path)
    grids = _grid_pixels(db)
    validated = {c["trial"] for c in _candidates(_study(db))}
    assert validated and validated <= set(grids)
    assert sampled == [GRID_SAMPLES] * len(set(grids) - validated)

    sampled.clear()
    shutil.rmtree(tmp_path / "study.artifacts")
    search(DEMO, TINY_SEARCH, db=db)
    assert sampled == [GRID_SAMPLES] * len(grids)
    refilled = _grid_pixels(db)
    assert refilled.keys() == grids.keys()
    for number, pixels in grids.items():      # batches of 32 and of 16: equal to a level
        assert np.abs(refilled[number] - pixels).max() <= 1, number


def test_a_grid_that_cannot_be_stored_is_a_note_and_the_validation_stands(
    searched: Path, tmp_path: Path
) -> None:
    db = copy_database(searched, tmp_path)
    shutil.rmtree(tmp_path / "study.artifacts")
    (tmp_path / "study.artifacts").write_text("a file where the folder should be")
    notes: list[str] = []
    (summary,) = search(DEMO, TINY_SEARCH, db=db,
                        on_event=lambda e: notes.append(getattr(e, "message", "")))
    assert summary.validated and summary.best_value is not None
    assert any("sample grids are not stored" in n for n in notes)


def test_no_grids_without_validation_or_when_switched_off(tmp_path: Path) -> None:
    config = dataclasses.replace(TINY_SEARCH, validation=ValidationSettings(grids=False))
    search(DEMO, config, db=tmp_path / "off.db")
    assert not any(grid_artifacts(t) for t in _study(tmp_path / "off.db").trials)
    assert not (tmp_path / "off.artifacts").exists()


def test_the_report_embeds_the_grids_at_their_size_and_draws_the_front(
    searched: Path, tmp_path: Path
) -> None:
    page = write_report(searched, tmp_path / "report.html").read_text()
    images = re.findall(r'<img src="data:image/png;base64,[^"]+" width="(\d+)" height="(\d+)"',
                        page)
    assert len(images) >= 2 and all(w == h == "610" for w, h in images)
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", page)
    assert captions[0].startswith("tuned") and "ρ = 1" in captions
    assert page.count("<svg") >= 2 and "prefers-color-scheme: dark" in page
    assert "http://" not in page and "https://" not in page      # nothing to fetch
    assert "interval" in page and "no images stored" not in page


def test_without_its_artifact_folder_the_report_keeps_the_numbers(
    searched: Path, tmp_path: Path
) -> None:
    db = copy_database(searched, tmp_path / "copy")
    shutil.rmtree(tmp_path / "copy" / "study.artifacts")
    page = write_report(db, tmp_path / "report.html").read_text()
    assert "no images stored" in page and "<img" not in page and "gain" in page


def test_a_bad_report_path_creates_nothing(searched: Path, tmp_path: Path) -> None:
    with pytest.raises(FileAccessError):
        write_report(searched, tmp_path / "report.txt")
    assert list(tmp_path.iterdir()) == []


def test_the_cli_writes_the_report_and_says_one_line_for_a_missing_database(
    searched: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    ok = runner.invoke(cli.app, ["report", "--db", str(searched), "-o", str(tmp_path / "r.html")])
    assert ok.exit_code == 0 and (tmp_path / "r.html").is_file()
    bad = runner.invoke(cli.app, ["report", "--db", str(tmp_path / "none.db"), "-o",
                                  str(tmp_path / "s.html")])
    assert bad.exit_code == 1 and "error: no database" in bad.output
    assert not (tmp_path / "s.html").exists() and not (tmp_path / "none.db").exists()


def test_the_dashboard_refuses_a_bad_port_in_one_line(searched: Path) -> None:
    from skiptune.tuner import serve_dashboard

    with pytest.raises(ConfigurationError, match=r"^port must lie in 1\.\.65535"):
        serve_dashboard(searched, port=70000)


def _inside(svg: str) -> list[bool]:
    """For each point drawn (a tuned dot's centre, a ρ = 1 square's), whether it lies in the
    chart's plot area."""
    x, y, w, h = map(float, re.search(
        r'class="plot-area" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)"',
        svg).groups())
    dots = [(float(a), float(b)) for a, b in re.findall(r'<circle cx="([-\d.]+)" cy="([-\d.]+)"',
                                                          svg)]
    squares = [(float(a) + 4, float(b) + 4) for a, b in re.findall(
        r'<rect x="([-\d.]+)" y="([-\d.]+)" width="8"', svg)]
    return [x <= px <= x + w and y <= py <= y + h for px, py in dots + squares]


def test_the_front_chart_draws_one_unfilled_line_per_sampler_and_kind() -> None:
    series = [FrontSeries("heun", "tuned", ((3, 10.0), (5, 6.0))),
              FrontSeries("heun", "baseline", ((3, 30.0), (5, 20.0))),
              FrontSeries("ipndm", "tuned", ((3, 4.0), (5, 2.0), (9, math.nan))),
              FrontSeries("ipndm", "baseline", ((3, 5.0),))]
    svg = front_svg(series, metric="fd")
    assert svg.startswith("<svg") and svg.count("<polyline") == 3
    assert svg.count('fill="none" stroke="currentColor"/>') == 3     # lines are never filled
    groups = re.findall(r'<g class="series \w+" data-sampler="(\w+)" data-kind="(\w+)"', svg)
    assert sorted(groups) == [("heun", "baseline"), ("heun", "tuned"), ("ipndm", "baseline"),
                              ("ipndm", "tuned")]
    inside = _inside(svg)
    assert len(inside) == 7 and all(inside)          # the NaN point is left out
    # KID can be negative: still inside the plot area.
    assert all(_inside(front_svg([FrontSeries("heun", "tuned", ((3, -0.2), (5, 0.4)))],
                                 metric="kid")))


def test_the_factor_chart_has_a_scale_of_rho() -> None:
    bars = factors_svg([0.5, 0.75, 1.0])
    assert bars.count("<rect") == 3 and "skip 0: 0.500" in bars
    assert all(f'class="tick">{tick}</text>' in bars for tick in ("0.0", "0.5", "1.0"))
    with pytest.raises(ValueError, match="PNG"):
        png_size(b"GIF89a" + bytes(30))
