"""Load a model source with the family that detects it (see ``_families``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from skiptune.errors import CheckpointError, ConfigurationError, SkiptuneError
from skiptune.models._base import TunableModel, apply_conditioning
from skiptune.models._families import check_options, family_of, resolve_source
from skiptune.models._one_step import as_one_step_generator, check_one_step_sigma
from skiptune.models._precision import apply_dtype, check_dtype, default_dtype

__all__ = ["load_model", "resolve_device"]


_DEVICE_TYPES = ("cpu", "cuda", "mps")
_DEVICE_HINT = "use device cpu, cuda, cuda:N or mps (or leave it out: the GPU if there is one)"


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device to use: the one asked for, else the GPU when there is one, else the CPU.

    Raises ConfigurationError for a device this machine lacks (a CUDA GPU, Apple's MPS) or
    one that cannot run a model (``meta``, or a backend this torch is not built with).
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigurationError(f"unknown device {device!r}; {_DEVICE_HINT}",
                                 field="device") from e
    if resolved.type not in _DEVICE_TYPES:
        raise ConfigurationError(f"device {device!r} cannot run a model here; {_DEVICE_HINT}",
                                 field="device")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError(
            f"device {device!r} was asked for but this machine has no usable CUDA GPU; "
            "use device cpu",
            field="device",
        )
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise ConfigurationError(
            f"device {device!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s)"
        )
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigurationError(
            f"device {device!r} (Apple's MPS) is not available on this machine; use device cpu",
            field="device",
        )
    return resolved


def load_model(
    source: str | Path,
    *,
    device: str | torch.device | None = None,
    trust_pickle: bool = False,
    conditioning: Mapping[str, Any] | None = None,
    revision: str | None = None,
    variant: str | None = None,
    dtype: str | torch.dtype | None = None,
    one_step_sigma: float | None = None,
) -> TunableModel:
    """Load a diffusion model as a σ-space denoiser with tunable skip sites.

    Args:
        source: a skiptune checkpoint (``.pt``), an NVlabs EDM ``network-snapshot-*.pkl``
            (read as data: the code it carries never runs), a diffusers ``UNet2DModel``
            folder saved with ``save_pretrained`` (with its scheduler config), a diffusers
            pipeline or ``UNet2DConditionModel`` folder, a diffusers
            ``ConsistencyModelPipeline`` folder, ``module:attr`` naming a user adapter
            (see ``docs/custom_models.md``), or a Hugging Face hub id ``org/name`` of such a
            pipeline or U-Net, fetched through the standard Hugging Face cache (see
            ``docs/models_by_name.md``); a checkpoint or snapshot may be an ``http(s)://``
            URL (``#sha256=<hex>`` pins it), downloaded once into skiptune's checked cache
            (see :func:`skiptune.downloads.fetch` and ``docs/downloads.md``). The families are
            listed in ``skiptune.models._families.FAMILIES``.
        device: where to put the net; default the GPU when there is one, else the CPU.
        trust_pickle: allow unpickling a file that carries Python objects. Unpickling can run
            arbitrary code: pass True only for files from a source you trust.
        conditioning: the user's choices for a conditional model's conditions (e.g.
            ``{"class_labels": [3]}``); refused for an unconditional model.
        revision: a hub id's branch, tag or commit (default ``main``); hub ids only.
        variant: the weights variant of a diffusers folder or hub id (e.g. ``fp16``: files
            ``*.fp16.safetensors``); default the plain weights.
        dtype: what the net computes in: ``"float16"``, ``"bfloat16"`` or ``"float32"``;
            default float16 for a Stable Diffusion pipeline on CUDA (as diffusers users run
            it), else float32. The VAE decodes in float32 where its config has
            ``force_upcast``. Part of a study's identity, not of the weights' fingerprint.
        one_step_sigma: σ_init of a one-step generator kept as an EDM snapshot (SiD,
            Diff-Instruct: the image is D(σ_init·z; σ_init)); the model then samples one step
            from σ_init with the ``consistency`` sampler by default. EDM snapshots only;
            part of a study's identity. Default: the snapshot is a diffusion model.

    Returns:
        A :class:`TunableModel` in eval mode on ``device``; the same weights give the same
        ``fingerprint`` whichever way they were named.
    """
    for name, value in (("revision", revision), ("variant", variant)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigurationError(
                f"{name} {value!r} is empty: pass a {_NAMES[name]}, or leave {name} out for "
                "the default",
                field=name,
            )
    resolved = resolve_device(device)
    asked = check_dtype(dtype, resolved)          # before the slow part
    start_sigma = check_one_step_sigma(one_step_sigma)
    text = resolve_source(source)
    family = family_of(text)
    check_options(family, text, revision=revision, variant=variant,
                  one_step_sigma=start_sigma)
    with _one_line(text) if family.reads_files else contextlib.nullcontext():
        model = family.load(text, device=resolved, trust_pickle=trust_pickle,
                            revision=revision, variant=variant)
    if start_sigma is not None:
        model = as_one_step_generator(model, start_sigma)
    model = apply_dtype(model, asked or default_dtype(model, resolved))
    return apply_conditioning(model, conditioning)


_NAMES = {"revision": "branch, tag or commit hash", "variant": "weights variant such as fp16"}


@contextlib.contextmanager
def _one_line(source: str) -> Iterator[None]:
    """Whatever a loader did not foresee in a damaged file becomes one CheckpointError line.

    The loaders name the problems they know; this is the net under them, so a value of the
    wrong type deep in a config (or an absurd size that cannot be allocated) is still a
    line naming the model, not a traceback.
    """
    try:
        yield
    except SkiptuneError:
        raise
    except Exception as e:
        raise CheckpointError(
            f"cannot load model {source!r} ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:200]}); check that the file or folder is complete and "
            "was written by skiptune or diffusers' save_pretrained"
        ) from e
