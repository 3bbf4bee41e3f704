"""The Stable-Diffusion adapter, on tiny random UNet2DConditionModel/AutoencoderKL folders."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"   # before diffusers is imported: nothing may reach the Hub

from skiptune._factors import fourier_filter, low_frequency_mask
from skiptune.errors import CheckpointError, ConfigurationError
from skiptune.freeu import FreeU
from skiptune.models import load_model
from skiptune.models._base import TunableModel
from skiptune.schedule import TuningSchedule
from skiptune.skips import skip_tuning

diffusers = pytest.importorskip("diffusers")
safetensors_torch = pytest.importorskip("safetensors.torch")

from tests.models.tiny_sd import (  # noqa: E402 (after the skips above)
    CROSS,
    POOLED,
    SD_UNET,
    SDXL_UNET,
    save_embeddings,
    save_pipeline,
)


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_pipeline(tmp_path_factory.mktemp("sd"))


@pytest.fixture(scope="module")
def embeddings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_embeddings(tmp_path_factory.mktemp("emb") / "prompts.safetensors")


@pytest.fixture(scope="module")
def sd_model(sd_folder: Path, embeddings: Path) -> TunableModel:
    return load_model(sd_folder, device="cpu",
                      conditioning={"embeddings": str(embeddings), "guidance_scale": 4.0})


def noisy_latents(model: TunableModel, count: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    sigma = torch.tensor([0.3, 2.0, 9.0, 0.8][:count])
    x = torch.randn(count, *model.noise_shape, generator=generator) * (1 + sigma.view(-1, 1, 1, 1))
    return x, sigma


# --- loading --------------------------------------------------------------------------------


def test_pipeline_folder_loads_with_keyword_skip_sites(sd_model: TunableModel) -> None:
    sites = sd_model.skip_sites
    # conv_in + 3 levels × 1 layer + 2 downsamplers: 6 skips, all passed by keyword.
    assert len(sites) == 6
    assert {s.input_name for s in sites} == {"res_hidden_states_tuple"}
    assert {s.input_index for s in sites} == {None}
    assert sites[0].name == "up_blocks.0.resnets.0" and sites[-1].name == "up_blocks.2.resnets.1"
    assert [s.name for s in sd_model.freeu_stages] == ["up_blocks.0", "up_blocks.1"]
    assert sd_model.family == "diffusers-sd"
    assert sd_model.noise_shape == (4, 8, 8)
    assert sd_model.image_shape == (3, 16, 16)
    assert sd_model.freeu_family == "sd1"


def test_keyword_sites_are_what_the_net_consumes(sd_model: TunableModel) -> None:
    """Zeroing every skip through the keyword sites changes the output; ρ = 1 does not."""
    x, sigma = noisy_latents(sd_model)
    condition = sd_model.condition_for([0, 1, 2])
    plain = sd_model.denoise(x, sigma, condition)
    with skip_tuning(sd_model, TuningSchedule(rho_bottom=1.0, rho_top=1.0), freeu=FreeU()):
        assert torch.equal(sd_model.denoise(x, sigma, condition), plain)
    with skip_tuning(sd_model, torch.zeros(sd_model.num_skips)):
        assert (sd_model.denoise(x, sigma, condition) - plain).abs().max() > 1e-3
    assert torch.equal(sd_model.denoise(x, sigma, condition), plain)   # hooks removed


def test_bare_unet_folder_samples_latents(sd_folder: Path, embeddings: Path) -> None:
    model = load_model(sd_folder / "unet", device="cpu",
                       conditioning={"embeddings": str(embeddings), "guidance_scale": 1.0})
    assert model.decoder is None and model.image_shape == (4, 8, 8)
    x, sigma = noisy_latents(model, 2)
    assert torch.isfinite(model.denoise(x, sigma, model.condition_for([0, 1]))).all()


# --- FreeU against diffusers' own -----------------------------------------------------------


def freeu_against_diffusers(
    tmp_path: Path, config: dict[str, Any], values: tuple[float, ...]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(plain, skiptune's FreeU, diffusers' enable_freeu) outputs of one tiny U-Net."""
    folder = save_pipeline(tmp_path, config, vae=False)
    model = load_model(folder, device="cpu")
    net = model.net
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 8, 8, generator=generator)
    t = torch.tensor([50.0, 600.0])
    embeds = torch.randn(2, 5, net.config.cross_attention_dim, generator=generator)
    added = None
    if "addition_embed_type" in config:
        added = {"text_embeds": torch.randn(2, POOLED, generator=generator),
                 "time_ids": torch.tensor([[16.0, 16, 0, 0, 16, 16]] * 2)}
    b1, b2, s1, s2 = values

    def run() -> torch.Tensor:
        with torch.no_grad():
            return net(x, t, encoder_hidden_states=embeds, added_cond_kwargs=added,
                       return_dict=False)[0]

    plain = run()
    with skip_tuning(model, TuningSchedule.identity(), freeu=FreeU(b1=b1, b2=b2, s1=s1, s2=s2)):
        ours = run()
    net.enable_freeu(s1=s1, s2=s2, b1=b1, b2=b2)
    try:
        reference = run()
    finally:
        net.disable_freeu()
    return plain, ours, reference


