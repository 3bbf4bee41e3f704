"""Tune a user's own U-Net without editing skiptune: the ``module:attr`` adapter protocol.

A user module defines an *adapter*: a :class:`CustomModel`, or a function with no
arguments that returns one, and names it as ``"package.module:attr"``::

    # my_unets.py
    def adapter() -> CustomModel:
        net = MyUNet()
        net.load_state_dict(torch.load("my_unet.pt", weights_only=True))
        return CustomModel(
            net=net,
            denoise=edm_denoise,              # (net, x, sigma) -> x0
            skip_sites=[                      # bottom (deepest) → top (shallowest)
                CustomSkipSite("dec2", input_index=1),
                CustomSkipSite("dec1", input_index=1),
                CustomSkipSite("dec0", input_index=1),
            ],
            image_shape=(1, 28, 28),
            sigma_min=0.002,
            sigma_max=80.0,
        )

``load_model("my_unets:adapter")`` and ``skiptune-search --model my_unets:adapter`` then
load it. A library user who already holds the net calls :func:`wrap_module` instead.
``docs/custom_models.md`` walks through a complete example.

A skip site names the decoder module that *consumes* the skip (``net.get_submodule``
path) and which of its positional inputs is the skip: the factor must act where the
decoder uses the skip (before ``cat([h, skip])`` or ``h + skip``), never on an encoder
output, which also feeds the next encoder block.
"""

from __future__ import annotations

import importlib
import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from skiptune._memory import is_out_of_memory
from skiptune.errors import ConfigurationError, ModelError, SkiptuneError
from skiptune.models._base import SkipSite, TunableModel, fingerprint_state_dict

__all__ = [
    "CustomDenoiseFn",
    "CustomModel",
    "CustomSkipSite",
    "is_adapter_spec",
    "load",
    "wrap_module",
]

CustomDenoiseFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
"""``(net, x, sigma) -> x0``: x [batch, C, H, W] = y + σ·n with y in [-1, 1], σ of shape [batch]."""

# Dotted module path, a colon, then a dotted attribute path: "pkg.mod:attr" or "mod:Cls.make".
_SPEC = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


@dataclass(frozen=True)
class CustomSkipSite:
    """Where the decoder consumes one skip, named by paths a user can read off ``print(net)``.

    Args:
        path: the consuming module's name in the net, as ``net.get_submodule`` takes it
            (e.g. ``"decoder.2"``).
        input_index: which positional input of that module's ``forward`` is the skip (for
            ``forward(h, skip)`` it is 1); ``None`` scales the module's *output* instead, for
            a tap module (such as an ``nn.Identity``) whose output feeds only the decoder.
        tuple_index: when that input is a tuple of skips, which element.
        name: a label for reports; default derived from the path and indexes.
    """

    path: str
    input_index: int | None
    tuple_index: int | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.input_index is None:
            return f"{self.path}.output"
        suffix = "" if self.tuple_index is None else f"[{self.tuple_index}]"
        return f"{self.path}.input{self.input_index}{suffix}"


SiteLike = CustomSkipSite | tuple


@dataclass(frozen=True)
class CustomModel:
    """What an adapter returns: a net, how to denoise with it, and where its skips are consumed.

    Args:
        net: the U-Net, with its trained weights loaded.
        denoise: ``(net, x, sigma) -> x0``, the EDM denoiser D(x; σ): x = y + σ·n with images
            y in [-1, 1], ``sigma`` a tensor of shape [batch]; returns the estimate of y with
            the shape of x. Apply the net's own preconditioning here.
        skip_sites: one :class:`CustomSkipSite` (or a ``(path, input_index)`` or
            ``(path, input_index, tuple_index)`` tuple) per skip, ordered bottom (deepest,
            nearest the bottleneck) → top (shallowest, nearest the image).
        image_shape: (channels, height, width) of one image.
        sigma_min, sigma_max: the σ range the model was trained on (0 < sigma_min < sigma_max).
        sigma_data: standard deviation of the data, EDM's σ_data (0.5 for images in [-1, 1]).
        metadata: anything worth storing with a study (dataset, training run…).
    """

    net: nn.Module
    denoise: CustomDenoiseFn
    skip_sites: Sequence[SiteLike]
    image_shape: tuple[int, int, int]
    sigma_min: float
    sigma_max: float
    sigma_data: float = 0.5
    metadata: Mapping[str, Any] = field(default_factory=dict)


def is_adapter_spec(text: str) -> bool:
    """Whether ``text`` reads as ``package.module:attr`` and is not an existing file or folder."""
    return bool(_SPEC.match(text)) and not Path(text).exists()


