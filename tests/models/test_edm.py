"""EDM snapshots through load_model, class-conditional sampling, and the CLI end to end."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from skiptune import cli
from skiptune.errors import ConfigurationError
from skiptune.models import load_model
from skiptune.sampling import initial_noise, sample
from tests.models import edm_helpers
from tests.models.edm_helpers import fixture_path

# The stand-in feature network is made with torch.jit, which torch ≥ 2.9 marks deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")

runner = CliRunner()


def _edm_modules() -> list[str]:
    return [m for m in sys.modules if m.split(".")[0] in ("torch_utils", "dnnlib")]


def test_load_model_reads_a_snapshot_without_trusting_pickles() -> None:
    model = load_model(fixture_path("ddpmpp-edm-uncond"), device="cpu")
    assert (model.family, model.image_shape, model.num_skips) == ("edm", (3, 16, 16), 9)
    assert (model.sigma_min, model.sigma_max) == (0.002, 80.0)
    assert model.conditioner is None and model.condition_for([0, 1]) is None
    assert model.metadata["edm_class"] == "EDMPrecond"
    same = load_model(fixture_path("ddpmpp-edm-uncond"), device="cpu", trust_pickle=True)
    assert same.fingerprint == model.fingerprint
    assert not _edm_modules()


def test_missing_fixtures_skip_with_the_reason_or_fail_where_required(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(edm_helpers.ENV_DIR, str(tmp_path))
    monkeypatch.delenv(edm_helpers.ENV_REQUIRE, raising=False)
    with pytest.raises(pytest.skip.Exception, match="not found in"):
        edm_helpers.fixtures_dir()
    monkeypatch.setenv(edm_helpers.ENV_REQUIRE, "1")
    with pytest.raises(pytest.fail.Exception, match="SKIPTUNE_REQUIRE_EDM_FIXTURES=1"):
        edm_helpers.fixtures_dir()


def test_conditional_model_draws_each_sample_class_from_its_seed() -> None:
    model = load_model(fixture_path("adm-edm-cond"), device="cpu")
    labels = model.condition_for(range(40, 48))
    assert labels.shape == (8, 10) and torch.equal(labels.sum(dim=1), torch.ones(8))
    # Per seed, not per batch: the same seeds give the same classes in any split.
    split = torch.cat([model.condition_for(range(40, 43)), model.condition_for(range(43, 48))])
    assert torch.equal(labels, split)
    # Uniform over the 10 classes: 2,000 seeds hit each class 200 ± 60 times.
    counts = model.condition_for(range(2000)).sum(dim=0)
    assert counts.min() > 140 and counts.max() < 260
    # Drawing classes leaves the noise alone: the noise of a seed is the noise of that seed.
    assert torch.equal(initial_noise(1, model.image_shape, seed=45)[0],
                       initial_noise(8, model.image_shape, seed=40)[5])


def test_conditional_model_refuses_to_run_without_labels() -> None:
    model = load_model(fixture_path("ddpmpp-vp-cond"), device="cpu")
    noise = initial_noise(2, model.image_shape, seed=0)
    with pytest.raises(ConfigurationError, match=r"class-conditional.*condition_for"):
        sample(model, noise, sampler="euler", nfe=2)
    images = sample(model, noise, sampler="euler", nfe=2, condition=model.condition_for([0, 1]))
    assert images.shape == noise.shape


def test_user_class_labels_fix_the_classes_and_are_checked() -> None:
    source = fixture_path("adm-edm-cond")
    fixed = load_model(source, device="cpu", conditioning={"class_labels": [7]})
    assert fixed.condition_for(range(30)).argmax(dim=1).tolist() == [7] * 30
    some = load_model(source, device="cpu", conditioning={"class_labels": [1, 5]})
    assert set(some.condition_for(range(200)).argmax(dim=1).tolist()) == {1, 5}
    with pytest.raises(ConfigurationError, match=r"whole numbers in 0\.\.9"):
        load_model(source, device="cpu", conditioning={"class_labels": [10]})
    with pytest.raises(ConfigurationError, match="unconditional"):
        load_model(fixture_path("ddpmpp-edm-uncond"), device="cpu",
                   conditioning={"class_labels": [1]})


class _PooledFeatures(torch.nn.Module):
    """A stand-in feature network for 16×16 RGB: 4×4 average pooling, 48 features."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)


