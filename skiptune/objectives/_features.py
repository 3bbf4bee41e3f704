"""Feature extractors: one contract, three kinds (digit net, clean-fid Inception, TorchScript).

Every extractor takes generated or reference images as a float tensor [N, C, H, W] in
[-1, 1] and returns float64 features [N, D]. Each first quantises the images to 8 bits, as
saving them to PNG would, so generated images meet the extractor exactly as the reference
images read from files do, and then adapts channels and resolution as its network expects.
"""

from __future__ import annotations

import json
import os
import platform
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from skiptune import downloads
from skiptune._checks import is_whole
from skiptune._files import sha256_file
from skiptune._memory import is_out_of_memory
from skiptune.downloads import cache_dir
from skiptune.errors import CheckpointError, ConfigurationError, first_line
from skiptune.models import TunableModel
from skiptune.objectives._digit_net import (
    DigitFeatureNet,
    feature_net_fingerprint,
    load_feature_net,
)
from skiptune.objectives._paths import ASSETS_DIR

__all__ = [
    "EXTRACTOR_NAMES",
    "INCEPTION_FILENAME",
    "INCEPTION_URL",
    "INCEPTION_URL_ENV",
    "INCEPTION_WEIGHTS_ENV",
    "DigitFeatureExtractor",
    "FeatureExtractor",
    "InceptionFeatureExtractor",
    "InputSpec",
    "TorchScriptFeatureExtractor",
    "find_inception_weights",
    "inception_url",
    "load_feature_extractor",
    "quantize_images",
]

EXTRACTOR_NAMES = ("digits", "inception")
"""Named extractors; any other spec must be a path to a TorchScript file."""

INCEPTION_FILENAME = "inception-2015-12-05.pt"
INCEPTION_URL = (
    "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/"
    + INCEPTION_FILENAME
)
INCEPTION_WEIGHTS_ENV = "SKIPTUNE_INCEPTION_WEIGHTS"
INCEPTION_URL_ENV = "SKIPTUNE_INCEPTION_URL"
INCEPTION_FEATURE_DIM = 2048
INCEPTION_RESOLUTION = 299

DIGIT_FEATURES_FILENAME = "digit_features.pt"
METADATA_EXTRA_FILE = "skiptune.json"
"""Name of the JSON declaration a TorchScript extractor may carry in its ``_extra_files``."""

RANGES: dict[str, tuple[float, float]] = {
    "-1,1": (-1.0, 1.0),
    "0,1": (0.0, 1.0),
    "0,255": (0.0, 255.0),
}
RESIZE_MODES = ("bilinear", "bicubic", "pad", "clean")


@runtime_checkable
class FeatureExtractor(Protocol):
    """Maps images to feature vectors for FID/KID.

    Attributes:
        name: short name, e.g. ``"digits"``, ``"inception"``.
        identity: stable string naming the extractor and a hash of its weights (and of any
            preprocessing that changes the features); statistics are valid only for the
            identity they were computed with.
        feature_dim: D, the length of one feature vector.
    """

    name: str
    identity: str
    feature_dim: int

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """Features float64 [N, D] of images float [N, C, H, W] in [-1, 1]."""
        ...


# --- Shared preprocessing -------------------------------------------------------------------


def _check_images(images: torch.Tensor, *, extractor: str) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ConfigurationError(
            f"the {extractor} extractor takes a float tensor [N, C, H, W] in [-1, 1], got {shape}"
        )


def quantize_images(images: torch.Tensor) -> torch.Tensor:
    """Images float [N, C, H, W] in [-1, 1] → uint8 in [0, 255], as EDM and clean-fid save them.

    Values outside [-1, 1] are clipped; (x·127.5 + 128) is truncated, i.e. rounded half-up.
    """
    return (images.detach() * 127.5 + 128.0).clamp_(0.0, 255.0).to(torch.uint8)


