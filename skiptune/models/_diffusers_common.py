"""What the diffusers adapters share: σ from a scheduler config, the VP input, skip sites.

A discrete-time VP model sees x_vp = α·y + s·n with α = √ᾱ_t, s = √(1 − ᾱ_t); in EDM's
σ-space (x = y + σ·n) that is x = x_vp/α with σ = s/α = √((1 − ᾱ)/ᾱ) (Karras et al. 2022,
§C.3). Both ``UNet2DModel`` (:mod:`.diffusers_unet`) and ``UNet2DConditionModel``
(:mod:`.diffusers_sd`) adapters build on these helpers; nothing here imports diffusers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from skiptune._checks import is_whole
from skiptune._files import read_text
from skiptune.errors import CheckpointError, ConfigurationError
from skiptune.models._base import FreeUStage, SkipSite

__all__ = [
    "BETA_SCHEDULES",
    "PREDICTION_TYPES",
    "VpInput",
    "config_sample_shape",
    "discrete_sigmas_from_scheduler_config",
    "probe_size",
    "probe_skip_inputs",
    "read_json",
    "scheduler_config_path",
    "sigma_to_timestep",
    "up_block_sites",
    "x0_from_prediction",
]

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


_SKIP_KEYWORD = "res_hidden_states_tuple"      # how UNet2DConditionModel passes the skips


# DDPMScheduler's defaults, for configs that name a beta_schedule but omit these keys.
_SCHEDULER_DEFAULTS = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02}


def discrete_sigmas_from_scheduler_config(config: Mapping[str, Any]) -> torch.Tensor:
    """σ_t = √((1 − ᾱ_t)/ᾱ_t) for the training timesteps t = 0 … T−1 of a DDPM-family scheduler.

    Args:
        config: a diffusers scheduler config (``scheduler_config.json``) with
            ``num_train_timesteps``, ``beta_schedule`` (linear, scaled_linear or
            squaredcos_cap_v2), ``beta_start`` and ``beta_end``, or with ``trained_betas``.

    Returns:
        σ as float64 of shape [T], ascending; entry t belongs to timestep t.
    """
    if config.get("rescale_betas_zero_snr"):
        raise CheckpointError(
            "the scheduler config sets rescale_betas_zero_snr, which makes the last σ infinite; "
            "skiptune supports schedules with finite σ only"
        )
    trained = config.get("trained_betas")
    if trained is not None:
        betas = torch.tensor(_trained_betas(trained), dtype=torch.float64)
    else:
        if "beta_schedule" not in config:
            raise CheckpointError(
                "the scheduler config has no beta_schedule; skiptune supports DDPM-family (VP) "
                f"schedulers with beta_schedule one of {', '.join(BETA_SCHEDULES)}"
            )
        betas = _betas(
            _text(config, "beta_schedule"),
            _count(config, "num_train_timesteps"),
            _beta(config, "beta_start"),
            _beta(config, "beta_end"),
        )
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    sigmas = ((1.0 - alphas_cumprod) / alphas_cumprod).sqrt()
    if (
        sigmas.numel() < 2
        or not torch.isfinite(sigmas).all()
        or (sigmas <= 0).any()
        or (sigmas.diff() <= 0).any()
    ):
        raise CheckpointError(
            "the scheduler config gives σ that are not finite, positive and increasing over the "
            "timesteps; check its betas"
        )
    return sigmas


# Far above any trained schedule (1000 is usual): a larger count is a damaged config, and
# would allocate tables of that size.
_MAX_TIMESTEPS = 100_000


def _bad_value(key: str, value: Any, expected: str) -> CheckpointError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return CheckpointError(
        f"the scheduler config's {key} is {shown}, expected {expected}; fix "
        "scheduler_config.json or save the scheduler again with save_pretrained"
    )


def _text(config: Mapping[str, Any], key: str) -> str:
    value = config[key]
    if not isinstance(value, str):
        raise _bad_value(key, value, f"one of {', '.join(BETA_SCHEDULES)}")
    return value


def _count(config: Mapping[str, Any], key: str) -> int:
    value = config.get(key, _SCHEDULER_DEFAULTS[key])
    # A plain int only: numpy integers are refused here, unlike in is_whole.
    if not (is_whole(value) and isinstance(value, int)) or not 2 <= value <= _MAX_TIMESTEPS:
        raise _bad_value(key, value, f"a whole number from 2 to {_MAX_TIMESTEPS:,}")
    return value


def _is_beta(value: Any) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value) and 0 < value < 1)


def _beta(config: Mapping[str, Any], key: str) -> float:
    value = config.get(key, _SCHEDULER_DEFAULTS[key])
    if not _is_beta(value):
        raise _bad_value(key, value, "a number between 0 and 1")
    return float(value)


def _trained_betas(value: Any) -> list[float]:
    if (not isinstance(value, list) or not 2 <= len(value) <= _MAX_TIMESTEPS
            or not all(_is_beta(b) for b in value)):
        raise _bad_value("trained_betas", value,
                         f"a list of 2 to {_MAX_TIMESTEPS:,} numbers between 0 and 1")
    return [float(b) for b in value]


def sigma_to_timestep(sigma: torch.Tensor, log_sigmas: torch.Tensor) -> torch.Tensor:
    """The continuous training timestep of each σ, interpolated linearly in log σ.

    Args:
        sigma: σ ≥ 0 of shape [batch]; values outside the table are clamped to its ends.
        log_sigmas: log σ of timesteps 0 … T−1, ascending.

    Returns:
        t in [0, T−1] of shape [batch], with the dtype of ``log_sigmas``; exact integers at
        the table's σ.
    """
    sigma = sigma.to(device=log_sigmas.device, dtype=log_sigmas.dtype)
    log_sigma = sigma.clamp(min=log_sigmas[0].exp(), max=log_sigmas[-1].exp()).log()
    high = torch.searchsorted(log_sigmas, log_sigma).clamp(1, log_sigmas.numel() - 1)
    low = high - 1
    weight = (log_sigma - log_sigmas[low]) / (log_sigmas[high] - log_sigmas[low])
    return low.to(log_sigmas.dtype) + weight.clamp(0.0, 1.0)


def x0_from_prediction(
    output: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor, prediction_type: str
) -> torch.Tensor:
    """Turn the net's prediction at x = y + σ·n (EDM's σ-space) into the estimate of y.

    With α = 1/√(1 + σ²) and s = σ·α, the net saw x_vp = α·x = α·y + s·n.
    ``epsilon`` (ε̂ ≈ n): y = (x_vp − s·ε̂)/α = x − σ·ε̂.
    ``v_prediction`` (v̂ ≈ α·n − s·y, Salimans & Ho 2022): α·x_vp − s·v = (α² + s²)·y = y,
    so y = α²·x − σ·α·v̂. ``sample``: the output is y already.

    Args:
        output: the net's prediction, shape of x.
        x: the σ-space input [batch, C, H, W].
        sigma: σ of shape [batch].
        prediction_type: ``"epsilon"``, ``"v_prediction"`` or ``"sample"``.
    """
    s = sigma.to(device=x.device, dtype=x.dtype).view(-1, *([1] * (x.ndim - 1)))
    if prediction_type == "epsilon":
        return x - s * output
    if prediction_type == "v_prediction":
        alpha = 1.0 / (s * s + 1.0).sqrt()
        return alpha * (alpha * x) - (s * alpha) * output
    if prediction_type == "sample":
        return output
    raise ConfigurationError(
        f"unknown prediction_type {prediction_type!r}; use one of {', '.join(PREDICTION_TYPES)}"
    )


class VpInput:
    """What a discrete-time VP net is fed at σ-space (x, σ): x/√(σ² + 1) and its timestep."""

    # Its subclasses feed the net in the net's own dtype and return the caller's: the σ
    # table lookup stays in float32 whatever the net runs in (see models/_precision.py).
    casts_to_net_dtype = True

    def __init__(self, log_sigmas: torch.Tensor) -> None:
        self.log_sigmas = log_sigmas  # float64 on the CPU; copies per device in _table
        self._tables: dict[torch.device, torch.Tensor] = {}

    def _table(self, device: torch.device) -> torch.Tensor:
        if device not in self._tables:
            # float64 keeps t exact at the table's σ; MPS has no float64.
            dtype = torch.float32 if device.type == "mps" else torch.float64
            self._tables[device] = self.log_sigmas.to(device=device, dtype=dtype)
        return self._tables[device]

    def vp_input(self, x: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_vp = x/√(σ² + 1), continuous timestep t of σ in the table's dtype)."""
        s = sigma.to(device=x.device, dtype=x.dtype).view(-1, *([1] * (x.ndim - 1)))
        return x / (s * s + 1.0).sqrt(), sigma_to_timestep(sigma, self._table(x.device))