@pytest.mark.parametrize("config", [SD_UNET, SDXL_UNET], ids=["sd", "sdxl"])
@pytest.mark.parametrize(
    "values", [(1.5, 1.6, 0.9, 0.2), (1.3, 1.4, 0.9, 0.2), (0.7, 1.2, 1.3, 0.5)]
)
def test_freeu_equals_diffusers_enable_freeu(
    tmp_path: Path, config: dict[str, Any], values: tuple[float, ...]
) -> None:
    plain, ours, reference = freeu_against_diffusers(tmp_path, config, values)
    difference = (ours - reference).abs().max().item()
    print(f"max |skiptune FreeU − diffusers enable_freeu| = {difference:.3g}")
    assert difference <= 1e-6
    assert (ours - plain).abs().max().item() > 1e-4


def test_low_frequency_mask_is_the_centre_block() -> None:
    mask = low_frequency_mask(8, 6, 0.2)
    assert mask.shape == (1, 1, 8, 6)
    assert torch.equal(mask[0, 0, 3:5, 2:4], torch.full((2, 2), 0.2))
    assert mask.sum().item() == pytest.approx(8 * 6 - 4 + 4 * 0.2)
    per_sample = low_frequency_mask(4, 4, torch.tensor([0.5, 2.0]), threshold=2)
    assert per_sample.shape == (2, 1, 4, 4)
    assert torch.equal(per_sample[:, 0], torch.stack([torch.full((4, 4), 0.5),
                                                      torch.full((4, 4), 2.0)]))


def test_fourier_filter_scales_only_the_lowest_frequencies() -> None:
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(fourier_filter(x, 1.0), x, atol=1e-6)
    filtered = fourier_filter(x, 0.5)
    freq = torch.fft.fftshift(torch.fft.fftn(filtered, dim=(-2, -1)), dim=(-2, -1))
    original = torch.fft.fftshift(torch.fft.fftn(x, dim=(-2, -1)), dim=(-2, -1))
    # The mean (DC term, at the centre after fftshift) is scaled exactly.
    assert torch.allclose(freq[..., 4, 4], 0.5 * original[..., 4, 4], atol=1e-4)
    # The window [3:5]² is not symmetric about the centre, so taking the real part mixes it
    # with its mirror [4:6]²; every frequency outside both is untouched.
    outside = torch.ones(8, 8, dtype=torch.bool)
    outside[3:6, 3:6] = False
    assert torch.allclose(freq[..., outside], original[..., outside], atol=1e-4)
    assert not torch.allclose(freq[..., 3, 3], original[..., 3, 3], atol=1e-2)
    per_sample = fourier_filter(x, torch.tensor([1.0, 0.0]))
    assert torch.allclose(per_sample[0], x[0], atol=1e-6)
    assert torch.allclose(per_sample[1], fourier_filter(x, 0.0)[1], atol=1e-6)


