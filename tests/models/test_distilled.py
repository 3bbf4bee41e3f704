"""Distilled models: diffusers consistency pipelines and EDM-format one-step generators.

The consistency pipelines are tiny random ``UNet2DModel`` + ``CMStochasticIterativeScheduler``
pipelines (``tests/models/tiny_cm.py``); diffusers' own pipeline is the reference for
one-step sampling. The one-step generators are EDM fixtures re-saved as SiD saves its
generators (``dict(ema=G)``); those tests skip without ``$SKIPTUNE_EDM_FIXTURES``, as the
other EDM tests do.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub is first imported

from skiptune import cli
from skiptune.errors import CheckpointError, ConfigurationError
from skiptune.models import TunableModel, load_model
from skiptune.sampling import initial_noise, sample, sigma_grid
from skiptune.schedule import TuningSchedule
from skiptune.skips import skip_tuning
from tests.conftest import DEMO_CHECKPOINT
from tests.models.edm_helpers import fixture_path, read_tree, write_edm_pickle
from tests.models.tiny_cm import SIGMA_MAX, save_cm_pipeline

diffusers = pytest.importorskip("diffusers")

REVISION = "0123456789abcdef0123456789abcdef01234567"
runner = CliRunner()


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("cm")
    return {"uncond": root / "uncond", "cond": root / "cond", "root": root,
            "uncond_pipeline": save_cm_pipeline(root / "uncond"),
            "cond_pipeline": save_cm_pipeline(root / "cond", num_classes=10, seed=1)}


@pytest.fixture(scope="module")
def model(saved: dict[str, Any]) -> TunableModel:
    return load_model(saved["uncond"], device="cpu")


def _one_step_of_diffusers(pipeline: Any, noise: torch.Tensor,
                           labels: list[int] | None = None) -> torch.Tensor:
    """diffusers' own one-step sample from unit ``noise``, back in [-1, 1]."""
    images = pipeline(batch_size=noise.shape[0], num_inference_steps=1, latents=noise.clone(),
                      class_labels=labels, output_type="pt").images
    return images * 2 - 1


# --- consistency pipelines ------------------------------------------------------------------


def test_a_consistency_pipeline_folder_loads_with_its_scheduler_values(
    model: TunableModel, saved: dict[str, Any]
) -> None:
    assert model.family == "diffusers-cm" and model.source == str(saved["uncond"])
    assert model.default_sampler == "consistency"
    assert (model.sigma_min, model.sigma_max, model.sigma_data) == (0.002, SIGMA_MAX, 0.5)
    assert model.discrete_sigmas is None and model.conditioner is None
    assert model.image_shape == (3, 16, 16)
    assert model.metadata["clip_denoised"] is True
    # 1 (conv_in) + per down block: one per layer, one more if it downsamples.
    assert model.num_skips == 1 + (1 + 1) + (1 + 0)
    assert [s.name for s in model.freeu_stages] == ["up_blocks.0", "up_blocks.1"]


def test_one_step_is_the_pipelines_own_one_step_sample(
    model: TunableModel, saved: dict[str, Any]
) -> None:
    noise = initial_noise(3, model.image_shape, seed=5)
    ours = model.denoise(noise * model.sigma_max, model.sigma_max).clamp(-1, 1)
    theirs = _one_step_of_diffusers(saved["uncond_pipeline"], noise)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0)
    assert 0.05 < ours.abs().mean() < 0.95      # neither all zero nor all clamped


def test_a_class_conditional_pipeline_draws_classes_from_the_seeds(
    saved: dict[str, Any]
) -> None:
    cond = load_model(saved["cond"], device="cpu")
    assert cond.metadata["num_classes"] == 10
    labels = cond.condition_for(range(20, 24))
    assert labels.shape == (4, 10) and torch.equal(labels, cond.condition_for(range(20, 24)))
    noise = initial_noise(4, cond.image_shape, seed=20)
    ours = cond.denoise(noise * cond.sigma_max, cond.sigma_max, labels).clamp(-1, 1)
    theirs = _one_step_of_diffusers(saved["cond_pipeline"], noise,
                                    labels.argmax(dim=1).tolist())
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0)
    with pytest.raises(ConfigurationError, match=r"class-conditional \(10 classes\)"):
        cond.denoise(noise, cond.sigma_max)
    fixed = load_model(saved["cond"], device="cpu", conditioning={"class_labels": [7]})
    assert fixed.condition_for(range(9)).argmax(dim=1).tolist() == [7] * 9


