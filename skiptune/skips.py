"""Apply a skip schedule to a loaded model: hooks where the decoder consumes each skip."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from skiptune._factors import (
    Factor,
    expand_factor,
    fourier_filter,
    is_neutral_factor,
    scale_backbone,
)
from skiptune.errors import ConfigurationError
from skiptune.freeu import FreeU
from skiptune.models import FreeUStage, SkipSite, TunableModel
from skiptune.schedule import TuningSchedule, check_sigma_window

__all__ = ["skip_tuning"]


class _SigmaWindow:
    """A schedule's σ window [lo, hi] and where the denoiser call in progress lies in it.

    :meth:`enter` runs once per denoiser call (the wrapper :func:`skip_tuning` puts around the
    model's ``denoise_fn``), so the per-sample test and its two device syncs happen once per
    call, not once per skip site.
    """

    def __init__(self, lo: float, hi: float) -> None:
        self.lo, self.hi = lo, hi
        self.inside = torch.ones(1, dtype=torch.bool)
        self.everywhere, self.nowhere = True, False

    def enter(self, sigma: torch.Tensor) -> None:
        self.inside = (sigma >= self.lo) & (sigma <= self.hi)
        self.everywhere = bool(self.inside.all())
        self.nowhere = not self.everywhere and not bool(self.inside.any())

    def factor(self, rho: float) -> Factor:
        if self.everywhere:
            return rho          # the plain factor: a window over every σ changes nothing
        if self.nowhere:
            return 1.0
        one = torch.ones_like(self.inside, dtype=torch.float64)
        return torch.where(self.inside, one * rho, one)


class _Windowed:
    """A skip site's factor that applies only inside the σ window (1 outside)."""

    def __init__(self, factor: float, window: _SigmaWindow) -> None:
        self.factor, self.window = factor, window

    def resolve(self) -> Factor:
        return self.window.factor(self.factor)


def _scale(skip: torch.Tensor, factor: Factor | _Windowed) -> torch.Tensor:
    if isinstance(factor, _Windowed):
        factor = factor.resolve()
    if isinstance(factor, torch.Tensor):
        # One factor per sample, broadcast over channels and space; tiled over a doubled
        # (classifier-free guidance) batch so both halves of sample j get sample j's factor.
        return skip * expand_factor(factor, skip)
    return skip * factor


def _scale_value(value: Any, element: int | None, factor: Factor | _Windowed) -> Any:
    """The input with its skip scaled: the whole tensor, or one element of a tuple of skips."""
    if element is None:
        return _scale(value, factor)
    return tuple(_scale(item, factor) if j == element else item for j, item in enumerate(value))


def _install(site: SkipSite, factor: Factor | _Windowed) -> torch.utils.hooks.RemovableHandle:
    if site.is_output:

        def scale_output(_module: Any, _args: Any, output: torch.Tensor) -> torch.Tensor:
            return _scale(output, factor)

        return site.module.register_forward_hook(scale_output)

    def scale_input(_module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        # A keyword input wins: diffusers' conditional U-Net passes its skips by name.
        if site.input_name is not None and site.input_name in kwargs:
            value = _scale_value(kwargs[site.input_name], site.tuple_index, factor)
            return args, {**kwargs, site.input_name: value}
        index = site.input_index
        if index is None or index >= len(args):
            wanted = (f"keyword input {site.input_name!r}" if index is None
                      else f"positional input {index}")
            raise ConfigurationError(
                f"skip site {site.name!r} expects {wanted}, but the module received "
                f"{len(args)} positional inputs and keywords {sorted(kwargs)}; fix the "
                "adapter's skip sites"
            )
        value = _scale_value(args[index], site.tuple_index, factor)
        return (*args[:index], value, *args[index + 1 :]), kwargs

    return site.module.register_forward_pre_hook(scale_input, with_kwargs=True)


def _skip_input(site: SkipSite, args: tuple, kwargs: dict) -> Any:
    if site.input_name is not None and site.input_name in kwargs:
        return kwargs[site.input_name]
    return args[site.input_index] if site.input_index is not None else None


def _install_freeu(
    stage: FreeUStage, backbone: Factor, skip: Factor, active: bool | torch.Tensor
) -> list[torch.utils.hooks.RemovableHandle]:
    """Hooks applying FreeU's (b, s) to one up stage (see :mod:`skiptune.freeu`).

    Each consumer receives ``cat([h, skip])``; the skip's channel count is read from the
    stage's skip input when the stage is entered, so the split is exact for every layout.
    """
    sites = stage.skips
    channels: list[int] = []

    def record(_module: Any, args: tuple, kwargs: dict) -> None:
        channels.clear()
        for site in sites:
            value = _skip_input(site, args, kwargs)
            if value is None:
                raise ConfigurationError(
                    f"FreeU stage {stage.name!r} cannot find its skip input {site.name!r}"
                )
            item = value if site.tuple_index is None else value[site.tuple_index]
            channels.append(int(item.shape[1]))

    def make_hook(position: int) -> Any:
        def apply(_module: Any, args: tuple) -> tuple:
            joined, rest = args[0], args[1:]
            skip_channels = channels[position]
            h, s = joined[:, :-skip_channels], joined[:, -skip_channels:]
            if not is_neutral_factor(backbone):
                h = scale_backbone(h, backbone)
            filtered = fourier_filter(s, skip)
            s = filtered if isinstance(active, bool) else torch.where(
                expand_factor(active, s).bool(), filtered, s)
            return (torch.cat([h, s], dim=1), *rest)

        return apply

    # Every site of a stage points at the same module; its pre-hook runs before the consumers.
    handles = [sites[0].module.register_forward_pre_hook(record, with_kwargs=True)]
    for position, consumer in enumerate(stage.consumers):
        handles.append(consumer.register_forward_pre_hook(make_hook(position)))
    return handles


def _factors_per_site(
    model: TunableModel, schedule: TuningSchedule | Sequence[TuningSchedule] | torch.Tensor
) -> list[Factor]:
    num_skips = model.num_skips
    if isinstance(schedule, TuningSchedule):
        return list(schedule.factors(num_skips))
    if isinstance(schedule, torch.Tensor):
        # A tensor of shape [batch, num_skips] (per-sample factors) or [num_skips].
        if schedule.ndim == 1 and schedule.shape[0] == num_skips:
            return [float(v) for v in schedule.tolist()]
        if schedule.ndim == 2 and schedule.shape[1] == num_skips:
            return [schedule[:, i] for i in range(num_skips)]
        raise ConfigurationError(
            f"a factor tensor must have shape [{num_skips}] or [batch, {num_skips}] for this "
            f"model's {num_skips} skips, got {tuple(schedule.shape)}"
        )
    schedules = list(schedule)
    if not schedules or not all(isinstance(s, TuningSchedule) for s in schedules):
        raise ConfigurationError(
            "skip_tuning takes a TuningSchedule, a sequence of TuningSchedule (one per sample) "
            f"or a factor tensor, got {type(schedule).__name__}"
        )
    table = torch.tensor([s.factors(num_skips) for s in schedules], dtype=torch.float64)
    return [table[:, i] for i in range(num_skips)]


def _freeu_per_stage(
    model: TunableModel,
    schedule: TuningSchedule | Sequence[TuningSchedule] | torch.Tensor,
    freeu: FreeU | None,
) -> list[tuple[Factor, Factor, bool | torch.Tensor]]:
    """(b, s, active) for each FreeU stage of ``model``; empty when FreeU is off or neutral.

    ``active``: True for one setting, else a bool tensor [B], whether each sample runs FreeU.
    """
    if freeu is not None:
        settings: list[FreeU] = [freeu]
    elif isinstance(schedule, TuningSchedule):
        settings = [schedule.freeu] if schedule.freeu is not None else []
    elif isinstance(schedule, torch.Tensor):
        settings = []
    else:
        settings = [s.freeu or FreeU() for s in schedule]
    if all(f.is_neutral for f in settings):
        return []       # neutral FreeU installs nothing: the plain model, bit for bit
    if not model.freeu_stages:
        raise ConfigurationError(
            f"FreeU needs up stages that consume cat([h, skip]), and this {model.family} model "
            "has none skiptune knows; search ρ only (space.kind rho)",
            field="space.kind",
        )
    # Diffusers filters every skip of an active stage, also at s = 1 (the FFT round trip
    # changes it by ~1e-6); a sample whose FreeU is off is left untouched, bit for bit.
    settings = [FreeU() if f.is_neutral else f for f in settings]
    active: bool | torch.Tensor = True
    if len(settings) > 1:
        active = torch.tensor([not f.is_neutral for f in settings])
    stages: list[tuple[Factor, Factor, bool | torch.Tensor]] = []
    for index in range(len(model.freeu_stages)):
        pairs = [f.stage(index) for f in settings]
        if len(pairs) == 1:
            stages.append((*pairs[0], active))
        else:
            table = torch.tensor(pairs, dtype=torch.float64)
            stages.append((table[:, 0], table[:, 1], active))
    return stages


@contextmanager
def skip_tuning(
    model: TunableModel,
    schedule: TuningSchedule | Sequence[TuningSchedule] | torch.Tensor,
    *,
    freeu: FreeU | None = None,
) -> Iterator[TunableModel]:
    """Scale each skip tensor of ``model`` by its factor while the ``with`` block runs.

    Args:
        model: a model from :func:`skiptune.load_model`.
        schedule: one :class:`TuningSchedule` for every sample; or a sequence of them, one per
            sample of the batch (to evaluate several candidates in one batch); or a factor
            tensor of shape [num_skips] or [batch, num_skips], columns ordered bottom → top.
            A schedule's ``freeu`` (if any) is applied too, and its σ window: ρ then acts
            only on denoiser calls whose σ lies in [sigma_lo, sigma_hi] (per sample).
        freeu: FreeU factors for every sample, instead of the schedule's own.

    The factor multiplies the skip where the decoder consumes it, never the encoder
    output. Every hook is removed on exit, also when the body raises. ρ = 1 everywhere
    reproduces the untuned model bit for bit (x·1.0 is exact in floating point), and so does
    neutral FreeU (b = s = 1), which installs no hook at all. FreeU's hooks act after ρ's:
    the Fourier filter is linear, so the order changes nothing but rounding.
    """
    factors: list[Any] = list(_factors_per_site(model, schedule))
    stages = _freeu_per_stage(model, schedule, freeu)
    denoise_fn = model.denoise_fn
    windowed = isinstance(schedule, TuningSchedule) and schedule.has_window
    if not windowed and not isinstance(schedule, TuningSchedule | torch.Tensor) and any(
        s.has_window for s in schedule
    ):
        raise ConfigurationError(
            "σ windows apply to one schedule for the whole batch; pass one TuningSchedule"
        )
    if windowed:
        assert isinstance(schedule, TuningSchedule)
        lo, hi = check_sigma_window(schedule.sigma_lo, schedule.sigma_hi,  # type: ignore[arg-type]
                                    model_range=(model.sigma_min, model.sigma_max))
        window = _SigmaWindow(lo, hi)

        def tracking(x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            # The hooks need the σ of the call in progress; the denoiser call carries it.
            window.enter(sigma.reshape(-1))
            return denoise_fn(x, sigma, **kwargs)

        model.denoise_fn = tracking
        factors = [_Windowed(float(f), window) for f in factors]
    handles = []
    try:
        for site, factor in zip(model.skip_sites, factors, strict=True):
            handles.append(_install(site, factor))
        for stage, (backbone, skip, active) in zip(model.freeu_stages, stages, strict=False):
            handles.extend(_install_freeu(stage, backbone, skip, active))
        yield model
    finally:
        model.denoise_fn = denoise_fn
        for handle in handles:
            handle.remove()