# --- conditioning and guidance --------------------------------------------------------------


def test_sample_j_takes_prompt_seed_mod_p(sd_model: TunableModel, embeddings: Path) -> None:
    stored = safetensors_torch.load_file(str(embeddings))["prompt_embeds"]
    condition = sd_model.condition_for([7, 3, 5])
    assert torch.equal(condition["prompt_embeds"], stored[[1, 0, 2]])
    assert condition["guidance_scale"].tolist() == [4.0, 4.0, 4.0]
    assert condition["negative_prompt_embeds"].shape == (3, 5, CROSS)


def test_guidance_combines_the_two_halves_as_diffusers_does(
    sd_folder: Path, tmp_path: Path
) -> None:
    file = save_embeddings(tmp_path / "e.safetensors", count=2)
    stored = safetensors_torch.load_file(str(file))
    model = load_model(sd_folder, device="cpu",
                       conditioning={"embeddings": str(file), "guidance_scale": 3.0})
    x, sigma = noisy_latents(model, 2)
    guided = model.denoise(x, sigma, model.condition_for([0, 1]))
    one = torch.ones(2)
    cond = model.denoise(
        x, sigma, {"prompt_embeds": stored["prompt_embeds"], "guidance_scale": one}
    )
    uncond = model.denoise(x, sigma, {
        "prompt_embeds": stored["negative_prompt_embeds"].expand(2, -1, -1),
        "guidance_scale": one,
    })
    # D is affine in the prediction at fixed (x, σ): guiding ε equals guiding D.
    assert torch.allclose(guided, uncond + 3.0 * (cond - uncond), atol=1e-4)


def test_per_sample_factors_cover_both_halves_of_the_guided_batch(sd_model: TunableModel) -> None:
    x, sigma = noisy_latents(sd_model, 2)
    condition = sd_model.condition_for([0, 1])
    schedules = [TuningSchedule(rho_bottom=0.5, freeu=FreeU(b1=1.2, s1=0.5)), TuningSchedule(0.9)]
    with skip_tuning(sd_model, schedules):
        together = sd_model.denoise(x, sigma, condition)
    for j, schedule in enumerate(schedules):
        single = {k: v[j : j + 1] for k, v in condition.items()}
        with skip_tuning(sd_model, schedule):
            alone = sd_model.denoise(x[j : j + 1], sigma[j : j + 1], single)
        assert torch.allclose(together[j : j + 1], alone, atol=1e-5)


def test_vae_decodes_latents_into_images(sd_model: TunableModel) -> None:
    latents = torch.randn(3, *sd_model.noise_shape, generator=torch.Generator().manual_seed(0))
    images = sd_model.to_images(latents)
    assert images.shape == (3, *sd_model.image_shape)
    assert images.min() >= -1 and images.max() <= 1
    vae = sd_model.decoder.vae
    with torch.no_grad():
        expected = vae.decode(latents / vae.config.scaling_factor).sample.clamp(-1, 1)
    assert torch.allclose(images, expected, atol=1e-6)


def test_v_prediction_and_sdxl_load_and_denoise(tmp_path: Path) -> None:
    folder = save_pipeline(tmp_path / "xl", SDXL_UNET, prediction_type="v_prediction")
    file = save_embeddings(tmp_path / "xl.safetensors", width=16, pooled=POOLED, negative=False)
    model = load_model(folder, device="cpu", conditioning={"embeddings": str(file)})
    assert model.freeu_family == "sdxl"
    assert model.metadata["prediction_type"] == "v_prediction"
    condition = model.condition_for([0, 1])
    # SDXL without a negative prompt guides against zero embeddings (force_zeros_for_empty_prompt).
    assert condition["negative_prompt_embeds"].abs().max() == 0
    assert condition["guidance_scale"].tolist() == [5.0, 5.0]
    x, sigma = noisy_latents(model, 2)
    assert torch.isfinite(model.denoise(x, sigma, condition)).all()