def _match_channels(images: torch.Tensor, channels: int, *, extractor: str) -> torch.Tensor:
    """Grayscale to a 3-channel extractor by repetition; anything else must already match."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1)
    raise ConfigurationError(
        f"the {extractor} extractor takes {channels}-channel images, got {have} channels; "
        "choose features that fit the model's images (e.g. objective.features inception for "
        "RGB)",
        field="objective.features",
    )


def _pad_or_resize(images: torch.Tensor, size: tuple[int, int], *, fill: float) -> torch.Tensor:
    """Centre images on a ``fill`` canvas of at least ``size``, then resize bilinearly if needed.

    The same rule as ``skiptune.data.mnist.to_model_images``: MNIST's 28×28 digits are padded
    to 32×32 with background, never stretched.
    """
    height, width = images.shape[-2:]
    canvas = (max(height, size[0]), max(width, size[1]))
    top, left = (canvas[0] - height) // 2, (canvas[1] - width) // 2
    padded = F.pad(
        images, (left, canvas[1] - width - left, top, canvas[0] - height - top), value=fill
    )
    if canvas == size:
        return padded
    return F.interpolate(padded, size=size, mode="bilinear", align_corners=False)


def _clean_resize(images_u8: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 [N, 3, H, W] → float32 [N, 3, h, w] in [0, 255] with clean-fid's "clean" resizer.

    clean-fid resizes each channel of the uint8 image as a float PIL image with the bicubic
    filter and does not quantise afterwards; its own function is used so the features match
    its published statistics.
    """
    from cleanfid.resize import make_resizer

    resize = make_resizer("PIL", False, "bicubic", (size[1], size[0]))
    arrays = images_u8.permute(0, 2, 3, 1).cpu().numpy()
    resized = np.stack([resize(array) for array in arrays])  # [N, h, w, 3] float32
    return torch.from_numpy(resized).permute(0, 3, 1, 2).contiguous()


# --- The digit feature net ------------------------------------------------------------------


class DigitFeatureExtractor:
    """Penultimate features of skiptune's MNIST digit classifier (a domain FID for the demo).

    Input: images [N, 1, H, W] in [-1, 1]. They are quantised to 8 bits and converted exactly
    as MNIST digits are for the net (``to_model_images``): centred on a -1 background of
    32×32, so 28×28 digits are padded, not stretched; larger images are resized.
    """

    name = "digits"

    def __init__(self, net: DigitFeatureNet, *, device: torch.device | str | None = None) -> None:
        self.device = torch.device(device or "cpu")
        self.net = net.to(self.device).eval()
        self.resolution = int(net.config.resolution)
        self.feature_dim = int(net.feature_dim)
        self.identity = f"digits:{feature_net_fingerprint(net)}"

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str] | None = None,  # default: skiptune/assets/digit_features.pt
        *,
        device: torch.device | str | None = None,
    ) -> DigitFeatureExtractor:
        """Load a digit net written by ``skiptune.objectives.save_feature_net``."""
        path = ASSETS_DIR / DIGIT_FEATURES_FILENAME if path is None else Path(path)
        return cls(load_feature_net(path, device="cpu"), device=device)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """The net's input: float32 [N, 1, 32, 32] in [-1, 1] on the extractor's device.

        Images float [N, 1, H, W] in [-1, 1] go through uint8 and back, so generated digits
        take the same path as stored MNIST digits, then are padded (or resized) to 32×32.
        """
        _check_images(images, extractor=self.name)
        _match_channels(images, 1, extractor=self.name)
        x = quantize_images(images).to(self.device, torch.float32).div_(127.5).sub_(1.0)
        size = (self.resolution, self.resolution)
        return _pad_or_resize(x, size, fill=-1.0).clamp_(-1.0, 1.0)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """Features float64 [N, feature_dim] of images float [N, 1, H, W] in [-1, 1]."""
        return self.net.features(self.prepare(images)).double().cpu().numpy()


# --- clean-fid's Inception-v3 ---------------------------------------------------------------


def _default_inception_locations() -> list[Path]:
    """Where weights are looked for when none are named: skiptune's cache, then clean-fid's."""
    cleanfid_folder = Path("./") if platform.system() == "Windows" else Path("/tmp")
    return [cache_dir() / INCEPTION_FILENAME, cleanfid_folder / INCEPTION_FILENAME]


def _weights_in(path: Path) -> Path:
    """A named weights path: the file itself, or ``inception-2015-12-05.pt`` in a folder."""
    return path / INCEPTION_FILENAME if path.is_dir() else path


def inception_url() -> str:
    """Where clean-fid's Inception file is downloaded from: ``$SKIPTUNE_INCEPTION_URL`` (a
    mirror) or NVlabs' URL. A ``#sha256=<hex>`` suffix pins the file."""
    return os.environ.get(INCEPTION_URL_ENV) or INCEPTION_URL