def test_skip_sites_act_and_rho_one_changes_nothing(model: TunableModel) -> None:
    x = initial_noise(2, model.image_shape, seed=1) * torch.tensor([0.8, 5.0]).view(-1, 1, 1, 1)
    sigma = torch.tensor([0.8, 5.0])
    untuned = model.denoise(x, sigma)
    with skip_tuning(model, TuningSchedule.identity()):
        assert torch.equal(model.denoise(x, sigma), untuned)
    with skip_tuning(model, TuningSchedule(rho_bottom=0.6)):
        tuned = model.denoise(x, sigma)
    assert (tuned - untuned).abs().max() > 1e-3
    assert torch.equal(model.denoise(x, sigma), untuned)     # the hooks are gone


def test_a_consistency_pipeline_by_hub_id_is_its_folder(
    saved: dict[str, Any], model: TunableModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    cache = saved["root"] / "hf" / "hub"
    repo = cache / "models--tiny-org--tiny-cm"
    if not repo.exists():
        shutil.copytree(saved["uncond"], repo / "snapshots" / REVISION)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(REVISION)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    by_id = load_model("tiny-org/tiny-cm", device="cpu")
    assert (by_id.family, by_id.source) == ("diffusers-cm", "tiny-org/tiny-cm")
    assert by_id.fingerprint == model.fingerprint and by_id.num_skips == model.num_skips


def _copy_with_scheduler(saved: dict[str, Any], tmp_path: Path, text: str | None) -> Path:
    folder = shutil.copytree(saved["uncond"], tmp_path / "cm")
    path = folder / "scheduler" / "scheduler_config.json"
    if text is None:
        path.unlink()
    else:
        path.write_text(text)
    return folder


def _scheduler_text(**changes: Any) -> str:
    config = diffusers.CMStochasticIterativeScheduler(sigma_max=SIGMA_MAX).config
    return json.dumps({"_class_name": "CMStochasticIterativeScheduler", **config, **changes})


@pytest.mark.parametrize(("text", "message"), [
    (None, r"no scheduler config for the UNet2DModel"),
    ("{\"sigma_min\": 0.002,", r"not JSON"),
    (json.dumps({"_class_name": "DDPMScheduler"}), r"names scheduler 'DDPMScheduler', not CM"),
    (_scheduler_text(sigma_min=-0.5), r"sigma_min -0\.5.*a finite number > 0"),
    (_scheduler_text(sigma_max="80"), r"sigma_max '80'.*a finite number > 0"),
    (_scheduler_text(sigma_data=0), r"sigma_data 0.*a finite number > 0"),
    (_scheduler_text(sigma_min=100.0), r"sigma_min 100\.0 ≥ sigma_max 60\.0"),
    (_scheduler_text(clip_denoised="yes"), r"clip_denoised 'yes'"),
], ids=["missing", "garbled", "other-scheduler", "negative-sigma", "text-sigma", "zero-sigma-data",
        "inverted-range", "clip-not-bool"])
def test_a_bad_scheduler_config_is_one_line(saved: dict[str, Any], tmp_path: Path,
                                            text: str | None, message: str) -> None:
    folder = _copy_with_scheduler(saved, tmp_path, text)
    with pytest.raises(CheckpointError, match=message) as raised:
        load_model(folder, device="cpu")
    assert "\n" not in str(raised.value)


def test_a_consistency_pipeline_without_its_unet_is_one_line(
    saved: dict[str, Any], tmp_path: Path
) -> None:
    folder = shutil.copytree(saved["uncond"], tmp_path / "cm")
    shutil.rmtree(folder / "unet")
    with pytest.raises(CheckpointError, match=r"no ConsistencyModelPipeline folder with a "
                       r"UNet2DModel in unet/") as raised:
        load_model(folder, device="cpu")
    assert "\n" not in str(raised.value)


def test_one_step_sigma_is_refused_for_a_consistency_pipeline(saved: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match=r"one_step_sigma applies to an NVlabs EDM "
                       r"network-snapshot \.pkl.*leave one_step_sigma out"):
        load_model(saved["uncond"], device="cpu", one_step_sigma=2.5)


# --- EDM-format one-step generators -----------------------------------------------------------


@pytest.fixture(scope="module")
def generator_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An EDM fixture saved as SiD saves its generator: ``dict(ema=G)`` and nothing else."""
    tree = read_tree(fixture_path("ddpmpp-edm-uncond"))
    folder = tmp_path_factory.mktemp("sid")
    return write_edm_pickle(folder / "network-snapshot-1.200000-000100.pkl", {"ema": tree["ema"]})


def test_a_one_step_generator_is_the_edm_network_at_sigma_init(generator_snapshot: Path) -> None:
    # The fixture's third input was computed by EDM's own code at σ = 2: start there.
    arrays = np.load(fixture_path("ddpmpp-edm-uncond").with_suffix(".npz"))
    x, sigma, expected = (torch.from_numpy(arrays[k][2:3]) for k in ("x", "sigma", "denoised"))
    assert float(sigma) == 2.0
    generator = load_model(generator_snapshot, device="cpu", one_step_sigma=2.0)
    diffusion = load_model(generator_snapshot, device="cpu")
    assert generator.family == "edm" and generator.fingerprint == diffusion.fingerprint
    assert (generator.sigma_min, generator.sigma_max) == (diffusion.sigma_min, 2.0)
    assert generator.default_sampler == "consistency" and diffusion.default_sampler is None
    assert generator.metadata["one_step_sigma"] == 2.0
    assert "one_step_sigma" not in diffusion.metadata
    grid = sigma_grid(generator, sampler="euler", nfe=1)
    assert grid.tolist() == [2.0, 0.0]
    z = x / 2.0                                  # the unit noise whose σ_init·z is x
    image = generator.denoise(grid[0] * z, grid[0])
    assert torch.allclose(image, expected, atol=5e-5, rtol=0)
    assert torch.equal(image, generator.net(2.0 * z, torch.tensor([2.0])))
    # One Euler step from σ_init to 0 lands on D(σ_init·z; σ_init) itself.
    assert torch.allclose(sample(generator, z, sampler="euler", nfe=1), image, atol=1e-5)
    with skip_tuning(generator, TuningSchedule.identity()):
        assert torch.equal(generator.denoise(2.0 * z, 2.0), image)
    with skip_tuning(generator, TuningSchedule(rho_bottom=0.6)):
        assert (generator.denoise(2.0 * z, 2.0) - image).abs().max() > 1e-3


@pytest.mark.parametrize("value", [0, -2.5, float("nan"), float("inf"), True, "2.5"])
def test_a_one_step_sigma_that_is_no_positive_number_is_refused_before_loading(
    value: Any, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError, match=r"one_step_sigma must be a finite σ > 0") as e:
        load_model(tmp_path / "not-read.pkl", device="cpu", one_step_sigma=value)
    assert "\n" not in str(e.value)


def test_one_step_sigma_outside_the_networks_range_is_refused(generator_snapshot: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"outside the σ range .*0\.002 < σ ≤ 80"):
        load_model(generator_snapshot, device="cpu", one_step_sigma=250.0)


def test_one_step_sigma_is_refused_for_another_family() -> None:
    with pytest.raises(ConfigurationError, match=r"one_step_sigma applies to an NVlabs EDM"):
        load_model(DEMO_CHECKPOINT, device="cpu", one_step_sigma=2.5)


def test_the_command_line_samples_a_one_step_generator(generator_snapshot: Path,
                                                       tmp_path: Path) -> None:
    out = tmp_path / "one.npz"
    args = ["sample", "--model", str(generator_snapshot), "--one-step-sigma", "2.5", "--nfe",
            "1", "--sampler", "euler", "-n", "2", "--device", "cpu", "-o", str(out)]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    generator = load_model(generator_snapshot, device="cpu", one_step_sigma=2.5)
    noise = initial_noise(2, generator.image_shape, seed=0)
    expected = ((generator.denoise(2.5 * noise, 2.5).clamp(-1, 1) + 1) * 127.5).round()
    written = torch.from_numpy(np.load(out)["images"]).permute(0, 3, 1, 2).float()
    assert (written - expected).abs().max() <= 1
    bad = runner.invoke(cli.app, [*args[:4], "0", *args[5:]])
    assert bad.exit_code != 0
    assert "--one-step-sigma must be a finite σ > 0" in bad.output


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_a_search_keeps_sigma_init_in_the_studys_identity(generator_snapshot: Path,
                                                          tmp_path: Path) -> None:
    from tests.models.test_edm import _offline_features_and_reference

    features, reference = _offline_features_and_reference(tmp_path)
    base = ["--model", str(generator_snapshot), "--nfe", "1", "--sampler", "euler",
            "--features", str(features), "--ref", str(reference), "--rungs", "4", "--trials",
            "1", "--no-validation", "--device", "cpu", "--db", str(tmp_path / "s.db"), "--json"]
    first = runner.invoke(cli.search_app, [*base, "--one-step-sigma", "2.5"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(cli.search_app, [*base, "--one-step-sigma", "2.5"])
    assert again.exit_code == 0, again.output
    # The same weights, sampler and budget: only σ_init tells the generators apart.
    other = runner.invoke(cli.search_app, [*base, "--one-step-sigma", "1.5"])
    assert other.exit_code == 1
    line = other.stderr.strip()
    assert "\n" not in line and "one_step_sigma" in line, line
