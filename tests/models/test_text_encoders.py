"""Text prompts through the pipeline's own CLIP encoder(s), against diffusers' encode_prompt.

The tiny encoders and tokenizers are built from a config and a vocabulary the tests write
(``tests/models/tiny_sd.py``): nothing is downloaded. skiptune and diffusers run the same
CLIP modules on the same token ids in float32 on the CPU, so the embeddings must be equal
bit for bit, when both encode the same batch (a GEMM over another batch size may round the
last bit differently, so each negative is compared with diffusers encoding it alone).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"   # before diffusers is imported: nothing may reach the Hub

from skiptune.errors import ConfigurationError
from skiptune.models import load_model
from skiptune.models._base import TunableModel
from skiptune.models._text_encoders import sequence_length

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

from tests.models.tiny_sd import (  # noqa: E402 (after the skips above)
    SDXL_UNET,
    TEXT_LENGTH,
    add_text_encoders,
    save_pipeline,
)

PROMPTS = ["a red cat", "dog", "cat and dog"]
NEGATIVE = "blurry dog"
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("SKIPTUNE_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return add_text_encoders(save_pipeline(tmp_path_factory.mktemp("sd")))


@pytest.fixture(scope="module")
def sdxl_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return add_text_encoders(save_pipeline(tmp_path_factory.mktemp("sdxl"), SDXL_UNET))


def prompts_file(folder: Path) -> str:
    path = folder / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    return str(path)


def with_prompts(folder: Path, tmp_path: Path, **options: Any) -> TunableModel:
    return load_model(folder, device="cpu",
                      conditioning={"prompts": prompts_file(tmp_path), **options})


def diffusers_pipeline(model: TunableModel, folder: Path) -> Any:
    """diffusers' own pipeline on the very modules skiptune loaded (and its own encoders)."""
    parts: dict[str, Any] = {
        "unet": model.net, "vae": model.decoder.vae,
        "scheduler": diffusers.DDPMScheduler.from_pretrained(folder / "scheduler"),
        "text_encoder": transformers.CLIPTextModel.from_pretrained(folder / "text_encoder"),
        "tokenizer": transformers.CLIPTokenizer.from_pretrained(folder / "tokenizer"),
    }
    if (folder / "text_encoder_2").is_dir():
        parts["text_encoder_2"] = transformers.CLIPTextModelWithProjection.from_pretrained(
            folder / "text_encoder_2")
        parts["tokenizer_2"] = transformers.CLIPTokenizer.from_pretrained(folder / "tokenizer_2")
        return diffusers.StableDiffusionXLPipeline(**parts)
    return diffusers.StableDiffusionPipeline(
        **parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def test_sd_embeddings_equal_the_pipelines_encode_prompt(sd_folder: Path, tmp_path: Path) -> None:
    model = with_prompts(sd_folder, tmp_path, negative_prompt=NEGATIVE, guidance_scale=3.0)
    pipe = diffusers_pipeline(model, sd_folder)
    with torch.no_grad():
        prompt, _ = pipe.encode_prompt(PROMPTS, "cpu", 1, True, negative_prompt=[NEGATIVE] * 3)
        _, negative = pipe.encode_prompt(["dog"], "cpu", 1, True, negative_prompt=[NEGATIVE])
    embeddings = model.conditioner.embeddings
    assert prompt.shape == (3, 16, 12)
    assert torch.equal(embeddings.prompt, prompt)
    assert torch.equal(embeddings.negative, negative)
    assert embeddings.pooled is None
    condition = model.condition_for([4, 2])          # sample j takes prompt seed mod 3
    assert torch.equal(condition["prompt_embeds"], prompt[[1, 2]])


def test_sdxl_embeddings_pooled_and_time_ids_equal_the_pipelines(
    sdxl_folder: Path, tmp_path: Path
) -> None:
    model = with_prompts(sdxl_folder, tmp_path, negative_prompt=NEGATIVE)
    pipe = diffusers_pipeline(model, sdxl_folder)
    with torch.no_grad():
        prompt, _, pooled, _ = pipe.encode_prompt(
            PROMPTS, device="cpu", negative_prompt=[NEGATIVE] * 3)
        _, negative, _, negative_pooled = pipe.encode_prompt(
            ["dog"], device="cpu", negative_prompt=[NEGATIVE])
        _, zeros, _, zeros_pooled = pipe.encode_prompt(["dog"], device="cpu")
    embeddings = model.conditioner.embeddings
    assert torch.equal(embeddings.prompt, prompt)
    assert torch.equal(embeddings.pooled, pooled)
    assert torch.equal(embeddings.negative, negative)
    assert torch.equal(embeddings.negative_pooled, negative_pooled)
    # No negative prompt: SDXL guides against zeros (force_zeros_for_empty_prompt), as ours.
    plain = with_prompts(sdxl_folder, tmp_path).conditioner.embeddings
    assert torch.equal(plain.negative, zeros) and torch.equal(plain.negative_pooled, zeros_pooled)

    # The U-Net gets the pipeline's add_time_ids: (original size, crop (0, 0), target size).
    seen: dict[str, Any] = {}

    def record(_module: Any, _args: tuple, kwargs: dict) -> None:
        seen.update(kwargs["added_cond_kwargs"])

    handle = model.net.register_forward_pre_hook(record, with_kwargs=True)
    try:
        x = torch.randn(2, *model.noise_shape, generator=torch.Generator().manual_seed(0))
        model.denoise(x, torch.tensor([1.0, 3.0]), model.condition_for([0, 1]))
    finally:
        handle.remove()
    size = (model.image_shape[1], model.image_shape[2])
    expected = pipe._get_add_time_ids(size, (0, 0), size, dtype=torch.float32,
                                      text_encoder_projection_dim=int(pooled.shape[-1]))
    assert torch.equal(seen["time_ids"], expected.repeat(4, 1))   # doubled batch (guidance)
    assert torch.equal(seen["text_embeds"],
                       torch.cat([negative_pooled.expand(2, -1), pooled[:2]]))


def test_a_second_load_reads_the_cache_without_the_encoder(
    sd_folder: Path, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = with_prompts(sd_folder, tmp_path, guidance_scale=2.0).conditioner.embeddings
    entries = sorted((cache / "prompt_embeddings").glob("*.safetensors"))
    assert len(entries) == 2                          # the prompts, and "" for guidance
    # transformers made unimportable: the tokenizer and encoder cannot run a second time.
    monkeypatch.setitem(sys.modules, "transformers", None)
    second = with_prompts(sd_folder, tmp_path, guidance_scale=2.0).conditioner.embeddings
    assert torch.equal(first.prompt, second.prompt)
    assert torch.equal(first.negative, second.negative)
    # Other texts are another entry, which needs the encoder again.
    with pytest.raises(ConfigurationError, match=r"pip install '\.\[sd\]' in a clone"):
        with_prompts(sd_folder, tmp_path, guidance_scale=2.0, negative_prompt="dog")


def test_a_damaged_or_foreign_cache_entry_is_encoded_again(
    sd_folder: Path, tmp_path: Path, cache: Path
) -> None:
    first = with_prompts(sd_folder, tmp_path, guidance_scale=1.0).conditioner.embeddings
    [entry] = (cache / "prompt_embeddings").glob("*.safetensors")
    entry.write_bytes(entry.read_bytes()[:-7])          # truncated
    again = with_prompts(sd_folder, tmp_path, guidance_scale=1.0).conditioner.embeddings
    assert torch.equal(first.prompt, again.prompt)
    from safetensors.torch import save_file

    # Right shapes under the wrong key (another entry's tensors copied over): not used.
    save_file({"prompt_embeds": torch.zeros_like(first.prompt)}, str(entry),
              metadata={"key": "another"})
    assert torch.equal(
        with_prompts(sd_folder, tmp_path, guidance_scale=1.0).conditioner.embeddings.prompt,
        first.prompt)


def test_other_encoder_weights_are_another_cache_entry(
    sd_folder: Path, tmp_path: Path, cache: Path
) -> None:
    import shutil

    first = with_prompts(sd_folder, tmp_path, guidance_scale=1.0).conditioner.embeddings
    other = shutil.copytree(sd_folder, tmp_path / "other")
    encoder = transformers.CLIPTextModel.from_pretrained(other / "text_encoder")
    with torch.no_grad():
        next(encoder.parameters()).add_(0.5)
    encoder.save_pretrained(other / "text_encoder")
    second = with_prompts(other, tmp_path, guidance_scale=1.0).conditioner.embeddings
    assert len(list((cache / "prompt_embeddings").glob("*.safetensors"))) == 2
    assert not torch.allclose(first.prompt, second.prompt)


def test_a_pipeline_without_its_text_encoder_is_one_line(tmp_path: Path) -> None:
    folder = save_pipeline(tmp_path / "sd", vae=False)
    with pytest.raises(ConfigurationError) as error:
        with_prompts(folder, tmp_path)
    text = str(error.value)
    assert "\n" not in text and "text_encoder/" in text and "precomputed embeddings" in text


@pytest.mark.parametrize(("kind", "limit"), [("sd", None), ("sdxl", None), ("sd", 10_000)])
def test_a_tokenizer_without_a_usable_length_pads_to_the_encoders_positions(
    kind: str, limit: int | None, sd_folder: Path, sdxl_folder: Path, tmp_path: Path
) -> None:
    """Issue 38, class 8: a tokenizer stating no model_max_length (transformers reports
    ~1e30, an OverflowError in the tokenizer) or one longer than its encoder's positions
    pads to the encoder's max_position_embeddings: what a tokenizer stating it gives."""
    folder = add_text_encoders(
        save_pipeline(tmp_path / kind, *([SDXL_UNET] if kind == "sdxl" else [])),
        model_max_length=limit,
    )
    stated = {"sd": sd_folder, "sdxl": sdxl_folder}[kind]
    got = with_prompts(folder, tmp_path, guidance_scale=1.0).conditioner.embeddings
    want = with_prompts(stated, tmp_path, guidance_scale=1.0).conditioner.embeddings
    assert got.prompt.shape[1] == TEXT_LENGTH
    assert torch.equal(got.prompt, want.prompt)
    if kind == "sdxl":
        assert torch.equal(got.pooled, want.pooled)


def test_the_prompt_length_is_the_tokenizers_else_the_encoders() -> None:
    absent = int(1e30)                     # transformers' stand-in for "not stated"
    assert sequence_length(16, 77, where="x") == 16
    assert sequence_length(77, None, where="x") == 77
    for tokenizer_limit in (absent, None, 0, -1, 78, "77"):
        assert sequence_length(tokenizer_limit, 77, where="x") == 77
    for tokenizer_limit, positions in ((absent, None), (None, None), (0, 0), (absent, absent)):
        with pytest.raises(ConfigurationError) as error:
            sequence_length(tokenizer_limit, positions, where="tokenizer/ of 'p'")
        text = str(error.value)
        assert "\n" not in text and "tokenizer/ of 'p'" in text
        assert '"model_max_length": 77' in text