def find_inception_weights(weights: str | os.PathLike[str] | None = None) -> Path:
    """The Inception-v3 TorchScript file clean-fid uses (``inception-2015-12-05.pt``).

    Looked for in order: ``weights`` (a file, or a folder holding it), then
    ``$SKIPTUNE_INCEPTION_WEIGHTS``, then ``<cache>/inception-2015-12-05.pt`` (cache:
    :func:`skiptune.downloads.cache_dir`), then clean-fid's own download place (``/tmp``);
    when none holds it, it is fetched from :func:`inception_url` into skiptune's checked
    cache on first use (refused in one line when offline).

    Raises:
        ConfigurationError: a named file does not exist; the message names the file and the
            URL it comes from.
        OfflineError: not found, and offline (also a ConfigurationError).
        DownloadError: not found, and the download failed.
    """
    named = (
        (weights, "inception_weights"),
        (os.environ.get(INCEPTION_WEIGHTS_ENV), f"${INCEPTION_WEIGHTS_ENV}"),
    )
    for value, origin in named:
        if value:
            path = _weights_in(Path(value).expanduser())
            if not path.is_file():
                raise ConfigurationError(
                    f"Inception-v3 weights {path} (from {origin}) do not exist; download "
                    f"{inception_url()} and point {origin} at the file"
                )
            return path
    for path in _default_inception_locations():
        if path.is_file():
            return path
    return downloads.fetch(
        inception_url(), what="Inception-v3 weights",
        alternative=f"or set ${INCEPTION_WEIGHTS_ENV} (inception_weights= in Python) to a copy",
    )


def _load_torchscript(path: Path, *, what: str, extra_files: dict[str, Any] | None = None) -> Any:
    try:
        with warnings.catch_warnings():
            # torch ≥ 2.9 deprecates TorchScript, but clean-fid's Inception weights (and many
            # published feature nets) exist only in that format: the warning helps no user.
            warnings.filterwarnings("ignore", r".*torch\.jit\.load", FutureWarning)
            return torch.jit.load(str(path), map_location="cpu", _extra_files=extra_files or {})
    except (RuntimeError, ValueError, OSError) as e:
        reason = first_line(e)
        raise CheckpointError(
            f"{what} {path} is not a loadable TorchScript file ({reason}); "
            f"{downloads.bad_file_fix(path, 'pass a file saved with torch.jit.save')}"
        ) from e


class InceptionFeatureExtractor:
    """Inception-v3 pool features (2048-d) exactly as clean-fid's "clean" mode computes them.

    Images [N, C, H, W] in [-1, 1] are quantised to uint8 [0, 255], grayscale repeated to
    RGB, resized to 299×299 with clean-fid's own PIL-bicubic resizer (float, no
    re-quantisation), normalised (x − 128)/128 and passed through the TorchScript net's
    ``layers``, as ``cleanfid.inception_torchscript.InceptionV3W`` does.
    """

    name = "inception"
    feature_dim = INCEPTION_FEATURE_DIM

    def __init__(
        self,
        weights: str | os.PathLike[str] | None = None,  # see find_inception_weights
        *,
        device: torch.device | str | None = None,
    ) -> None:
        path = find_inception_weights(weights)
        self.path = path
        self.device = torch.device(device or "cpu")
        self.net = _load_torchscript(path, what="Inception-v3 weights").to(self.device).eval()
        if not hasattr(self.net, "layers"):
            raise CheckpointError(
                f"Inception-v3 weights {path} have no 'layers' module, unlike clean-fid's "
                f"{INCEPTION_FILENAME}; download the file from {inception_url()}"
            )
        self.identity = f"inception-clean:{sha256_file(path)}"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """Features float64 [N, 2048] of images float [N, 1 or 3, H, W] in [-1, 1]."""
        _check_images(images, extractor=self.name)
        rgb = _match_channels(quantize_images(images), 3, extractor=self.name)
        x = _clean_resize(rgb, (INCEPTION_RESOLUTION, INCEPTION_RESOLUTION)).to(self.device)
        features = self.net.layers.forward((x - 128.0) / 128.0)
        return features.reshape(x.shape[0], -1).double().cpu().numpy()


# --- Any TorchScript network ----------------------------------------------------------------


