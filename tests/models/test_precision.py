"""load_model(..., dtype=): the net computes in float16/bfloat16/float32, ρ = 1 stays exact."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"   # before diffusers is imported: nothing may reach the Hub

from skiptune.errors import ConfigurationError
from skiptune.models import load_model
from skiptune.models._base import TunableModel
from skiptune.models._precision import check_dtype, default_dtype
from skiptune.schedule import TuningSchedule
from skiptune.skips import skip_tuning
from tests.conftest import DEMO_CHECKPOINT

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("safetensors")

from tests.models.tiny_sd import save_embeddings, save_pipeline  # noqa: E402 (after the skips)


def _runs_on_cpu(dtype: str) -> bool:
    try:
        check_dtype(dtype, torch.device("cpu"))
    except ConfigurationError:
        return False
    return True


DTYPES = [
    "float32",
    "bfloat16",
    pytest.param("float16", marks=pytest.mark.skipif(
        not _runs_on_cpu("float16"), reason="this CPU build of torch runs no float16 convolution")),
]


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sd")
    save_embeddings(root / "prompts.safetensors")
    return save_pipeline(root / "pipeline")


def sd_model(folder: Path, dtype: str | None) -> TunableModel:
    embeddings = folder.parent / "prompts.safetensors"
    return load_model(folder, device="cpu", dtype=dtype,
                      conditioning={"embeddings": str(embeddings), "guidance_scale": 3.0})


def noisy(model: TunableModel) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    sigma = torch.tensor([0.4, 2.0, 8.0])
    x = torch.randn(3, *model.noise_shape, generator=generator) * (1 + sigma.view(-1, 1, 1, 1))
    return x, sigma


@pytest.mark.parametrize("dtype", DTYPES)
def test_identity_schedule_is_the_plain_sd_model_in_each_dtype(sd_folder: Path, dtype: str) -> None:
    model = sd_model(sd_folder, dtype)
    assert next(model.net.parameters()).dtype == getattr(torch, dtype) == model.dtype
    x, sigma = noisy(model)
    condition = model.condition_for([0, 1, 2])
    plain = model.denoise(x, sigma, condition)
    with skip_tuning(model, TuningSchedule(rho_bottom=1.0, rho_top=1.0)):
        tuned = model.denoise(x, sigma, condition)
    assert plain.dtype == torch.float32          # the sampler's dtype, whatever the net's
    assert torch.equal(plain, tuned)
    with skip_tuning(model, TuningSchedule(rho_bottom=0.3)):
        assert not torch.equal(model.denoise(x, sigma, condition), plain)


@pytest.mark.parametrize("dtype", DTYPES)
def test_identity_schedule_is_the_plain_demo_model_in_each_dtype(dtype: str) -> None:
    model = load_model(DEMO_CHECKPOINT, device="cpu", dtype=dtype)
    assert next(model.net.parameters()).dtype == getattr(torch, dtype)
    generator = torch.Generator().manual_seed(2)
    sigma = torch.tensor([0.1, 1.0, 10.0])
    x = torch.randn(3, *model.image_shape, generator=generator) * (1 + sigma.view(-1, 1, 1, 1))
    plain = model.denoise(x, sigma)
    with skip_tuning(model, TuningSchedule.identity()):
        assert torch.equal(model.denoise(x, sigma), plain)
    assert plain.dtype == torch.float32 and torch.isfinite(plain).all()
    reference = load_model(DEMO_CHECKPOINT, device="cpu").denoise(x, sigma)
    # Half precision is close to float32, not equal: it is another objective.
    torch.testing.assert_close(plain, reference, atol=0.1, rtol=0.0)


def test_the_vae_decodes_in_float32_where_its_config_forces_upcast(sd_folder: Path) -> None:
    model = sd_model(sd_folder, "bfloat16")
    vae = model.decoder.vae
    assert vae.config.force_upcast and next(vae.parameters()).dtype == torch.float32
    latents = torch.randn(2, *model.noise_shape, generator=torch.Generator().manual_seed(3))
    reference = sd_model(sd_folder, "float32")
    assert torch.equal(model.to_images(latents), reference.to_images(latents))
    # The weights' fingerprint is of the weights as stored, whatever they compute in.
    assert model.fingerprint == reference.fingerprint


def test_a_vae_without_force_upcast_runs_in_the_models_dtype(tmp_path: Path) -> None:
    folder = save_pipeline(tmp_path / "pipeline")
    config = json.loads((folder / "vae" / "config.json").read_text())
    (folder / "vae" / "config.json").write_text(json.dumps({**config, "force_upcast": False}))
    model = load_model(folder, device="cpu", dtype="bfloat16")
    assert next(model.decoder.vae.parameters()).dtype == torch.bfloat16
    latents = torch.randn(2, *model.noise_shape, generator=torch.Generator().manual_seed(3))
    images = model.to_images(latents)
    assert images.dtype == torch.float32 and images.shape == (2, *model.image_shape)


def test_defaults_half_for_sd_on_cuda_only(sd_folder: Path) -> None:
    sd, demo = sd_model(sd_folder, None), load_model(DEMO_CHECKPOINT, device="cpu")
    assert sd.dtype == torch.float32 and demo.dtype == torch.float32   # on the CPU
    cuda = torch.device("cuda")                  # a device object only: nothing runs there
    assert default_dtype(sd, cuda) == torch.float16
    assert default_dtype(demo, cuda) == torch.float32


def test_an_unknown_dtype_is_one_line_before_loading() -> None:
    with pytest.raises(ConfigurationError) as error:
        load_model("/nonexistent/model.pt", device="cpu", dtype="float8")
    text = str(error.value)
    assert "\n" not in text and "float8" in text and "float16, bfloat16, float32" in text


def test_a_dtype_the_device_cannot_run_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a CPU runs no float16 convolution, --dtype float16 says so and what to pass."""
    def conv2d(*_args: object, **_kwargs: object) -> torch.Tensor:
        raise RuntimeError('"slow_conv2d_cpu" not implemented for \'Half\'')

    monkeypatch.setattr(torch.nn.functional, "conv2d", conv2d)
    with pytest.raises(ConfigurationError) as error:
        load_model(DEMO_CHECKPOINT, device="cpu", dtype="float16")
    text = str(error.value)
    assert "\n" not in text and "float16 does not run on cpu" in text
    assert "pass dtype float32 or bfloat16" in text
