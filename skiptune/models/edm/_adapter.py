"""Wrap an EDM snapshot's network as a :class:`TunableModel` (family ``"edm"``)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import (
    register_module_buffer_registration_hook,
    register_module_parameter_registration_hook,
)

from skiptune.errors import CheckpointError, ConfigurationError
from skiptune.models._base import SkipSite, TunableModel, fingerprint_state_dict
from skiptune.models._class_labels import ClassLabels
from skiptune.models.edm._networks import NETWORKS, PRECONDITIONERS, _Precond, iDDPMPrecond
from skiptune.models.edm._snapshot import EDMSnapshot, read_snapshot

__all__ = ["EDM_SAMPLER_SIGMA_RANGE", "ClassLabels", "build_network", "load", "wrap_network"]

EDM_SAMPLER_SIGMA_RANGE = (0.002, 80.0)
"""σ range of EDM's ``generate.py`` sampler, used for EDMPrecond (which records 0 and ∞)."""


def build_network(
    class_name: str, init_kwargs: Mapping[str, Any], init_args: Sequence[Any] = ()
) -> _Precond:
    """skiptune's EDM preconditioner ``class_name`` built from a snapshot's recorded arguments.

    Raises CheckpointError for a class skiptune does not implement or arguments it does not
    take.
    """
    if class_name not in PRECONDITIONERS:
        raise CheckpointError(
            f"network class {class_name!r} is not one skiptune implements; EDM snapshots of "
            f"{', '.join(PRECONDITIONERS)} (around {' or '.join(NETWORKS)}) are supported"
        )
    model_type = init_kwargs.get("model_type")
    if model_type is not None and model_type not in NETWORKS:
        raise CheckpointError(
            f"network class {model_type!r} (model_type of {class_name}) is not one skiptune "
            f"implements; supported: {', '.join(NETWORKS)}"
        )
    try:
        return PRECONDITIONERS[class_name](*init_args, **init_kwargs)
    except (TypeError, ValueError, ArithmeticError, IndexError, KeyError, RuntimeError) as e:
        raise CheckpointError(
            f"{class_name} records arguments skiptune's EDM networks do not take "
            f"({type(e).__name__}: {e})"
        ) from e


def _sigma_range(net: _Precond) -> tuple[float, float]:
    if type(net).__name__ == "EDMPrecond":
        return EDM_SAMPLER_SIGMA_RANGE
    return float(net.sigma_min), float(net.sigma_max)


def wrap_network(
    net: _Precond, *, source: str = "", metadata: Mapping[str, Any] | None = None
) -> TunableModel:
    """A built EDM preconditioner (weights loaded, on its device) as a TunableModel."""
    net.eval().requires_grad_(False)
    unet = net.model
    sites = tuple(
        SkipSite(name=f"skip{i}", module=tap) for i, tap in enumerate(unet.skip_taps)
    )
    label_dim = int(net.label_dim)

    def denoise_fn(
        x: torch.Tensor, sigma: torch.Tensor, condition: torch.Tensor | None = None
    ) -> torch.Tensor:
        if label_dim and condition is None:
            # EDM itself would silently use all-zero labels: never what a user wants.
            raise ConfigurationError(
                f"this EDM model is class-conditional ({label_dim} classes): pass "
                "condition=model.condition_for(seeds) (one-hot labels, one row per sample)"
            )
        if not label_dim and condition is not None:
            raise ConfigurationError("this EDM model is unconditional: it takes no condition")
        # augment_labels stay None: with augmentation off, EDM's augment mapping adds nothing.
        return net(x, sigma, class_labels=condition).to(x.dtype)

    sigma_min, sigma_max = _sigma_range(net)
    discrete = net.u.flip(0)[1:].clone() if isinstance(net, iDDPMPrecond) else None
    resolution, channels = int(net.img_resolution), int(net.img_channels)
    return TunableModel(
        net=net,
        denoise_fn=denoise_fn,
        skip_sites=sites,
        image_shape=(channels, resolution, resolution),
        sigma_min=sigma_min,
        sigma_max=sigma_max,
        sigma_data=float(getattr(net, "sigma_data", 0.5)),
        discrete_sigmas=discrete,
        fingerprint=fingerprint_state_dict(net.state_dict()),
        family="edm",
        metadata={"resolution": resolution, "channels": channels, "label_dim": label_dim,
                  **dict(metadata or {})},
        source=source,
        conditioner=ClassLabels(label_dim) if label_dim else None,
    )


