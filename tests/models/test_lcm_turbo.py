"""Distilled Stable Diffusion pipelines: LCM, LCM-LoRA, SD-Turbo and SDXL-Turbo.

Tiny random pipelines (``tests/models/tiny_sd.py``) with the schedulers those models ship:
``LCMScheduler`` (an LCM-distilled U-Net with a guidance embedding, and an LCM-LoRA-style
U-Net without one) and ``EulerAncestralDiscreteScheduler`` with trailing spacing (turbo).
diffusers' own pipelines, run on the very modules skiptune loaded, are the reference: at
ρ = 1 skiptune's samples equal theirs, in one step and, with the pipeline's step noise
replaced by skiptune's seeded step noise (its scheduler's ``randn_tensor``), in several.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"   # before diffusers is imported: nothing may reach the Hub

from skiptune.errors import CheckpointError, ConfigurationError
from skiptune.models import TunableModel, load_model
from skiptune.sampling import SeededStepNoise, initial_noise, sample, write_samples
from skiptune.schedule import TuningSchedule
from skiptune.skips import skip_tuning
from skiptune.tuner import SearchConfig

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("safetensors")

from tests.models.tiny_sd import (  # noqa: E402 (after the skips above)
    POOLED,
    SD_UNET,
    SDXL_UNET,
    save_embeddings,
    save_pipeline,
)

REVISION = "0123456789abcdef0123456789abcdef01234567"
# Far below LCM's 10, so that the boundary condition moves the samples measurably (c_skip is
# 0.0025 at timestep 999 and 0.036 at 259): a loader that ignored it, or the key, would fail.
TIMESTEP_SCALING = 0.01
SD_BETAS: dict[str, Any] = {"beta_schedule": "scaled_linear", "beta_start": 0.00085,
                            "beta_end": 0.012, "steps_offset": 1}
LCM_UNET = {**SD_UNET, "time_cond_proj_dim": 8}


def _turbo_scheduler() -> Any:
    return diffusers.EulerAncestralDiscreteScheduler(**SD_BETAS, timestep_spacing="trailing")


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("distilled")
    # LCM-LoRA users swap SD's scheduler for LCMScheduler.from_config(pipe.scheduler.config).
    lora_scheduler = diffusers.LCMScheduler.from_config(
        diffusers.DDPMScheduler(**SD_BETAS).config, timestep_scaling=TIMESTEP_SCALING)
    return {
        "root": root,
        "lcm": save_pipeline(root / "lcm", LCM_UNET, seed=1,
                             scheduler=diffusers.LCMScheduler(timestep_scaling=TIMESTEP_SCALING),
                             pipeline="LatentConsistencyModelPipeline"),
        "lora": save_pipeline(root / "lora", seed=2, scheduler=lora_scheduler),
        "turbo": save_pipeline(root / "turbo", seed=3, scheduler=_turbo_scheduler()),
        "xl_turbo": save_pipeline(root / "xl", SDXL_UNET, seed=4, scheduler=_turbo_scheduler()),
        "embeddings": save_embeddings(root / "sd.safetensors"),
        "xl_embeddings": save_embeddings(root / "xl.safetensors", width=16, pooled=POOLED,
                                         negative=False),
    }


def _load(saved: dict[str, Path], name: str, **conditioning: Any) -> TunableModel:
    file = saved["xl_embeddings" if name == "xl_turbo" else "embeddings"]
    return load_model(saved[name], device="cpu",
                      conditioning={"embeddings": str(file), **conditioning})


@pytest.fixture(scope="module")
def lcm(saved: dict[str, Path]) -> TunableModel:
    return _load(saved, "lcm")


@pytest.fixture(scope="module")
def turbo(saved: dict[str, Path]) -> TunableModel:
    return _load(saved, "turbo")


# --- diffusers' pipelines as the reference ---------------------------------------------------


def _pipeline(model: TunableModel, folder: Path) -> Any:
    """diffusers' own pipeline (the class model_index.json names) on skiptune's modules."""
    index = json.loads((folder / "model_index.json").read_text())
    scheduler_class = getattr(diffusers, index["scheduler"][1])
    parts: dict[str, Any] = {
        "unet": model.net, "vae": model.decoder.vae, "text_encoder": None, "tokenizer": None,
        "scheduler": scheduler_class.from_pretrained(folder / "scheduler"),
    }
    if index["_class_name"] == "StableDiffusionXLPipeline":
        parts.update(text_encoder_2=None, tokenizer_2=None, add_watermarker=False)
    else:
        parts.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipeline = getattr(diffusers, index["_class_name"])(**parts)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _theirs(model: TunableModel, folder: Path, latents: torch.Tensor, condition: dict,
            *, steps: int) -> torch.Tensor:
    """The pipeline's final latents from ``latents`` (its own scale) for these embeddings."""
    # prompt_embeds, negative_prompt_embeds, pooled_prompt_embeds...: the pipeline's names.
    embeddings = {k: v for k, v in condition.items() if k.endswith("_embeds")}
    with torch.no_grad():
        return _pipeline(model, folder)(
            **embeddings, num_inference_steps=steps, latents=latents.clone(),
            guidance_scale=float(condition["guidance_scale"][0]), output_type="latent",
        ).images