def load(spec: str, *, device: torch.device | str | None = None) -> TunableModel:
    """Import the adapter named by ``spec`` (``"package.module:attr"``) and wrap what it returns.

    ``attr`` is a :class:`CustomModel` or a callable taking no arguments that returns one.
    The module is imported from ``sys.path``, and from the current directory after it (as
    uvicorn does), so that ``--model my_unets:adapter`` finds a ``my_unets.py`` next to where
    the command runs. Importing runs the module's code: it is the user's own, named code.

    Args:
        spec: ``"package.module:attr"``; ``attr`` may be dotted (``"mod:Class.factory"``).
        device: where to put the net; default: leave it where the adapter put it.

    Returns:
        A :class:`TunableModel` in eval mode with family ``"custom"`` and source ``spec``.

    Raises:
        ConfigurationError: the spec cannot be imported, the attribute is missing, the adapter
            fails or returns something other than a :class:`CustomModel`, or that model is
            inconsistent (see :func:`wrap_module`).
    """
    if not _SPEC.match(spec):
        raise ConfigurationError(
            f"adapter {spec!r} is not of the form package.module:attr; name the module and the "
            "adapter function, e.g. my_unets:adapter"
        )
    module_name, attr_path = spec.split(":", 1)
    _ensure_cwd_importable()
    try:
        module = importlib.import_module(module_name)
    except _USER_CODE_ERRORS as e:  # the user's module may fail in any way while it runs
        raise ConfigurationError(
            f"cannot import adapter {spec!r}: it {_raised(e)}; make sure the module is "
            "on PYTHONPATH"
        ) from e
    target: Any = module
    for part in attr_path.split("."):
        if not hasattr(target, part):
            raise ConfigurationError(
                f"adapter {spec!r}: {type(target).__name__} {getattr(target, '__name__', '')!r} "
                f"has no attribute {part!r}; define it or fix the name after the colon"
            )
        target = getattr(target, part)
    custom = _call_adapter(spec, target)
    model = wrap_module(
        custom.net,
        denoise=custom.denoise,
        skip_sites=custom.skip_sites,
        image_shape=custom.image_shape,
        sigma_min=custom.sigma_min,
        sigma_max=custom.sigma_max,
        sigma_data=custom.sigma_data,
        device=device,
        metadata=custom.metadata,
        name=f"adapter {spec}",
    )
    model.source = spec
    return model