# --- bad input: one line each ---------------------------------------------------------------


def one_line(error: pytest.ExceptionInfo[Exception], *needles: str) -> None:
    text = str(error.value)
    assert "\n" not in text
    for needle in needles:
        assert needle in text, text


def test_pipeline_folder_without_unet(tmp_path: Path) -> None:
    folder = save_pipeline(tmp_path, vae=False)
    import shutil

    shutil.rmtree(folder / "unet")
    with pytest.raises(CheckpointError) as error:
        load_model(folder, device="cpu")
    one_line(error, "has no unet/", "save_pretrained")


def test_empty_prompts_file(sd_folder: Path, tmp_path: Path) -> None:
    (tmp_path / "prompts.txt").write_text("\n   \n")
    with pytest.raises(ConfigurationError) as error:
        load_model(sd_folder, device="cpu", conditioning={"prompts": str(tmp_path / "prompts.txt")})
    one_line(error, "holds no prompts", "one prompt per line")


def test_embeddings_of_the_wrong_width(sd_folder: Path, tmp_path: Path) -> None:
    file = save_embeddings(tmp_path / "e.safetensors", width=CROSS + 4)
    with pytest.raises(ConfigurationError) as error:
        load_model(sd_folder, device="cpu", conditioning={"embeddings": str(file)})
    one_line(error, f"is {CROSS + 4} wide", f"takes {CROSS}-wide")


def test_negative_prompt_with_guidance_below_one(sd_folder: Path, embeddings: Path) -> None:
    with pytest.raises(ConfigurationError) as error:
        load_model(sd_folder, device="cpu", conditioning={
            "embeddings": str(embeddings), "negative_prompt": "blurry", "guidance_scale": 0.5})
    one_line(error, "negative prompt acts only with classifier-free guidance", "> 1")


def test_sdxl_without_pooled_embeddings(tmp_path: Path) -> None:
    folder = save_pipeline(tmp_path / "xl", SDXL_UNET, vae=False)
    file = save_embeddings(tmp_path / "e.safetensors", width=16)
    with pytest.raises(ConfigurationError) as error:
        load_model(folder, device="cpu", conditioning={"embeddings": str(file)})
    one_line(error, "SDXL U-Net needs pooled", "pooled_prompt_embeds")


def test_denoising_without_a_condition_says_how(sd_model: TunableModel) -> None:
    x, sigma = noisy_latents(sd_model, 1)
    with pytest.raises(ConfigurationError) as error:
        sd_model.denoise(x, sigma)
    one_line(error, "condition=model.condition_for(seeds)")


def test_no_prompts_at_all_says_which_option(sd_folder: Path) -> None:
    model = load_model(sd_folder, device="cpu")
    with pytest.raises(ConfigurationError) as error:
        model.condition_for([0])
    one_line(error, "pass prompts FILE", "or embeddings FILE")
    assert error.value.fields == ("prompts", "embeddings")     # the CLI says --prompts


