"""The floating-point precision a model runs in (``load_model(..., dtype=...)``).

Diffusers pipelines are run in half precision on a GPU by their users, so a Stable
Diffusion model defaults to float16 on CUDA; everything else, and everything on the CPU,
defaults to float32. Weights are fingerprinted as loaded, before the cast: the dtype is
part of a study's objective identity (a float16 study is not a float32 study), not of the
weights' identity. ρ = 1 stays exactly the plain model in every dtype: the hooks multiply
by 1 in the skip's own dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from skiptune.errors import ConfigurationError
from skiptune.models._base import TunableModel

__all__ = ["DTYPES", "apply_dtype", "check_dtype", "default_dtype", "dtype_name"]

DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
}
# Families run in float16 on CUDA by default: Stable Diffusion pipelines, distilled ones too.
_HALF_BY_DEFAULT = frozenset({"diffusers-sd", "diffusers-lcm", "diffusers-turbo"})


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float16`` → ``"float16"``, as ``--dtype`` and the stored identity spell it."""
    return str(dtype).removeprefix("torch.")


def check_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype | None:
    """The dtype asked for, checked to run on ``device``; None when left to the family.

    Raises ConfigurationError for an unknown name, or a dtype whose convolutions this device
    cannot run (float16 on some CPUs), before anything is loaded.
    """
    if dtype is None:
        return None
    names = {v: k for k, v in DTYPES.items()}
    if isinstance(dtype, torch.dtype):
        if dtype not in names:
            raise ConfigurationError(f"dtype {dtype} is not one of {', '.join(DTYPES)}")
        resolved = dtype
    elif str(dtype) in DTYPES:
        resolved = DTYPES[str(dtype)]
    else:
        raise ConfigurationError(
            f"unknown dtype {dtype!r}; pass dtype {', '.join(DTYPES)} (or leave it out: "
            "float16 for Stable Diffusion on CUDA, else float32)",
            field="dtype",
        )
    _probe(resolved, device)
    return resolved


def _probe(dtype: torch.dtype, device: torch.device) -> None:
    """A tiny convolution and matrix product in ``dtype`` on ``device``: what every U-Net runs."""
    try:
        x = torch.ones(1, 2, 4, 4, dtype=dtype, device=device)
        weight = torch.ones(2, 2, 3, 3, dtype=dtype, device=device)
        y = torch.nn.functional.conv2d(x, weight, padding=1)
        torch.nn.functional.group_norm(y, 1) @ torch.ones(4, 4, dtype=dtype, device=device)
    except (RuntimeError, NotImplementedError) as e:
        raise ConfigurationError(
            f"{dtype_name(dtype)} does not run on {device} with this torch "
            f"({' '.join(str(e).split())[:120]}); pass dtype float32"
            f"{' or bfloat16' if dtype == torch.float16 else ''}",
            field="dtype",
        ) from e


def default_dtype(model: TunableModel, device: torch.device) -> torch.dtype:
    """float16 for a diffusers pipeline on CUDA, as its users run it; float32 otherwise."""
    if device.type == "cuda" and model.family in _HALF_BY_DEFAULT:
        return torch.float16
    return torch.float32


def apply_dtype(model: TunableModel, dtype: torch.dtype) -> TunableModel:
    """Cast a freshly loaded (float32) model's net to ``dtype``; its denoiser then takes and
    returns the caller's dtype. A decoder with a ``to_dtype`` method (the VAE) casts itself,
    keeping float32 where its config asks (``force_upcast``)."""
    model.dtype = dtype
    if dtype == torch.float32:
        return model
    model.net.to(dtype)
    to_dtype = getattr(model.decoder, "to_dtype", None)
    if to_dtype is not None:
        to_dtype(dtype)
    if not getattr(model.denoise_fn, "casts_to_net_dtype", False):
        model.denoise_fn = _InNetDtype(model.denoise_fn, dtype)
    return model


class _InNetDtype:
    """A denoiser that runs its net in ``dtype``: inputs cast in, output cast back."""

    def __init__(self, denoise_fn: Callable[..., torch.Tensor], dtype: torch.dtype) -> None:
        self.denoise_fn = denoise_fn
        self.dtype = dtype

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        condition = kwargs.get("condition")
        if isinstance(condition, torch.Tensor) and condition.is_floating_point():
            kwargs["condition"] = condition.to(self.dtype)
        return self.denoise_fn(x.to(self.dtype), sigma.to(self.dtype), **kwargs).to(x.dtype)