@dataclass(frozen=True)
class InputSpec:
    """What a TorchScript feature network expects.

    Attributes:
        input_range: ``"-1,1"``, ``"0,1"`` or ``"0,255"``: the pixel range the net takes.
        resolution: (height, width) the net takes.
        channels: 1 or 3; grayscale images go to a 3-channel net by repetition.
        resize: how images of another size reach ``resolution``: ``"bilinear"`` or
            ``"bicubic"`` (torch, antialiased), ``"pad"`` (centre on a black canvas, resize
            only when larger, as MNIST 28 → 32) or ``"clean"`` (clean-fid's PIL bicubic).
        name: a short name for reports.
    """

    input_range: str
    resolution: tuple[int, int]
    channels: int = 3
    resize: str = "bilinear"
    name: str = "torchscript"

    def __post_init__(self) -> None:
        if self.input_range not in RANGES:
            raise ConfigurationError(
                f"input_range must be one of {', '.join(RANGES)}, got {self.input_range!r}"
            )
        resolution = self.resolution
        if is_whole(resolution):
            resolution = (resolution, resolution)
        if (
            not isinstance(resolution, Sequence)
            or len(resolution) != 2
            or not all(is_whole(s) and s >= 1 for s in resolution)
        ):
            raise ConfigurationError(
                f"resolution must be a positive integer or [height, width], got {resolution!r}"
            )
        object.__setattr__(self, "resolution", (int(resolution[0]), int(resolution[1])))
        if self.channels not in (1, 3):
            raise ConfigurationError(f"channels must be 1 or 3, got {self.channels!r}")
        if self.resize not in RESIZE_MODES:
            raise ConfigurationError(
                f"resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}"
            )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str) -> InputSpec:
        """Build from a declaration such as ``{"input_range": "0,255", "resolution": 299}``."""
        known = {"input_range", "resolution", "channels", "resize", "name"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigurationError(
                f"{source} declares unknown keys {unknown}; use {sorted(known)}"
            )
        missing = sorted({"input_range", "resolution"} - set(data))
        if missing:
            raise ConfigurationError(
                f"{source} does not declare {missing}; add them, e.g. "
                '{"input_range": "0,255", "resolution": 299}'
            )
        value = data["resolution"]
        resolution = tuple(value) if isinstance(value, list) else value
        return cls(
            input_range=str(data["input_range"]),
            resolution=resolution,  # checked in __post_init__
            channels=int(data.get("channels", 3)),
            resize=str(data.get("resize", "bilinear")),
            name=str(data.get("name", "torchscript")),
        )


def _declared_spec(path: Path, embedded: str) -> InputSpec:
    """The declaration of a TorchScript extractor: a sibling ``.json`` or the embedded one."""
    sibling = path.with_suffix(".json")
    if sibling.is_file():
        text, source = sibling.read_text(encoding="utf-8"), str(sibling)
    elif embedded:
        text, source = embedded, f"{path}'s extra file {METADATA_EXTRA_FILE}"
    else:
        raise ConfigurationError(
            f"TorchScript extractor {path} does not declare its input; write {sibling} with "
            '{"input_range": "-1,1"|"0,1"|"0,255", "resolution": N} or embed it as '
            f"_extra_files={{{METADATA_EXTRA_FILE!r}: ...}}"
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigurationError(f"{source} is not valid JSON ({e}); fix the declaration") from e
    if not isinstance(data, dict):
        raise ConfigurationError(f"{source} must hold a JSON object, got {type(data).__name__}")
    return InputSpec.from_mapping(data, source=source)


class TorchScriptFeatureExtractor:
    """Features from any TorchScript network: ``net(x)`` → [N, D] (or [N, D, 1, 1]).

    The network's expected input is declared, the first found of:

    1. ``spec=InputSpec(...)`` given here;
    2. a JSON file next to the network with the same stem (``net.pt`` → ``net.json``);
    3. a JSON string embedded in the file at save time:
       ``torch.jit.save(net, "net.pt", _extra_files={"skiptune.json": json.dumps({...})})``.

    The JSON object holds ``input_range`` (``"-1,1"``, ``"0,1"`` or ``"0,255"``) and
    ``resolution`` (an int or [height, width]), and optionally ``channels`` (1 or 3, default
    3), ``resize`` (``"bilinear"``, ``"bicubic"``, ``"pad"``, ``"clean"``; default
    ``"bilinear"``) and ``name``. Images [N, C, H, W] in [-1, 1] are quantised to 8 bits,
    given the declared channels and resolution, scaled to ``input_range`` and passed to the
    net. D is found by running the net once on a blank image.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],      # the TorchScript file
        *,
        spec: InputSpec | None = None,     # overrides the file's declaration
        device: torch.device | str | None = None,
    ) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise ConfigurationError(
                f"feature extractor file {self.path} does not exist; pass 'digits', "
                "'inception' or the path of a TorchScript file"
            )
        extra = {METADATA_EXTRA_FILE: ""}
        net = _load_torchscript(self.path, what="feature extractor", extra_files=extra)
        self.spec = spec or _declared_spec(self.path, extra[METADATA_EXTRA_FILE])
        self.name = self.spec.name
        self.device = torch.device(device or "cpu")
        self.net = net.to(self.device).eval()
        spec_json = json.dumps(asdict(self.spec), sort_keys=True)
        self.identity = f"torchscript:{self.name}:{sha256_file(self.path)}:{spec_json}"
        channels, (height, width) = self.spec.channels, self.spec.resolution
        self.feature_dim = int(self(torch.full((1, channels, height, width), -1.0)).shape[1])

    def _adapt(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [N, C, H, W] → float [N, channels, *resolution] in the declared range."""
        spec = self.spec
        x = _match_channels(images, spec.channels, extractor=self.name)
        if spec.resize == "clean":
            if spec.channels != 3:
                raise ConfigurationError(
                    "resize 'clean' follows clean-fid and needs channels 3; declare 'bicubic'"
                )
            x = _clean_resize(x.contiguous(), spec.resolution)  # float in [0, 255]
        else:
            x = x.to(torch.float32)
            if tuple(x.shape[-2:]) != spec.resolution:
                if spec.resize == "pad":
                    x = _pad_or_resize(x, spec.resolution, fill=0.0)
                elif spec.resize in ("bilinear", "bicubic"):
                    x = F.interpolate(
                        x, size=spec.resolution, mode=spec.resize, align_corners=False,
                        antialias=True,
                    )
                else:
                    raise ConfigurationError(f"unknown resize mode {spec.resize!r}")
            x = x.clamp_(0.0, 255.0)
        low, high = RANGES[spec.input_range]
        return x / 255.0 * (high - low) + low

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """Features float64 [N, D] of images float [N, C, H, W] in [-1, 1]."""
        _check_images(images, extractor=self.name)
        x = self._adapt(quantize_images(images)).to(self.device)
        try:
            output = self.net(x)
        except Exception as e:  # the user's network may fail in any way on our input
            if is_out_of_memory(e):
                raise                        # the objective halves the batch and goes on
            reason = " ".join(str(e).split())
            reason = reason.rsplit("RuntimeError: ", 1)[-1][:200]   # TorchScript's last line
            raise CheckpointError(
                f"feature extractor {self.path} failed on images of shape {tuple(x.shape)} "
                f"({type(e).__name__}: {reason}); check the resolution and channels it "
                "declares (its .json) against the network"
            ) from e
        if not isinstance(output, torch.Tensor) or output.ndim < 2 or output.shape[0] != len(x):
            raise CheckpointError(
                f"feature extractor {self.path} must return a tensor [N, D], got "
                f"{getattr(output, 'shape', type(output).__name__)}"
            )
        return output.reshape(len(x), -1).double().cpu().numpy()


# --- Dispatch -------------------------------------------------------------------------------


def load_feature_extractor(
    spec: str | os.PathLike[str],          # "digits", "inception" or a TorchScript path
    *,
    device: torch.device | str | None = None,  # default: the model's device, else CPU
    model: TunableModel | None = None,     # the model whose images will be scored
    inception_weights: str | os.PathLike[str] | None = None,  # see find_inception_weights
) -> FeatureExtractor:
    """Load the feature extractor named by ``spec``.

    Args:
        spec: ``"digits"`` (skiptune's MNIST digit net, for 1-channel images: the one the
            model names as its ``feature_net`` when it names one, else the shipped
            ``skiptune/assets/digit_features.pt``), ``"inception"`` (clean-fid's
            Inception-v3, offline: see :func:`find_inception_weights`), or the path of a
            TorchScript file (see :class:`TorchScriptFeatureExtractor`).
        device: where the extractor runs.
        model: when given, its image shape is checked against the extractor's input.
        inception_weights: the Inception-v3 file (or its folder) for ``"inception"``.

    Returns:
        A :class:`FeatureExtractor` taking images float [N, C, H, W] in [-1, 1].

    Raises:
        ConfigurationError: unknown spec, missing file, or images the extractor cannot take.
    """
    if device is None:
        device = model.device if model is not None else torch.device("cpu")
    text = os.fspath(spec)
    extractor: FeatureExtractor
    if text == "digits":
        asset = (model.feature_net if model is not None else None) or (
            DIGIT_FEATURES_FILENAME
        )
        extractor = DigitFeatureExtractor.from_file(ASSETS_DIR / asset, device=device)
    elif text == "inception":
        extractor = InceptionFeatureExtractor(inception_weights, device=device)
    elif Path(text).expanduser().is_file():
        extractor = TorchScriptFeatureExtractor(text, device=device)
    else:
        raise ConfigurationError(
            f"unknown feature extractor {text!r}; choose {', '.join(EXTRACTOR_NAMES)} or the "
            "path of an existing TorchScript file"
        )
    if model is not None:
        # A blank image through the extractor catches a channel mismatch before any sampling.
        extractor(torch.full((1, *model.image_shape), -1.0))
    return extractor