def _weight_mismatch(expected: Mapping[str, torch.Tensor],
                     given: Mapping[str, torch.Tensor]) -> str | None:
    """What keeps ``given`` from loading into a net whose state dict is ``expected``."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    reshaped = [k for k in expected if k in given and given[k].shape != expected[k].shape]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing, e.g. {missing[0]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
    if reshaped:
        k = reshaped[0]
        parts.append(f"{len(reshaped)} of another shape, e.g. {k} {list(given[k].shape)} in "
                     f"the file, {list(expected[k].shape)} expected")
    return "; ".join(parts) or None


_TENSOR_BUDGET = (4, 1024)
"""A network built from recorded arguments may register up to 4 × the tensors the file
holds + 1,024 (a wrong but small network is then named by its shapes); past that, its
arguments describe a far larger network than the file and building stops."""


@contextlib.contextmanager
def _tensor_budget(limit: int, *, where: str, present: int) -> Iterator[None]:
    """Refuse, while a network is built, its registering more than ``limit`` tensors."""
    count = 0

    def hook(module: nn.Module, name: str, value: torch.Tensor | None) -> None:
        nonlocal count
        count += value is not None
        if count > limit:
            raise CheckpointError(
                f"{where}: its recorded arguments describe a network of more than {limit:,} "
                f"weight tensors, but the file holds {present:,}; the file is damaged or was "
                "written by modified code"
            )

    handles = [register_module_parameter_registration_hook(hook),
               register_module_buffer_registration_hook(hook)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _check_table_size(snapshot: EDMSnapshot, where: str) -> None:
    """iDDPM's σ table has M + 1 entries, computed in a loop: M must match the file's table."""
    if snapshot.class_name != "iDDPMPrecond" or "M" not in snapshot.init_kwargs:
        return
    table = snapshot.state_dict.get("u")
    steps = snapshot.init_kwargs["M"]
    if table is None or not isinstance(steps, int) or steps + 1 != table.numel():
        raise CheckpointError(
            f"{where}: its recorded M={str(steps)[:20]} does not match the σ table 'u' it holds "
            f"({'none' if table is None else f'{table.numel():,} entries'}); the file is "
            "damaged or was written by modified code"
        )


def implied_weights(snapshot: EDMSnapshot, *, where: str) -> dict[str, torch.Tensor]:
    """The state dict (names, shapes, dtypes) the snapshot's recorded arguments imply.

    Built on the meta device, so no weight memory is allocated, and refused (CheckpointError)
    as soon as the network registers far more tensors than the file holds (see
    :data:`_TENSOR_BUDGET`): a small file whose arguments describe a huge network costs
    neither memory nor time.
    """
    _check_table_size(snapshot, where)
    present = len(snapshot.state_dict)
    factor, extra = _TENSOR_BUDGET
    with _tensor_budget(factor * present + extra, where=where, present=present), \
            torch.device("meta"):
        net = build_network(snapshot.class_name, snapshot.init_kwargs, snapshot.init_args)
    return net.state_dict()


def _wrong_dtype(expected: Mapping[str, torch.Tensor],
                 given: Mapping[str, torch.Tensor]) -> str | None:
    """The first tensor whose dtype cannot hold what the network expects, described."""
    for name, want in expected.items():
        have = given[name]
        # A real floating type converts exactly enough (EDM writes float32); integers,
        # booleans and complex numbers (whose imaginary part would be dropped) do not.
        fits = have.is_floating_point() if want.is_floating_point() else have.dtype == want.dtype
        if not fits:
            return f"{name} is {str(have.dtype).removeprefix('torch.')}, not {want.dtype}"
    return None


def check_weights(expected: Mapping[str, torch.Tensor], snapshot: EDMSnapshot, *,
                  where: str) -> None:
    """Refuse snapshot weights whose names, shapes, dtypes or values the network cannot take."""
    mismatch = _weight_mismatch(expected, snapshot.state_dict)
    if mismatch:
        raise CheckpointError(
            f"{where}: its weights do not fit the network its kwargs describe ({mismatch}); "
            "the file is damaged or was written by modified code"
        )
    wrong = _wrong_dtype(expected, snapshot.state_dict)
    if wrong:
        raise CheckpointError(
            f"{where}: weight {wrong} (EDM writes real floating-point weights, float32); the "
            "file is damaged or was written by modified code"
        )
    bad = [k for k, v in snapshot.state_dict.items()
           if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{where} has non-finite weights (NaN or inf) in {bad[0]}")


def load(path: Path, *, device: torch.device) -> TunableModel:
    """Load an EDM ``network-snapshot-*.pkl`` without running any code it carries."""
    where = f"EDM snapshot {str(path)!r}"
    snapshot = read_snapshot(path)
    # Names, shapes and dtypes are checked on a network without memory before the real one
    # is built: what the file declares never allocates more than the file holds.
    check_weights(implied_weights(snapshot, where=where), snapshot, where=where)
    net = build_network(snapshot.class_name, snapshot.init_kwargs, snapshot.init_args)
    net.load_state_dict(snapshot.state_dict, strict=True)
    net.to(device)
    metadata = {
        "edm_class": snapshot.class_name,
        "edm_kwargs": _plain(snapshot.init_kwargs),
        "edm_source_sha256": snapshot.source_sha256,
    }
    model = wrap_network(net, source=str(path), metadata=metadata)
    if not math.isfinite(model.sigma_max) or not 0 < model.sigma_min < model.sigma_max:
        raise CheckpointError(
            f"{where} gives an invalid σ range [{model.sigma_min}, {model.sigma_max}]"
        )
    return model


def _plain(value: Any) -> Any:
    """JSON-able copy of recorded kwargs (tuples become lists)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
