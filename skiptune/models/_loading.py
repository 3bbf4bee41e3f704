"""Find the adapter that can load a model source and load it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from skiptune import downloads
from skiptune.errors import CheckpointError, ConfigurationError, SkiptuneError
from skiptune.models._base import TunableModel, apply_conditioning

__all__ = ["load_model", "resolve_device"]


_DEVICE_TYPES = ("cpu", "cuda", "mps")
_DEVICE_HINT = "use --device cpu, cuda, cuda:N or mps (or leave it out: the GPU if there is one)"


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
        raise ConfigurationError(f"unknown device {device!r}; {_DEVICE_HINT}") from e
    if resolved.type not in _DEVICE_TYPES:
        raise ConfigurationError(f"device {device!r} cannot run a model here; {_DEVICE_HINT}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError(
            f"device {device!r} was asked for but this machine has no usable CUDA GPU; "
            "use --device cpu"
        )
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise ConfigurationError(
            f"device {device!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s)"
        )
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigurationError(
            f"device {device!r} (Apple's MPS) is not available on this machine; use --device cpu"
        )
    return resolved


def load_model(
    source: str | Path,
    *,
    device: str | torch.device | None = None,
    trust_pickle: bool = False,
    conditioning: Mapping[str, Any] | None = None,
) -> TunableModel:
    """Load a diffusion model as a σ-space denoiser with tunable skip sites.

    Args:
        source: a skiptune checkpoint (``.pt``), an NVlabs EDM ``network-snapshot-*.pkl``
            (read as data: the code it carries never runs), a diffusers ``UNet2DModel`` folder
            saved with ``save_pretrained`` (with its scheduler config), or ``module:attr``
            naming a user adapter (see ``docs/custom_models.md``); a checkpoint or snapshot
            may be an ``http(s)://`` URL (``#sha256=<hex>`` pins it), downloaded once into
            skiptune's checked cache (see :func:`skiptune.downloads.fetch` and
            ``docs/downloads.md``).
        device: where to put the net; default the GPU when there is one, else the CPU.
        trust_pickle: allow unpickling a file that carries Python objects. Unpickling can run
            arbitrary code: pass True only for files from a source you trust.
        conditioning: the user's choices for a conditional model's conditions (e.g.
            ``{"class_labels": [3]}``); refused for an unconditional model.

    Returns:
        A :class:`TunableModel` in eval mode on ``device``.
    """
    return apply_conditioning(_load(_local(source), device, trust_pickle), conditioning)


def _local(source: str | Path) -> str | Path:
    """A URL source as its file in skiptune's checked cache (downloaded once); else as given.

    Resolved before any family is tried, so every family reads a local file, and the study's
    identity (the weights' fingerprint) is the same by path and by URL.
    """
    if isinstance(source, str) and downloads.is_url(source):
        return downloads.fetch(source, what="model")
    return source


def _load(
    source: str | Path, device: str | torch.device | None, trust_pickle: bool
) -> TunableModel:
    resolved = resolve_device(device)
    text = str(source)
    if not text.strip():
        # Path("") is the working directory: say what is missing instead of judging the folder.
        raise CheckpointError(
            "no model given: pass --model with a skiptune .pt checkpoint, a diffusers "
            "UNet2DModel folder, or module:attr naming an adapter"
        )
    path = Path(text).expanduser()
    if not path.exists():
        from skiptune.models import custom

        if custom.is_adapter_spec(text):
            return custom.load(text, device=resolved)
    if not path.exists():
        raise CheckpointError(
            f"model {text!r} not found: pass a skiptune .pt checkpoint, a diffusers "
            "UNet2DModel folder, or module:attr naming an adapter"
        )
    with _one_line(text):
        if path.is_dir():
            from skiptune.models import diffusers_sd, diffusers_unet

            if diffusers_unet.is_diffusers_folder(path):
                return diffusers_unet.load(path, device=resolved)
            # A pipeline folder (model_index.json) goes to the SD adapter, which names a
            # missing unet/ itself; so does a bare UNet2DConditionModel folder.
            if diffusers_sd.is_pipeline_folder(path) or diffusers_sd.is_conditional_unet_folder(
                path
            ):
                return diffusers_sd.load(path, device=resolved)
            raise CheckpointError(
                f"folder {text!r} is not a diffusers UNet2DModel folder nor a pipeline folder "
                "(no config.json with _class_name UNet2DModel or UNet2DConditionModel, no "
                "model_index.json); pass a skiptune .pt checkpoint or a save_pretrained folder"
            )
        from skiptune.models import edm

        if edm.looks_like_edm_snapshot(path):
            # Read as data whether or not pickles are trusted: EDM's own loader would exec
            # the network source the file carries, and skiptune never needs to.
            return edm.load(path, device=resolved)
        from skiptune.models import native

        return native.load(path, device=resolved, trust_pickle=trust_pickle)


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
        ) from None