def _offline_features_and_reference(folder: Path) -> tuple[Path, Path]:
    """A TorchScript feature net (declared in its sibling .json) and reference statistics of
    smooth random 'real' images, computed here: nothing is downloaded."""
    features = folder / "pooled.pt"
    torch.jit.save(torch.jit.script(_PooledFeatures()), str(features))
    features.with_suffix(".json").write_text(json.dumps({"input_range": "-1,1",
                                                         "resolution": 16}))
    generator = torch.Generator().manual_seed(0)
    real = torch.rand(256, 3, 4, 4, generator=generator) * 2 - 1
    real = torch.nn.functional.interpolate(real, size=16, mode="bilinear")
    feats = _PooledFeatures()(real).double().numpy()
    reference = folder / "reference.npz"
    np.savez(reference, mu=feats.mean(axis=0), sigma=np.cov(feats, rowvar=False))
    return features, reference


def test_search_runs_on_an_edm_snapshot_from_the_command_line(tmp_path: Path) -> None:
    model = shutil.copy(fixture_path("ddpmpp-edm-uncond"), tmp_path / "net.pkl")
    features, reference = _offline_features_and_reference(tmp_path)
    db = tmp_path / "studies.db"
    args = ["--model", str(model), "--nfe", "9", "--features", str(features),
            "--ref", str(reference), "--rungs", "4,8", "--trials", "3", "--batch-size", "8",
            "--device", "cpu", "--db", str(db), "--json"]
    result = runner.invoke(cli.search_app, args)
    assert result.exit_code == 0, result.output
    (summary,) = json.loads(result.stdout)
    assert summary["nfe"] == 9 and summary["finished"] == 3 and summary["num_samples"] == 8
    assert summary["baseline_value"] is not None and np.isfinite(summary["baseline_value"])
    assert not _edm_modules()


def test_class_labels_are_part_of_the_study_and_checked_on_resume(tmp_path: Path) -> None:
    model = shutil.copy(fixture_path("adm-edm-cond"), tmp_path / "cond.pkl")
    features, reference = _offline_features_and_reference(tmp_path)
    db = tmp_path / "studies.db"
    base = ["--model", str(model), "--nfe", "3", "--sampler", "euler", "--features",
            str(features), "--ref", str(reference), "--rungs", "4", "--trials", "1",
            "--device", "cpu", "--db", str(db), "--json"]
    first = runner.invoke(cli.search_app, [*base, "--class-labels", "3,4"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(cli.search_app, [*base, "--class-labels", "3,4"])
    assert again.exit_code == 0, again.output
    other = runner.invoke(cli.search_app, [*base, "--class-labels", "5"])
    assert other.exit_code == 1
    line = other.stderr.strip()
    assert "\n" not in line and "condition.classes" in line, line


def test_sample_writes_a_conditional_grid(tmp_path: Path) -> None:
    source = fixture_path("adm-edm-cond")
    grids = {}
    for labels in ("2", "8"):
        out = tmp_path / f"grid{labels}.png"
        result = runner.invoke(cli.app, ["sample", "--model", str(source), "--nfe", "3",
                                         "--sampler", "euler", "--rho-bottom", "0.7", "-n", "4",
                                         "--device", "cpu", "--class-labels", labels,
                                         "-o", str(out)])
        assert result.exit_code == 0, result.output
        grids[labels] = np.asarray(Image.open(out))
    assert grids["2"].shape == grids["8"].shape
    assert not np.array_equal(grids["2"], grids["8"])        # the class reached the network


def test_objective_and_sample_draw_the_same_per_seed_classes(tmp_path: Path) -> None:
    from skiptune.objectives import ObjectiveConfig, build_objective
    from skiptune.sampling import sample_images
    from skiptune.schedule import TuningSchedule

    features, reference = _offline_features_and_reference(tmp_path)
    model = load_model(fixture_path("adm-edm-cond"), device="cpu")
    config = ObjectiveConfig(sampler="euler", nfe=3, features=str(features),
                             reference=str(reference), rungs=(6,), seed=11, batch_size=4)
    objective = build_objective(model, config, progress=False)
    assert objective.identity["condition"]["classes"] is None      # all classes, per seed
    _, scored, _, _ = objective._batch(0, 6)
    images = sample_images(model, schedule=TuningSchedule(rho_bottom=1.0, rho_top=1.0), nfe=3,
                           sampler="euler", num_samples=6, seed=11, batch_size=6)
    np.testing.assert_allclose(scored, objective.extractor(images), rtol=1e-5, atol=1e-6)
