"""Several samplers at several budgets in one database, as a user reads them back (issue 40's
reproduction, made small): every line names its sampler, every value the N and seeds it was
measured on, each sampler has its own front, and a gain whose interval includes 0 is said to
be not established."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from skiptune import cli
from skiptune.tuner import front_report, list_studies, write_report
from skiptune.tuner.results import pareto_mask

pytestmark = pytest.mark.slow       # the database takes about 20 s on one core
runner = CliRunner()
STUDIES = [(sampler, nfe) for sampler in ("heun", "ipndm") for nfe in (3, 5)]
SEARCHED_ON = "N = 8, seeds 0–7"          # the one rung of 8 images, seeds from 0
VALIDATED_ON = "N = 16, seeds 8–23"       # 2 × 8 images on the seeds after the search's


def _said(*args: str) -> str:
    result = runner.invoke(cli.app, list(args))
    assert result.exit_code == 0, result.output
    return " ".join(result.stdout.split())      # rich's wrapping undone


def _not_established(db: Path) -> dict[tuple[str, int], bool]:
    return {(s.sampler, s.nfe): s.gain_established is False for s in list_studies(db)}


def test_each_point_is_marked_against_its_own_samplers_points(several_samplers_db: Path) -> None:
    (report,) = front_report(several_samplers_db)
    assert report.samplers == ["heun", "ipndm"]
    for sampler in report.samplers:
        points = [p for p in (*report.tuned, *report.baseline) if p.sampler == sampler]
        assert [p.on_front for p in points] == pareto_mask(points)


def test_front_names_each_sampler_and_what_its_values_were_measured_on(
    several_samplers_db: Path,
) -> None:
    (report,) = front_report(several_samplers_db)
    assert [line.split(":")[0] for line in report.sentences] == ["heun", "ipndm"]
    text = _said("front", "--db", str(several_samplers_db))
    assert f"fd at {VALIDATED_ON}, validated" in text and "on its sampler's front" in text
    assert all(line in text for line in report.sentences)
    as_json = json.loads(_said("front", "--db", str(several_samplers_db), "--json"))
    assert as_json[0]["measured_num_samples"] == 16 and as_json[0]["measured_seed"] == 8
    assert {c["sampler"] for c in as_json[0]["claims"]} <= {"heun", "ipndm"}


def test_best_names_the_sampler_and_the_n_and_seeds_of_every_figure(
    several_samplers_db: Path,
) -> None:
    text = _said("best", "--db", str(several_samplers_db))
    assert f"known points (the search's {SEARCHED_ON}):" in text
    weak = _not_established(several_samplers_db)
    assert weak[("heun", 3)]      # its best is ρ = 1 itself: a gain of 0% [0%, 0%]
    for sampler, nfe in STUDIES:
        assert f"demo_unet {sampler} {nfe} NFE: paper" in text
        line = re.search(rf"✓ demo_unet {sampler} {nfe} NFE: validated at {VALIDATED_ON}, "
                         r"gain -?\d+% \[-?\d+%, -?\d+%\][^✓★]*", text)
        assert line is not None, text
        assert ("not established" in line.group(0)) == weak[(sampler, nfe)]
        assert "the search's own best" in line.group(0) and SEARCHED_ON in line.group(0)


def test_studies_say_what_their_values_were_measured_on(several_samplers_db: Path) -> None:
    rows = json.loads(_said("studies", "--db", str(several_samplers_db), "--json"))
    assert {r["measured_on"] for r in rows} == {f"{VALIDATED_ON}, validated"}
    table = _said("studies", "--db", str(several_samplers_db))   # the cell may wrap
    assert table.count("fd N=16 seeds") == 4 and table.count("8–23 ✓") == 4


@pytest.mark.parametrize("nfe", [3, 5])
def test_export_carries_the_validations_n_and_seeds_and_says_why(
    several_samplers_db: Path, tmp_path: Path, nfe: int
) -> None:
    out = tmp_path / "rho.json"
    said = _said("export", "--nfe", str(nfe), "-o", str(out), "--db", str(several_samplers_db))
    written = json.loads(out.read_text())
    assert (written["num_samples"], written["seed"]) == (16, 8)
    validation = written["validation"]
    assert (validation["search_num_samples"], validation["search_seed"]) == (8, 0)
    other = "heun" if written["sampler"] == "ipndm" else "ipndm"
    why = written["why"]
    assert why.startswith(f"picked {written['sampler']}'s validated best at {nfe} NFE")
    assert VALIDATED_ON in why and f"also {other}" in why
    assert ("not established" in why) == _not_established(several_samplers_db)[
        (written["sampler"], nfe)]
    assert " ".join(why.split()) in said


def test_the_report_labels_each_grid_and_every_figure(several_samplers_db: Path,
                                                     tmp_path: Path) -> None:
    page = write_report(several_samplers_db, tmp_path / "report.html").read_text()
    assert f"fd at {VALIDATED_ON}, validated</h3>" in page
    weak = _not_established(several_samplers_db)
    sections = page.split("<section>")[1:]
    assert len(sections) == 4
    for section in sections:
        sampler, nfe = re.search(r"<h2>demo_unet · (\w+) · (\d+) NFE</h2>", section).groups()
        gain = re.search(r"<span class='gain'>([^<]*)</span>", section).group(1)
        assert re.match(r"gain -?\d+% \[-?\d+%, -?\d+%\] \(95% paired bootstrap\)", gain)
        assert VALIDATED_ON in gain and " to " not in gain
        assert ("not established" in gain) == weak[(sampler, int(nfe))]
        captions = re.findall(r"<figcaption>([^<]*)</figcaption>", section)
        # A known point's grid says its ρ; each trial's grid is shown once.
        assert all(re.search(r"paper ρ \d\.\d\d→\d\.\d\d", c) for c in captions if "paper" in c)
        trials = re.findall(r"\(trial (\d+)\)", " ".join(captions))
        assert len(trials) == len(set(trials)) and captions[0].startswith("tuned")