def wrap_module(
    net: nn.Module,
    *,
    denoise: CustomDenoiseFn,
    skip_sites: Sequence[SiteLike],
    image_shape: tuple[int, int, int],
    sigma_min: float,
    sigma_max: float,
    sigma_data: float = 0.5,
    device: torch.device | str | None = None,
    metadata: Mapping[str, Any] | None = None,
    name: str = "the adapter",
) -> TunableModel:
    """Wrap a net the caller already holds as a :class:`TunableModel` with tunable skips.

    Args:
        net: the U-Net; it is put in eval mode (and moved to ``device`` when given).
        denoise: ``(net, x, sigma) -> x0`` (see :class:`CustomModel`).
        skip_sites: the consumption points, bottom → top (see :class:`CustomSkipSite`).
        image_shape: (channels, height, width) of one image.
        sigma_min, sigma_max: the trained σ range, 0 < sigma_min < sigma_max.
        sigma_data: EDM's σ_data, > 0.
        device: where to move the net; default: leave it where it is.
        metadata: stored with the model.
        name: how errors name the model; ``denoise`` raising becomes one ModelError line
            naming it (an out-of-memory error passes through, for the batch to be halved).

    Returns:
        A :class:`TunableModel` with family ``"custom"`` and the fingerprint of the weights.

    Raises:
        ConfigurationError: a site names a module the net lacks or has bad indexes, a site is
            listed twice, the shape or σ range is invalid, or a probe pass (one image at the
            geometric mean of the σ range) never reaches a site, hands it something other than
            a tensor where the skip should be, or returns the wrong shape.
    """
    if not isinstance(net, nn.Module):
        raise ConfigurationError(
            f"the adapter's net must be a torch.nn.Module, got {type(net).__name__}"
        )
    if not callable(denoise):
        raise ConfigurationError(
            f"denoise must be a callable (net, x, sigma) -> x0, got {type(denoise).__name__}"
        )
    shape = _check_image_shape(image_shape)
    _check_sigmas(sigma_min, sigma_max, sigma_data)
    specs = _check_sites(net, skip_sites)

    if device is not None:
        net.to(device)
    net.eval()
    sites = tuple(
        SkipSite(
            name=spec.label,
            module=net.get_submodule(spec.path),
            input_index=spec.input_index,
            tuple_index=spec.tuple_index,
        )
        for spec in specs
    )

    def denoise_fn(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        try:
            return denoise(net, x, sigma)
        except (SkiptuneError, MemoryError):
            raise
        except _USER_CODE_ERRORS as e:  # the user's code may fail in any way while it runs
            if is_out_of_memory(e):
                raise               # the search halves the batch and goes on
            raise ModelError(
                f"{name}'s denoise {_raised(e)}; fix the adapter "
                "(docs/custom_models.md), then rerun"
            ) from e

    _probe(net, denoise_fn, sites, shape, math.sqrt(sigma_min * sigma_max))
    return TunableModel(
        net=net,
        denoise_fn=denoise_fn,
        skip_sites=sites,
        image_shape=shape,
        sigma_min=float(sigma_min),
        sigma_max=float(sigma_max),
        sigma_data=float(sigma_data),
        fingerprint=fingerprint_state_dict(net.state_dict()),
        family="custom",
        metadata=dict(metadata or {}),
    )


# An adapter that calls sys.exit() (or raises SystemExit) is a failing adapter, not a request
# to end the search: it would otherwise exit the command, even with code 0 and no output.
_USER_CODE_ERRORS = (Exception, SystemExit)


def _raised(error: BaseException) -> str:
    """What the user's code did, for an error line: ``raised ValueError: ...`` or
    ``called sys.exit(0)``."""
    if isinstance(error, SystemExit):
        return f"called sys.exit({error.code!r}) (raised SystemExit)"
    return f"raised {type(error).__name__}: {_gist(error)}"


def _gist(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[:200] if text else "(no message)"


def _ensure_cwd_importable() -> None:
    # Console scripts put their own bin folder, not the working directory, on sys.path;
    # appending (not prepending) the cwd finds the user's module without shadowing packages.
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)


def _call_adapter(spec: str, target: Any) -> CustomModel:
    if isinstance(target, CustomModel):
        return target
    if isinstance(target, nn.Module) or not callable(target):
        raise ConfigurationError(
            f"adapter {spec!r} is a {type(target).__name__}; it must be a CustomModel or a "
            "function returning one (see docs/custom_models.md)"
        )
    try:
        result = target()
    except SkiptuneError:
        raise
    except _USER_CODE_ERRORS as e:  # the user's code: one line, the cause kept chained
        raise ConfigurationError(
            f"adapter {spec!r} {_raised(e)}; fix the adapter function"
        ) from e
    if not isinstance(result, CustomModel):
        raise ConfigurationError(
            f"adapter {spec!r} returned {type(result).__name__}; return "
            "skiptune.models.custom.CustomModel(net=..., denoise=..., skip_sites=..., ...)"
        )
    return result


MAX_IMAGE_VALUES = 4 * 4096 * 4096
"""The most values one image (or latent) may hold: beyond SDXL's 3 × 1024 × 1024 images with
room to spare, and far below what would allocate terabytes for a mistyped shape."""


def _check_image_shape(image_shape: Any) -> tuple[int, int, int]:
    try:
        shape = tuple(image_shape)
    except TypeError:
        shape = ()
    if len(shape) != 3 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape
    ):
        raise ConfigurationError(
            f"image_shape must be (channels, height, width) of positive ints, got {image_shape!r}"
        )
    values = math.prod(shape)
    if values > MAX_IMAGE_VALUES:
        raise ConfigurationError(
            f"image_shape {shape} holds {values:.3g} values per image, more than skiptune samples "
            f"(at most {MAX_IMAGE_VALUES:,}, e.g. 4 × 4096 × 4096); check the adapter's "
            "image_shape"
        )
    return shape


