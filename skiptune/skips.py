"""Apply a skip schedule to a loaded model: hooks where the decoder consumes each skip."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from skiptune.errors import ConfigurationError
from skiptune.models._base import SkipSite, TunableModel
from skiptune.schedule import RhoSchedule

__all__ = ["skip_tuning"]

Factor = float | torch.Tensor


def _scale(skip: torch.Tensor, factor: Factor) -> torch.Tensor:
    if isinstance(factor, torch.Tensor):
        # One factor per sample: broadcast over the channel and spatial dimensions.
        factor = factor.to(device=skip.device, dtype=skip.dtype)
        return skip * factor.view(-1, *([1] * (skip.ndim - 1)))
    return skip * factor


def _install(site: SkipSite, factor: Factor) -> torch.utils.hooks.RemovableHandle:
    if site.input_index is None:

        def scale_output(_module: Any, _args: Any, output: torch.Tensor) -> torch.Tensor:
            return _scale(output, factor)

        return site.module.register_forward_hook(scale_output)

    index, element = site.input_index, site.tuple_index

    def scale_input(_module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if index >= len(args):
            raise ConfigurationError(
                f"skip site {site.name!r} expects positional input {index}, but the module "
                f"received {len(args)} positional inputs; fix the adapter's skip sites"
            )
        value = args[index]
        if element is None:
            value = _scale(value, factor)
        else:
            value = tuple(
                _scale(item, factor) if j == element else item for j, item in enumerate(value)
            )
        return (*args[:index], value, *args[index + 1 :]), kwargs

    return site.module.register_forward_pre_hook(scale_input, with_kwargs=True)


def _factors_per_site(
    model: TunableModel, schedule: RhoSchedule | Sequence[RhoSchedule] | torch.Tensor
) -> list[Factor]:
    num_skips = model.num_skips
    if isinstance(schedule, RhoSchedule):
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
    if not schedules or not all(isinstance(s, RhoSchedule) for s in schedules):
        raise ConfigurationError(
            "skip_tuning takes a RhoSchedule, a sequence of RhoSchedule (one per sample) or a "
            f"factor tensor, got {type(schedule).__name__}"
        )
    table = torch.tensor([s.factors(num_skips) for s in schedules], dtype=torch.float64)
    return [table[:, i] for i in range(num_skips)]


@contextmanager
def skip_tuning(
    model: TunableModel,
    schedule: RhoSchedule | Sequence[RhoSchedule] | torch.Tensor,
) -> Iterator[TunableModel]:
    """Scale each skip tensor of ``model`` by its factor while the ``with`` block runs.

    Args:
        model: a model from :func:`skiptune.load_model`.
        schedule: one :class:`RhoSchedule` for every sample; or a sequence of them, one per
            sample of the batch (to evaluate several candidates in one batch); or a factor
            tensor of shape [num_skips] or [batch, num_skips], columns ordered bottom → top.

    The factor multiplies the skip where the decoder consumes it, never the encoder
    output. Every hook is removed on exit, also when the body raises. ρ = 1 everywhere
    reproduces the untuned model bit for bit (x·1.0 is exact in floating point).
    """
    factors = _factors_per_site(model, schedule)
    handles = []
    try:
        for site, factor in zip(model.skip_sites, factors, strict=True):
            handles.append(_install(site, factor))
        yield model
    finally:
        for handle in handles:
            handle.remove()
