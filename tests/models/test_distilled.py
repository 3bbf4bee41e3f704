"""Distilled models: diffusers consistency pipelines.

The consistency pipelines are tiny random ``UNet2DModel`` + ``CMStochasticIterativeScheduler``
pipelines (``tests/models/tiny_cm.py``); diffusers' own pipeline is the reference for
one-step sampling.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub is first imported

from skiptune.errors import CheckpointError, ConfigurationError
from skiptune.models import TunableModel, load_model
from skiptune.sampling import initial_noise
from skiptune.schedule import TuningSchedule
from skiptune.skips import skip_tuning
from tests.models.tiny_cm import SIGMA_MAX, save_cm_pipeline

diffusers = pytest.importorskip("diffusers")

REVISION = "0123456789abcdef0123456789abcdef01234567"


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