def read_json(path: Path) -> dict[str, Any]:
    text = read_text(path, what="config", fix="save the model again with save_pretrained")
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(
            f"cannot read {path}: not JSON ({getattr(e, 'msg', type(e).__name__)})"
        ) from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} does not hold a JSON object")
    return data


def scheduler_config_path(unet_dir: Path) -> Path:
    candidates = [
        unet_dir / "scheduler_config.json",
        unet_dir.parent / "scheduler" / "scheduler_config.json",
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise CheckpointError(
        f"no scheduler config for the UNet2DModel in {str(unet_dir)!r}: looked for "
        f"{' and '.join(str(c) for c in candidates)}; save the training scheduler there with "
        "scheduler.save_pretrained(...)"
    )


def config_sample_shape(
    unet_dir: Path, config: Any, *, resolution: str = "the training resolution"
) -> tuple[int, int, int]:
    """(in_channels, height, width) of what a diffusers U-Net config says it samples."""
    size = config.sample_size
    if size is None:
        raise CheckpointError(
            f"the U-Net config in {str(unet_dir)!r} has no sample_size; set it to "
            f"{resolution} in config.json"
        )
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    return (int(config.in_channels), int(height), int(width))


class _ProbeDone(Exception):
    """Raised by the probe's hook in the last up block: the rest of the pass is not needed."""


def probe_skip_inputs(
    net: Any, run: Callable[[], Any]
) -> list[tuple[int | None, str | None]]:
    """How each up block of ``net`` receives its tuple of skips: (positional index, keyword).

    Runs ``run()`` (one forward pass of ``net`` on a tiny input) with a pre-hook on every
    up block that records whether the skips came as the keyword ``res_hidden_states_tuple``
    (``UNet2DConditionModel``) or as a positional tuple of tensors (``UNet2DModel``), and
    stops the pass in the last up block.
    """
    blocks = list(net.up_blocks)
    found: list[tuple[int | None, str | None] | None] = [None] * len(blocks)

    def make_hook(i: int) -> Callable[..., None]:
        def record(_module: Any, args: tuple, kwargs: dict) -> None:
            if isinstance(kwargs.get(_SKIP_KEYWORD), tuple):
                found[i] = (None, _SKIP_KEYWORD)
            else:
                found[i] = next(
                    ((j, None) for j, a in enumerate(args)
                     if isinstance(a, tuple) and a and all(torch.is_tensor(t) for t in a)),
                    None,
                )
            if i == len(blocks) - 1:
                raise _ProbeDone

        return record

    handles = [b.register_forward_pre_hook(make_hook(i), with_kwargs=True)
               for i, b in enumerate(blocks)]
    try:
        with torch.no_grad():
            run()
    except _ProbeDone:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = [i for i, f in enumerate(found) if f is None]
    if missing:
        raise CheckpointError(
            f"up block(s) {missing} received no tuple of skips in a probe pass; this U-Net "
            "layout is not supported"
        )
    return [f for f in found if f is not None]


def probe_size(net: Any) -> int:
    """The smallest spatial size every down- and up-sampler of ``net`` can halve and restore."""
    downsamplers = sum(1 for b in net.down_blocks if getattr(b, "downsamplers", None))
    return 2**downsamplers


def up_block_sites(
    where: str, net: Any, inputs: Sequence[tuple[int | None, str | None]],
    supported: frozenset[str],
) -> tuple[tuple[SkipSite, ...], tuple[FreeUStage, ...]]:
    """One site per skip, bottom → top, in the order the up blocks consume them; FreeU stages.

    The U-Net hands up block i the last ``len(resnets)`` skips of the stack (``inputs[i]``
    says how, see :func:`probe_skip_inputs`), and the block pops them from the end of that
    tuple. The first skip consumed (up block 0, last element) is the deepest, the last (the
    final up block, element 0: conv_in's output) is the shallowest. FreeU acts on the first
    two up blocks (diffusers' ``resolution_idx`` 0 and 1), whose resnets take
    ``cat([h, skip])``.
    """
    sites: list[SkipSite] = []
    stages: list[FreeUStage] = []
    for i, block in enumerate(net.up_blocks):
        kind = type(block).__name__
        if kind not in supported:
            raise CheckpointError(
                f"the U-Net in {where!r} has an up block {kind}, which skiptune "
                f"does not support; supported: {', '.join(sorted(supported))}"
            )
        index, name = inputs[i]
        count = len(block.resnets)
        block_sites = tuple(
            SkipSite(
                name=f"up_blocks.{i}.resnets.{m}",
                module=block,
                input_index=index,
                tuple_index=count - 1 - m,
                input_name=name,
            )
            for m in range(count)
        )
        sites.extend(block_sites)
        if i < 2:
            stages.append(FreeUStage(f"up_blocks.{i}", tuple(block.resnets), block_sites))
    # The encoder pushes conv_in's output, then one tensor per resnet and per downsampler.
    pushed = 1 + sum(
        len(block.resnets) + len(getattr(block, "downsamplers", None) or ())
        for block in net.down_blocks
    )
    if len(sites) != pushed:
        raise CheckpointError(
            f"the U-Net in {where!r} pushes {pushed} skips but its up blocks "
            f"consume {len(sites)}; this layout is not supported"
        )
    return tuple(sites), tuple(stages)


def _betas(schedule: str, steps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """β_t of diffusers' DDPM-family schedulers, in float64."""
    if steps < 2:
        raise CheckpointError(f"num_train_timesteps must be ≥ 2, got {steps}")
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
    if schedule == "scaled_linear":
        return torch.linspace(beta_start**0.5, beta_end**0.5, steps, dtype=torch.float64) ** 2
    if schedule == "squaredcos_cap_v2":
        # GLIDE / improved DDPM cosine schedule (Nichol & Dhariwal 2021), β capped at 0.999.
        def alpha_bar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        return torch.tensor(
            [
                min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), 0.999)
                for i in range(steps)
            ],
            dtype=torch.float64,
        )
    raise CheckpointError(
        f"beta_schedule {schedule!r} is not supported; skiptune supports "
        f"{', '.join(BETA_SCHEDULES)} (or trained_betas)"
    )