def test_text_prompts_without_transformers_name_the_extra(
    sd_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whether or not this machine has transformers: None in sys.modules makes it unimportable.
    monkeypatch.setitem(sys.modules, "transformers", None)
    (tmp_path / "p.txt").write_text("a cat\n")
    with pytest.raises(ConfigurationError) as error:
        load_model(sd_folder, device="cpu", conditioning={"prompts": str(tmp_path / "p.txt")})
    one_line(error, "pip install '.[sd]' in a clone of skiptune")


def test_denoiser_feeds_the_net_as_diffusers_pipelines_do(sd_folder: Path, tmp_path: Path) -> None:
    """At the table's σ_t the net sees x/√(σ² + 1) at timestep t with cat([negative, prompt])
    and D = x − σ·(ε_u + g·(ε_c − ε_u)) (ε-prediction, Karras et al. 2022 §C.3)."""
    file = save_embeddings(tmp_path / "e.safetensors", count=2)
    stored = safetensors_torch.load_file(str(file))
    model = load_model(sd_folder, device="cpu",
                       conditioning={"embeddings": str(file), "guidance_scale": 6.0})
    steps = torch.tensor([10, 700])
    sigma = model.discrete_sigmas[steps]
    x = torch.randn(2, *model.noise_shape, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        x_in = torch.cat([x, x]) / (sigma.repeat(2).view(-1, 1, 1, 1) ** 2 + 1).sqrt()
        embeds = torch.cat([stored["negative_prompt_embeds"].expand(2, -1, -1),
                            stored["prompt_embeds"]])
        eps = model.net(x_in, steps.repeat(2), encoder_hidden_states=embeds).sample
    uncond, cond = eps.chunk(2)
    expected = x - sigma.view(-1, 1, 1, 1) * (uncond + 6.0 * (cond - uncond))
    got = model.denoise(x, sigma, model.condition_for([0, 1]))
    assert torch.allclose(got, expected, atol=1e-5)


def _doc_hooks_snippet() -> str:
    """The plain-diffusers hooks of docs/stable_diffusion.md, as written: its imports, then
    everything from reading the export's factors up to the pipeline call."""
    import re

    page = Path(__file__).resolve().parents[2] / "docs" / "stable_diffusion.md"
    text = page.read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "scale_skips" in b)
    return block[:block.index("best = json.load")] + block[block.index("rho = best"):
                                                          block.index("image = pipe(")]


@pytest.mark.parametrize("window", [False, True], ids=["no-window", "sigma-window"])
def test_doc_hooks_sample_an_export_like_skiptune(
    sd_folder: Path, embeddings: Path, window: bool
) -> None:
    """The doc's plain-diffusers hooks (no skiptune at sampling time), given an export's
    rho_factors and σ window, must sample what skiptune samples under that schedule."""
    from types import SimpleNamespace

    from skiptune.sampling import initial_noise, sample, sigma_grid

    def loaded() -> TunableModel:
        return load_model(sd_folder, device="cpu",
                          conditioning={"embeddings": str(embeddings), "guidance_scale": 4.0})

    model = loaded()
    grid = sigma_grid(model, sampler="euler", nfe=6)          # Euler calls at grid[0..5]
    bounds = {}
    if window:      # inside: the calls at grid[2] and grid[3], edges far from any call's σ
        bounds = {"sigma_lo": float((grid[3] * grid[4]).sqrt()),
                  "sigma_hi": float((grid[1] * grid[2]).sqrt())}
    schedule = TuningSchedule(rho_bottom=0.4, rho_top=0.9, shape="cosine", **bounds)
    factors = schedule.factors(model.num_skips)
    best = {"schedule": schedule.to_dict(),
            "rho_factors": {s.name: f for s, f in zip(model.skip_sites, factors, strict=True)}}
    noise = initial_noise(2, model.noise_shape, seed=0)

    def images(of: TunableModel) -> torch.Tensor:
        return sample(of, noise, sampler="euler", nfe=6, condition=of.condition_for([0, 1]))

    with skip_tuning(model, schedule):
        ours = images(model)
    plain = images(model)
    theirs_model = loaded()
    pipe = SimpleNamespace(
        unet=theirs_model.net,
        scheduler=diffusers.DDPMScheduler.from_pretrained(sd_folder, subfolder="scheduler"),
    )
    exec(_doc_hooks_snippet(), {"best": best, "pipe": pipe})
    assert torch.equal(images(theirs_model), ours)
    assert not torch.equal(ours, plain)
    if window:                                   # the window changed what was sampled
        with skip_tuning(model, TuningSchedule(rho_bottom=0.4, rho_top=0.9, shape="cosine")):
            assert not torch.equal(ours, images(model))
