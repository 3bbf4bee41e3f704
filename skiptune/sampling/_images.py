"""Sampling images to a file: a model under a schedule, written as a PNG grid or ``.npz``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skiptune._checks import is_whole
from skiptune._files import PNG_SOFTWARE, check_output_path, write_atomically
from skiptune.errors import ConfigurationError
from skiptune.exported import ExportedSchedule, load_exported
from skiptune.models import TunableModel, load_model, not_images_reason
from skiptune.sampling._run import sample
from skiptune.sampling.noise import SeededStepNoise, initial_noise
from skiptune.sampling.solvers import DEFAULT_SAMPLER
from skiptune.schedule import TuningSchedule
from skiptune.skips import skip_tuning

__all__ = [
    "DEFAULT_SAMPLE_NFE",
    "IMAGE_SUFFIXES",
    "MAX_WRITTEN_SAMPLES",
    "MIN_GRID_WIDTH",
    "grid_scale",
    "sample_images",
    "save_images",
    "write_samples",
]

IMAGE_SUFFIXES = (".png", ".npz")
MIN_GRID_WIDTH = 512     # px: a PNG grid narrower than this is enlarged (nearest neighbour)
DEFAULT_SAMPLE_NFE = 9   # the paper's headline budget, when neither --nfe nor an export says
MAX_WRITTEN_SAMPLES = 10_000
"""The most images one file of :func:`write_samples` holds: they are held in memory at once
(10,000 images of 512² are 7.9 GB as uint8), and a grid of them is 100 × 100."""


@torch.no_grad()
def sample_images(
    model: TunableModel,
    *,
    schedule: TuningSchedule,
    nfe: int,                            # denoiser calls per image
    sampler: str = "heun",
    num_samples: int = 64,
    seed: int = 0,                       # sample j uses noise seed seed + j
    batch_size: int = 64,
    schedule_exponent: float = 7.0,      # Karras σ-grid exponent (not a skip factor)
) -> torch.Tensor:
    """Images [num_samples, C, H, W] in [-1, 1] sampled under ``schedule`` on the model's device.

    Sample j starts from noise seed ``seed + j`` and, for a conditional model, the condition
    that seed draws (``model.condition_for``). A schedule with a step grid samples on it.
    """
    if num_samples < 1 or batch_size < 1:
        raise ConfigurationError(
            f"num_samples and batch_size must be ≥ 1, got {num_samples} and {batch_size}"
        )
    batches = []
    with skip_tuning(model, schedule):
        for start in range(0, num_samples, batch_size):
            count = min(batch_size, num_samples - start)
            noise = initial_noise(count, model.noise_shape, seed=seed, start=start)
            condition = model.condition_for(range(seed + start, seed + start + count))
            images = sample(model, noise, sampler=sampler, nfe=nfe,
                            schedule_exponent=schedule_exponent, condition=condition,
                            steps=schedule.steps,
                            step_noise=SeededStepNoise(count, model.noise_shape, seed=seed,
                                                       start=start))
            batches.append(model.to_images(images).clamp(-1, 1).cpu())
    return torch.cat(batches)


def grid_scale(width: int, *, min_width: int = MIN_GRID_WIDTH) -> int:
    """The whole factor a grid ``width`` px wide is enlarged by to be at least ``min_width``:
    1 for a grid already that wide. Whole factors keep every pixel a sharp square."""
    return max(1, math.ceil(min_width / max(width, 1)))


def _png_grid(pixels: torch.Tensor) -> Any:
    """uint8 images [N, C, H, W] as one PIL grid, enlarged nearest-neighbour to be readable."""
    from PIL import Image
    from torchvision.utils import make_grid

    nrow = max(1, math.ceil(math.sqrt(pixels.shape[0])))
    grid = make_grid(pixels, nrow=nrow, padding=2, pad_value=255)
    array = grid.permute(1, 2, 0).numpy()
    image = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
    scale = grid_scale(image.width)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    return image


def _format_of(path: str | Path) -> str | None:
    """What the writer rule lets an image file replace: an ``.npz`` of images, not of
    statistics; a PNG by its suffix."""
    return "images.npz" if Path(path).suffix.lower() == ".npz" else None


def save_images(images: torch.Tensor, path: str | Path) -> Path:
    """Write images in [-1, 1]: ``.png`` as one grid, ``.npz`` as uint8 [N, H, W, C] ``images``.

    A PNG grid narrower than 512 px (28×28 digits: 8 per row are 242 px) is enlarged by the
    smallest whole factor that makes it at least 512 px wide, nearest neighbour, so each
    pixel stays a sharp square; the ``.npz`` keeps the images at their own size.
    """
    target = check_output_path(path, suffixes=IMAGE_SUFFIXES, writes=_format_of(path))
    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if target.suffix.lower() == ".npz":
        array = pixels.permute(0, 2, 3, 1).numpy()
        return write_atomically(target, lambda handle: np.savez_compressed(handle, images=array),
                                suffixes=IMAGE_SUFFIXES, writes="images.npz")
    from PIL.PngImagePlugin import PngInfo

    grid, info = _png_grid(pixels), PngInfo()
    info.add_text(*PNG_SOFTWARE)             # marks it skiptune's, for the writer rule
    return write_atomically(target, lambda handle: grid.save(handle, format="PNG", pnginfo=info),
                            suffixes=IMAGE_SUFFIXES)


def write_samples(
    model: str | Path,
    path: str | Path,
    *,
    schedule: TuningSchedule | None = None,
    exported: str | Path | None = None,  # a file written by ``skiptune export``
    allow_other_weights: bool = False,
    allow_other_budget: bool = False,
    nfe: int | None = None,
    sampler: str | None = None,
    num_samples: int = 64,
    seed: int = 0,
    device: str | None = None,
    trust_pickle: bool = False,
    conditioning: Mapping[str, Any] | None = None,  # e.g. {"class_labels": [3]}
    revision: str | None = None,         # of a hub id, see load_model
    variant: str | None = None,          # of a diffusers model's weights, see load_model
    dtype: str | None = None,            # float16, bfloat16, float32; see load_model
    one_step_sigma: float | None = None,  # σ_init of an EDM one-step generator; see load_model
) -> dict[str, Any]:
    """Load ``model``, sample under a schedule (given, from an export, or ρ = 1) and write ``path``.

    With ``exported``, its schedule, NFE and sampler are used; an ``nfe`` or ``sampler``
    other than the export's is refused unless ``allow_other_budget`` (a ρ found for one
    budget is not the best for another), and a file searched on other weights unless
    ``allow_other_weights``. ``schedule`` and ``exported`` together are refused. With
    neither, the untuned model is sampled (ρ = 1 everywhere, ``untuned`` True in the result)
    at ``nfe`` or 9 (1 for a distilled model with its own sampler). Returns what was written
    (path, schedule, NFE, sampler, N, fingerprint).
    """
    if not is_whole(num_samples) or not 1 <= num_samples <= MAX_WRITTEN_SAMPLES:
        raise ConfigurationError(
            f"num_samples must be a whole number from 1 to {MAX_WRITTEN_SAMPLES:,} (the images "
            f"are held in memory and written as one file), got {num_samples!r}; pass a smaller "
            "num_samples, or sample in several files with different seeds",
            field="num_samples",
        )
    if schedule is not None and exported is not None:
        raise ConfigurationError(
            "an export carries its own schedule: pass schedule or exported, not both",
            field=("schedule", "exported"),
        )
    inputs = [model, exported, *(conditioning or {}).values()]
    check_output_path(path, suffixes=IMAGE_SUFFIXES,        # before the slow part
                      writes=_format_of(path),
                      reading=[p for p in inputs if isinstance(p, str | Path)])
    loaded = load_model(model, device=None if device in (None, "auto") else device,
                        trust_pickle=trust_pickle, conditioning=conditioning,
                        revision=revision, variant=variant, dtype=dtype,
                        one_step_sigma=one_step_sigma)
    reason = not_images_reason(loaded)
    if reason is not None and Path(path).suffix.lower() == ".png":
        raise ConfigurationError(f"{reason}, or -o FILE.npz for the raw values")
    exponent = 7.0
    untuned = schedule is None and exported is None
    if exported is not None:
        found = load_exported(exported, model=loaded, allow_other_weights=allow_other_weights)
        _check_budget(found, nfe=nfe, sampler=sampler, allowed=allow_other_budget,
                      where=str(exported))
        schedule = found.schedule
        nfe = nfe if nfe is not None else found.nfe
        sampler = sampler or found.sampler
        if found.schedule_exponent is not None:     # 0 is refused when read, never replaced
            exponent = found.schedule_exponent
    if schedule is None:
        schedule = TuningSchedule(rho_bottom=1.0, rho_top=1.0)
    sampler = sampler or loaded.default_sampler or DEFAULT_SAMPLER
    if nfe is None:     # a distilled model (its own sampler) samples in one step, as it can
        nfe = 1 if loaded.default_sampler is not None else DEFAULT_SAMPLE_NFE
    images = sample_images(
        loaded, schedule=schedule, nfe=nfe, sampler=sampler, num_samples=num_samples,
        seed=seed, schedule_exponent=exponent,
    )
    written = save_images(images, path)
    return {
        "path": str(written),
        "schedule": schedule.to_dict(),
        "untuned": untuned,
        "nfe": nfe,
        "sampler": sampler,
        "num_samples": num_samples,
        "seed": seed,
        "model_fingerprint": loaded.fingerprint,
        **({"condition": loaded.conditioner.identity} if loaded.conditioner else {}),
    }


def _check_budget(found: ExportedSchedule, *, nfe: int | None, sampler: str | None,
                  allowed: bool, where: str) -> None:
    """Refuse applying an export to another NFE or sampler than it was searched for."""
    asked = [
        f"{what} {mine} (the export's: {theirs})"
        for what, mine, theirs in (("NFE", nfe, found.nfe), ("sampler", sampler, found.sampler))
        if mine is not None and mine != theirs
    ]
    if asked and not allowed:
        raise ConfigurationError(
            f"{where} was searched for {found.nfe} NFE with {found.sampler}, and you asked for "
            f"{' and '.join(asked)}; the best ρ differs per budget: drop nfe and sampler, "
            "search that budget, or pass allow_other_budget=True to use it anyway",
            field=("allow_other_budget", "nfe", "sampler"),
        )