def _check_sigmas(sigma_min: Any, sigma_max: Any, sigma_data: Any) -> None:
    for name, value in (("sigma_min", sigma_min), ("sigma_max", sigma_max)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigurationError(f"{name} must be a number, got {value!r}")
    if not (math.isfinite(sigma_min) and math.isfinite(sigma_max) and 0 < sigma_min < sigma_max):
        raise ConfigurationError(
            f"the σ range must satisfy 0 < sigma_min < sigma_max, both finite; got "
            f"sigma_min={sigma_min!r}, sigma_max={sigma_max!r}"
        )
    if (
        isinstance(sigma_data, bool)
        or not isinstance(sigma_data, (int, float))
        or not math.isfinite(sigma_data)
        or sigma_data <= 0
    ):
        raise ConfigurationError(f"sigma_data must be a finite number > 0, got {sigma_data!r}")


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_sites(net: nn.Module, skip_sites: Sequence[SiteLike]) -> list[CustomSkipSite]:
    if isinstance(skip_sites, (str, CustomSkipSite)) or not isinstance(skip_sites, Sequence):
        raise ConfigurationError(
            f"skip_sites must be a list of CustomSkipSite, got {type(skip_sites).__name__}"
        )
    if not skip_sites:
        raise ConfigurationError(
            "skip_sites is empty; list at least one place where the decoder consumes a skip"
        )
    specs: list[CustomSkipSite] = []
    for i, raw in enumerate(skip_sites):
        spec = _as_site(i, raw)
        try:
            net.get_submodule(spec.path)
        except AttributeError as e:
            raise ConfigurationError(
                f"skip site {i} ({spec.label}): the net has no submodule {spec.path!r}; use a "
                "name from net.named_modules(), e.g. the decoder block that receives the skip"
            ) from e
        specs.append(spec)
    seen: dict[tuple, int] = {}
    for i, spec in enumerate(specs):
        key = (spec.path, spec.input_index, spec.tuple_index)
        if key in seen:
            raise ConfigurationError(
                f"skip sites {seen[key]} and {i} are both {spec.label}; list each skip once"
            )
        seen[key] = i
    return specs


def _as_site(i: int, raw: Any) -> CustomSkipSite:
    if isinstance(raw, tuple) and 2 <= len(raw) <= 3:
        raw = CustomSkipSite(*raw)
    if not isinstance(raw, CustomSkipSite):
        raise ConfigurationError(
            f"skip site {i} must be a CustomSkipSite or a (path, input_index[, tuple_index]) "
            f"tuple, got {raw!r}"
        )
    if not isinstance(raw.path, str):
        raise ConfigurationError(f"skip site {i}: path must be a str, got {raw.path!r}")
    if raw.input_index is not None and not _is_index(raw.input_index):
        raise ConfigurationError(
            f"skip site {i} ({raw.path}): input_index must be an int ≥ 0 or None (the output), "
            f"got {raw.input_index!r}"
        )
    if raw.tuple_index is not None:
        if raw.input_index is None:
            raise ConfigurationError(
                f"skip site {i} ({raw.path}): tuple_index needs an input_index; set the index "
                "of the positional input that holds the tuple of skips"
            )
        if not _is_index(raw.tuple_index):
            raise ConfigurationError(
                f"skip site {i} ({raw.path}): tuple_index must be an int ≥ 0 or None, got "
                f"{raw.tuple_index!r}"
            )
    return raw


def _probe(
    net: nn.Module,
    denoise_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    sites: tuple[SkipSite, ...],
    image_shape: tuple[int, int, int],
    sigma: float,
) -> None:
    """Run one image through the denoiser and check that every site sees its skip tensor.

    A wrong path or index would otherwise make ρ silently do nothing, or fail only in the
    middle of a search.
    """
    problems: dict[int, str] = {}
    reached: set[int] = set()

    def watch(k: int, site: SkipSite) -> torch.utils.hooks.RemovableHandle:
        if site.input_index is None:

            def on_output(_module: Any, _args: Any, output: Any) -> None:
                reached.add(k)
                if not torch.is_tensor(output):
                    problems[k] = f"its output is a {type(output).__name__}, not a tensor"

            return site.module.register_forward_hook(on_output)

        index, element = site.input_index, site.tuple_index

        def on_input(_module: Any, args: tuple) -> None:
            reached.add(k)
            if index >= len(args):
                problems[k] = f"the module received only {len(args)} positional inputs"
                return
            value = args[index]
            if element is not None:
                if not isinstance(value, tuple) or element >= len(value):
                    problems[k] = f"input {index} is not a tuple with an element {element}"
                    return
                value = value[element]
            if not torch.is_tensor(value):
                problems[k] = f"the skip there is a {type(value).__name__}, not a tensor"

        return site.module.register_forward_pre_hook(on_input)

    handles = [watch(k, site) for k, site in enumerate(sites)]
    try:
        device = next((p.device for p in net.parameters()), torch.device("cpu"))
        x = torch.zeros(1, *image_shape, device=device)
        with torch.no_grad():
            out = denoise_fn(x, torch.full((1,), sigma, device=device))
    finally:
        for handle in handles:
            handle.remove()
    if not torch.is_tensor(out) or out.shape != x.shape:
        got = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise ConfigurationError(
            f"denoise returned {got} for an input of shape {tuple(x.shape)}; it must return x0 "
            "with the shape of x (check image_shape)"
        )
    for k, site in enumerate(sites):
        if k not in reached:
            raise ConfigurationError(
                f"skip site {k} ({site.name}) is never called in a forward pass; point it at a "
                "decoder module that the net calls as a module and that receives the skip"
            )
        if k in problems:
            raise ConfigurationError(
                f"skip site {k} ({site.name}): {problems[k]}; fix its input_index/tuple_index"
            )