def _ours(model: TunableModel, *, steps: int, seed: int = 10, count: int = 2,
          schedule: TuningSchedule | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(skiptune's samples at ρ = 1 with the model's default sampler, their unit noise,
    their condition) for samples seed, seed + 1, ..."""
    noise = initial_noise(count, model.noise_shape, seed=seed)
    condition = model.condition_for(range(seed, seed + count))
    assert model.default_sampler is not None
    with skip_tuning(model, schedule or TuningSchedule.identity()):
        images = sample(model, noise, sampler=model.default_sampler, nfe=steps,
                        condition=condition,
                        step_noise=SeededStepNoise(count, model.noise_shape, seed=seed))
    return images, noise, condition


def _with_skiptune_step_noise(monkeypatch: pytest.MonkeyPatch, module: str, model: TunableModel,
                              *, seed: int = 10, count: int = 2) -> list[int]:
    """Make the scheduler's j-th noise draw skiptune's step noise of step j (seeds seed...)."""
    noise = SeededStepNoise(count, model.noise_shape, seed=seed)
    draws: list[int] = []

    def randn_tensor(shape: tuple[int, ...], **kwargs: Any) -> torch.Tensor:
        draws.append(len(draws))
        return noise(draws[-1]).to(kwargs.get("dtype") or torch.float32)

    monkeypatch.setattr(importlib.import_module(module), "randn_tensor", randn_tensor)
    return draws


def _vp_latents(model: TunableModel, noise: torch.Tensor) -> torch.Tensor:
    """What an LCM pipeline starts from for skiptune's unit noise z: skiptune starts at
    x = σ_max·z in σ-space, which the VP pipeline (init_noise_sigma 1) holds as x/√(σ² + 1)."""
    sigma = float(model.discrete_sigmas[-1])
    return noise * sigma / math.sqrt(sigma**2 + 1)


def _assert_same(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """Equal up to float32 rounding: the σ grid and the timestep of each σ are computed in
    another order than diffusers' tables. Measured at most 6e-7 of the samples' scale (a
    random net's latents reach about 60), so 1e-5 of it holds with margin; LCM's 4 steps on
    the trailing timesteps instead of its own move them by 1e-2. Returns the difference."""
    difference = (ours - theirs).abs().max().item()
    scale = max(1.0, ours.abs().max().item())
    print(f"max |skiptune − diffusers| = {difference:.2e}, scale {scale:.2f}")
    assert torch.isfinite(theirs).all() and difference < 1e-5 * scale, (difference, scale)
    return difference


# --- Latent Consistency Models ----------------------------------------------------------------


def test_an_lcm_pipeline_loads_with_its_scheduler_and_guidance_embedding(
    lcm: TunableModel, saved: dict[str, Path]
) -> None:
    assert (lcm.family, lcm.default_sampler, lcm.original_inference_steps) == (
        "diffusers-lcm", "lcm", 50)
    assert lcm.metadata["scheduler"] == "LCMScheduler" and lcm.metadata["guidance_embedding"]
    assert lcm.num_skips == 6 and lcm.noise_shape == (4, 8, 8)
    condition = lcm.condition_for([0, 1])
    # LatentConsistencyModelPipeline's 8.5, embedded: no negative half.
    assert condition["guidance_scale"].tolist() == [8.5, 8.5]
    assert "negative_prompt_embeds" not in condition
    assert SearchConfig(nfe=4).for_model(lcm.default_sampler).sampler == "lcm"


def test_lcm_one_step_is_the_pipelines_one_step_sample(
    lcm: TunableModel, saved: dict[str, Path]
) -> None:
    ours, noise, condition = _ours(lcm, steps=1)
    theirs = _theirs(lcm, saved["lcm"], _vp_latents(lcm, noise), condition, steps=1)
    difference = _assert_same(ours, theirs)
    # The boundary condition is read and applied: x̂₀ alone is far off.
    sigma = lcm.discrete_sigmas[-1:].expand(2)
    net_only = lcm.denoise_fn.boundary
    lcm.denoise_fn.boundary = None
    try:
        x0 = lcm.denoise(noise * sigma[0], sigma, condition)
    finally:
        lcm.denoise_fn.boundary = net_only
    assert (x0 - theirs).abs().max().item() > 100 * max(difference, 1e-6)


def test_lcm_four_steps_equal_the_pipeline_with_the_same_step_noise(
    lcm: TunableModel, saved: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    draws = _with_skiptune_step_noise(monkeypatch, "diffusers.schedulers.scheduling_lcm", lcm)
    ours, noise, condition = _ours(lcm, steps=4)
    theirs = _theirs(lcm, saved["lcm"], _vp_latents(lcm, noise), condition, steps=4)
    assert draws == [0, 1, 2]            # no noise after the last step's x̂₀
    _assert_same(ours, theirs)
    # And the guidance scale reaches the net through its embedding.
    other, _, _ = _ours(load_model(saved["lcm"], device="cpu", conditioning={
        "embeddings": str(saved["embeddings"]), "guidance_scale": 3.0}), steps=4)
    assert (other - ours).abs().max() > 1e-3


def test_lcm_lora_guides_classifier_free_as_the_sd_pipeline_with_lcm_scheduler(
    saved: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = _load(saved, "lora")
    assert (plain.family, plain.default_sampler) == ("diffusers-lcm", "lcm")
    assert plain.condition_for([0])["guidance_scale"].tolist() == [1.0]   # the cards' default
    lora = _load(saved, "lora", guidance_scale=1.5)
    draws = _with_skiptune_step_noise(monkeypatch, "diffusers.schedulers.scheduling_lcm", lora)
    ours, noise, condition = _ours(lora, steps=3)
    assert "negative_prompt_embeds" in condition         # guided: two halves
    theirs = _theirs(lora, saved["lora"], _vp_latents(lora, noise), condition, steps=3)
    assert draws == [0, 1]
    _assert_same(ours, theirs)


def test_lcm_takes_at_most_its_original_steps_and_no_negative_prompt(
    lcm: TunableModel, saved: dict[str, Path]
) -> None:
    noise = initial_noise(1, lcm.noise_shape, seed=0)
    with pytest.raises(ConfigurationError, match="at most the 50 timesteps") as error:
        sample(lcm, noise, sampler="lcm", nfe=51, condition=lcm.condition_for([0]),
               step_noise=SeededStepNoise(1, lcm.noise_shape, seed=0))
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigurationError, match="leave negative_prompt out") as error:
        load_model(saved["lcm"], device="cpu", conditioning={
            "embeddings": str(saved["embeddings"]), "negative_prompt": "blurry"})
    assert "\n" not in str(error.value) and error.value.field == "negative_prompt"


def test_skips_act_on_an_lcm_and_rho_one_changes_nothing(lcm: TunableModel) -> None:
    untuned, _, _ = _ours(lcm, steps=2)
    again, _, _ = _ours(lcm, steps=2)
    assert torch.equal(untuned, again)
    tuned, _, _ = _ours(lcm, steps=2, schedule=TuningSchedule(rho_bottom=0.6))
    assert (tuned - untuned).abs().max() > 1e-3


# --- SD-Turbo, SDXL-Turbo ----------------------------------------------------------------------


def test_a_turbo_pipeline_samples_euler_ancestral_trailing_without_guidance(
    turbo: TunableModel,
) -> None:
    assert (turbo.family, turbo.default_sampler) == ("diffusers-turbo", "euler_ancestral_discrete")
    assert turbo.original_inference_steps is None and turbo.metadata["guidance_embedding"] is False
    condition = turbo.condition_for([0, 1])
    assert condition["guidance_scale"].tolist() == [0.0, 0.0]      # the cards' guidance_scale
    assert "negative_prompt_embeds" not in condition


def test_turbo_one_step_is_the_pipelines_one_step_sample(
    turbo: TunableModel, saved: dict[str, Path]
) -> None:
    ours, noise, condition = _ours(turbo, steps=1)
    # Trailing spacing: init_noise_sigma is σ_max, so the pipeline starts where skiptune does.
    _assert_same(ours, _theirs(turbo, saved["turbo"], noise, condition, steps=1))


def test_turbo_three_steps_equal_the_pipeline_with_the_same_step_noise(
    turbo: TunableModel, saved: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    module = "diffusers.schedulers.scheduling_euler_ancestral_discrete"
    draws = _with_skiptune_step_noise(monkeypatch, module, turbo)
    ours, noise, condition = _ours(turbo, steps=3)
    theirs = _theirs(turbo, saved["turbo"], noise, condition, steps=3)
    assert draws == [0, 1, 2]            # diffusers draws at the last step too, times σ_up = 0
    _assert_same(ours, theirs)


def test_sdxl_turbo_one_step_is_the_pipelines_one_step_sample(saved: dict[str, Path]) -> None:
    xl = _load(saved, "xl_turbo")
    assert (xl.family, xl.freeu_family) == ("diffusers-turbo", "sdxl")
    ours, noise, condition = _ours(xl, steps=1)
    _assert_same(ours, _theirs(xl, saved["xl_turbo"], noise, condition, steps=1))


def test_skiptune_sample_defaults_to_one_step_of_the_models_sampler(
    saved: dict[str, Path], tmp_path: Path
) -> None:
    written = write_samples(saved["turbo"], tmp_path / "turbo.png", num_samples=2,
                            conditioning={"embeddings": str(saved["embeddings"])})
    assert (written["sampler"], written["nfe"]) == ("euler_ancestral_discrete", 1)
    assert written["condition"]["guidance_scale"] == 0.0


# --- by hub id ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "family"), [("lcm", "diffusers-lcm"),
                                              ("turbo", "diffusers-turbo")])
def test_a_distilled_pipeline_by_hub_id_is_its_folder(
    saved: dict[str, Path], monkeypatch: pytest.MonkeyPatch, name: str, family: str
) -> None:
    import huggingface_hub

    cache = saved["root"] / "hf" / "hub"
    repo = cache / f"models--tiny-org--tiny-{name}"
    shutil.copytree(saved[name], repo / "snapshots" / REVISION)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    by_id = load_model(f"tiny-org/tiny-{name}", device="cpu",
                       conditioning={"embeddings": str(saved["embeddings"])})
    by_folder = _load(saved, name)
    assert (by_id.family, by_id.source) == (family, f"tiny-org/tiny-{name}")
    assert by_id.fingerprint == by_folder.fingerprint
    assert by_id.default_sampler == by_folder.default_sampler


# --- bad input: one line each -------------------------------------------------------------------


def _with_scheduler_config(saved: dict[str, Path], tmp_path: Path, name: str,
                           text: str) -> Path:
    folder = shutil.copytree(saved[name], tmp_path / name)
    (folder / "scheduler" / "scheduler_config.json").write_text(text)
    return folder


def _config(saved: dict[str, Path], name: str, **changes: Any) -> str:
    path = saved[name] / "scheduler" / "scheduler_config.json"
    return json.dumps({**json.loads(path.read_text()), **changes})


@pytest.mark.parametrize(("name", "changes", "needles"), [
    ("lcm", {"original_inference_steps": "fifty"},
     ("original_inference_steps 'fifty'", "whole number from 1 to its 1000")),
    ("lcm", {"original_inference_steps": 2000}, ("original_inference_steps 2000",)),
    ("lcm", {"timestep_scaling": -1}, ("timestep_scaling -1", "finite number > 0")),
    ("lcm", {"timestep_scaling": math.nan}, ("timestep_scaling nan",)),
    ("lcm", {"thresholding": True}, ("sets thresholding", "set it to false")),
    ("lcm", {"clip_sample": "yes"}, ("clip_sample 'yes'", "true or false")),
    ("turbo", {"beta_schedule": "cosine-ish"}, ("beta_schedule 'cosine-ish'",)),
    ("turbo", {"beta_start": -0.5}, ("beta_start is -0.5",)),
])
def test_a_damaged_scheduler_config_is_one_line(
    saved: dict[str, Path], tmp_path: Path, name: str, changes: dict, needles: tuple[str, ...]
) -> None:
    folder = _with_scheduler_config(saved, tmp_path, name, _config(saved, name, **changes))
    with pytest.raises(CheckpointError) as error:
        load_model(folder, device="cpu")
    text = str(error.value)
    assert "\n" not in text and all(needle in text for needle in needles), text


@pytest.mark.parametrize("name", ["lcm", "turbo"])
def test_a_scheduler_config_cut_short_is_one_line(
    saved: dict[str, Path], tmp_path: Path, name: str
) -> None:
    text = _config(saved, name)
    folder = _with_scheduler_config(saved, tmp_path, name, text[: len(text) // 2])
    with pytest.raises(CheckpointError, match=r"scheduler_config\.json: not JSON") as error:
        load_model(folder, device="cpu")
    assert "\n" not in str(error.value)


def test_clip_sample_clamps_x0_as_the_scheduler_does(
    saved: dict[str, Path], tmp_path: Path
) -> None:
    # A random net's x̂₀ leaves [-1, 1] by far at timestep 999: the clamp shows.
    folder = _with_scheduler_config(saved, tmp_path, "lcm", _config(
        saved, "lcm", clip_sample=True, clip_sample_range=0.5))
    clipped = load_model(folder, device="cpu",
                         conditioning={"embeddings": str(saved["embeddings"])})
    assert clipped.denoise_fn.boundary.clip_range == 0.5
    ours, noise, condition = _ours(clipped, steps=1)
    theirs = _theirs(clipped, folder, _vp_latents(clipped, noise), condition, steps=1)
    _assert_same(ours, theirs)
    # c_out·clamp(x̂₀) + c_skip·x_vp, c_skip = 0.0025 at timestep 999.
    assert theirs.abs().max() <= 0.52


def test_an_lcm_in_bfloat16_feeds_its_guidance_embedding_in_the_nets_dtype(
    saved: dict[str, Path],
) -> None:
    half = load_model(saved["lcm"], device="cpu", dtype="bfloat16", conditioning={
        "embeddings": str(saved["embeddings"]), "guidance_scale": 4.0})
    full = _load(saved, "lcm", guidance_scale=4.0)
    ours_half, _, _ = _ours(half, steps=2)
    ours_full, _, _ = _ours(full, steps=2)
    assert ours_half.dtype == torch.float32
    # bfloat16 keeps 8 bits of mantissa: a few percent of the samples' scale.
    assert (ours_half - ours_full).abs().max() < 0.05 * ours_full.abs().max()
