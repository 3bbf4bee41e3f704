"""A small CNN digit classifier whose penultimate activations serve as FID features on MNIST.

Inception-v3 features describe natural photographs; for 32×32 digits a classifier trained on
the digits themselves gives a domain FID that needs no download. The weights ship as
``skiptune/assets/digit_features.pt``, written by ``python -m skiptune.demo.train_features``
(the training lives with the demo; the net belongs to the metric).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from skiptune._files import save_torch_atomically
from skiptune.data.mnist import MNIST_RESOLUTION
from skiptune.errors import CheckpointError, ConfigurationError, first_line
from skiptune.models import fingerprint_state_dict

__all__ = [
    "DEFAULT_FEATURE_NET_PATH",
    "FEATURE_NET_FORMAT_VERSION",
    "FEATURE_NET_KIND",
    "DigitFeatureNet",
    "FeatureNetConfig",
    "feature_net_fingerprint",
    "load_feature_net",
    "save_feature_net",
]

FEATURE_NET_KIND = "skiptune-digit-features"
FEATURE_NET_FORMAT_VERSION = 1
DEFAULT_FEATURE_NET_PATH = Path(__file__).resolve().parents[1] / "assets" / "digit_features.pt"

_CHECKPOINT_KEYS = frozenset({"format_version", "kind", "config", "state_dict", "metadata"})
_ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU}
_NORMS = ("batch", "group")
_MAX_FEATURE_DIM = 256


@dataclass(frozen=True)
class FeatureNetConfig:
    """Shape of a :class:`DigitFeatureNet`.

    Attributes:
        channels: output channels of each stage; every stage is ``convs_per_stage`` 3×3
            convolutions at one resolution, and stages after the first start with a 2×2
            max-pool (so 32 → 16 → 8 for three stages).
        convs_per_stage: convolutions (each followed by norm and activation) per stage.
        feature_dim: width of the penultimate layer, the FID features (1–256).
        num_classes: number of digit classes.
        norm: ``"batch"`` (BatchNorm) or ``"group"`` (GroupNorm, 8 groups).
        activation: ``"relu"`` or ``"silu"``.
        dropout: dropout probability before each linear layer, in [0, 1).
        resolution: side of the square input images.
    """

    channels: tuple[int, ...] = (16, 32, 64)
    convs_per_stage: int = 2
    feature_dim: int = 128
    num_classes: int = 10
    norm: str = "batch"
    activation: str = "silu"
    dropout: float = 0.2
    resolution: int = MNIST_RESOLUTION

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if not self.channels or any(c < 1 for c in self.channels):
            raise ConfigurationError(f"channels must be positive integers, got {self.channels}")
        if self.convs_per_stage < 1:
            raise ConfigurationError(
                f"convs_per_stage must be at least 1, got {self.convs_per_stage}"
            )
        if not 1 <= self.feature_dim <= _MAX_FEATURE_DIM:
            raise ConfigurationError(
                f"feature_dim must be in [1, {_MAX_FEATURE_DIM}], got {self.feature_dim}"
            )
        if self.num_classes < 2:
            raise ConfigurationError(f"num_classes must be at least 2, got {self.num_classes}")
        if self.norm not in _NORMS:
            raise ConfigurationError(f"norm must be one of {_NORMS}, got {self.norm!r}")
        if self.activation not in _ACTIVATIONS:
            raise ConfigurationError(
                f"activation must be one of {tuple(_ACTIVATIONS)}, got {self.activation!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigurationError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.resolution < 2 ** (len(self.channels) - 1):
            raise ConfigurationError(
                f"resolution {self.resolution} is too small for {len(self.channels)} stages"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists, not tuples), so that ``weights_only`` loading accepts it."""
        config = asdict(self)
        config["channels"] = list(self.channels)
        return config

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> FeatureNetConfig:
        """Build from :meth:`to_dict`'s output; unknown keys are a ConfigurationError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ConfigurationError(f"unknown feature-net config keys {unknown}")
        return cls(**config)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    raise ConfigurationError(f"norm must be one of {_NORMS}, got {kind!r}")


def _stage(config: FeatureNetConfig, in_channels: int, out_channels: int, pool: bool) -> nn.Module:
    """[max-pool 2×2] → (conv 3×3 → norm → activation) × convs_per_stage."""
    layers: list[nn.Module] = [nn.MaxPool2d(2)] if pool else []
    for index in range(config.convs_per_stage):
        channels_in = in_channels if index == 0 else out_channels
        layers += [
            nn.Conv2d(channels_in, out_channels, 3, padding=1, bias=False),
            _norm(config.norm, out_channels),
            _ACTIVATIONS[config.activation](),
        ]
    return nn.Sequential(*layers)


class DigitFeatureNet(nn.Module):
    """CNN digit classifier: conv stages → global average pool → features → logits.

    Input: float images [N, 1, R, R] in [-1, 1] (background -1), R = ``config.resolution``,
    as made by :func:`skiptune.data.to_model_images`.
    """

    def __init__(self, config: FeatureNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or FeatureNetConfig()
        self.metadata: dict[str, Any] = {}  # what a loaded checkpoint says of itself
        channels = (1, *self.config.channels)
        self.body = nn.Sequential(
            *(
                _stage(self.config, channels[i], channels[i + 1], pool=i > 0)
                for i in range(len(self.config.channels))
            ),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Sequential(
            nn.Dropout(self.config.dropout),
            nn.Linear(channels[-1], self.config.feature_dim),
            _ACTIVATIONS[self.config.activation](),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(self.config.dropout),
            nn.Linear(self.config.feature_dim, self.config.num_classes),
        )

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations [N, feature_dim] of images [N, 1, R, R] in [-1, 1]."""
        return self.head(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits [N, num_classes] of images [N, 1, R, R] in [-1, 1]."""
        return self.classifier(self.features(x))


def feature_net_fingerprint(net: DigitFeatureNet) -> str:
    """Hex SHA-256 of the net's state dict (names, dtypes, shapes, bytes, in name order)."""
    return fingerprint_state_dict(net.state_dict())


_PLAIN_TYPES = (str, int, float, bool, type(None))


def _check_plain(value: Any, where: str) -> None:
    """Raise unless ``value`` is built of dicts with str keys, lists and plain scalars only.

    Exact types are required: a str subclass such as ``torch.__version__`` would be pickled
    as its class, and ``weights_only`` loading would then refuse the whole file.
    """
    if isinstance(value, dict):
        for key, item in value.items():
            if type(key) is not str:
                raise ConfigurationError(f"metadata key {key!r} in {where} must be a plain str")
            _check_plain(item, f"{where}.{key}")
    elif isinstance(value, list | tuple) and type(value) in (list, tuple):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
    elif type(value) not in _PLAIN_TYPES:
        raise ConfigurationError(
            f"{where} is a {type(value).__name__}; metadata may hold only dicts, lists, str, "
            "int, float, bool and None (convert it, e.g. with str())"
        )


def save_feature_net(
    path: str | os.PathLike[str],  # where to write the .pt file
    net: DigitFeatureNet,  # the trained net
    *,
    accuracy: float,  # held-out accuracy in [0, 1]
    split: dict[str, int],  # {"seed": ..., "held_out": ...} as given to split_indices
    metadata: dict[str, Any] | None = None,  # anything else worth recording (plain types)
) -> Path:
    """Write the net as ``{format_version, kind, config, state_dict, metadata}`` with torch.save.

    The metadata records ``accuracy``, ``split`` and the weights' ``fingerprint``. The file
    holds only plain types and tensors, so :func:`load_feature_net` reads it with
    ``weights_only=True``. Written to a temporary file first, then renamed into place.

    Returns:
        The path written.
    """
    if not 0.0 <= accuracy <= 1.0:
        raise ConfigurationError(f"accuracy must be a fraction in [0, 1], got {accuracy}")
    state_dict = {name: t.detach().cpu().clone() for name, t in net.state_dict().items()}
    checkpoint = {
        "format_version": FEATURE_NET_FORMAT_VERSION,
        "kind": FEATURE_NET_KIND,
        "config": net.config.to_dict(),
        "state_dict": state_dict,
        "metadata": {
            **(metadata or {}),
            "accuracy": float(accuracy),
            "split": {key: int(value) for key, value in split.items()},
            "fingerprint": fingerprint_state_dict(state_dict),
        },
    }
    _check_plain(checkpoint["metadata"], "metadata")
    return save_torch_atomically(checkpoint, path)


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """torch.load with ``weights_only=True``, turning every failure into a CheckpointError."""
    if not path.is_file():
        raise CheckpointError(
            f"feature-net file {path} does not exist; run python -m skiptune.demo.train_features"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, zipfile.BadZipFile) as e:
        reason = first_line(e)
        raise CheckpointError(
            f"feature-net file {path} cannot be loaded safely as plain weights ({reason}); "
            "replace it with a file written by save_feature_net"
        ) from e
    if not isinstance(checkpoint, dict) or checkpoint.get("kind") != FEATURE_NET_KIND:
        raise CheckpointError(
            f"{path} is not a skiptune digit feature net (no kind {FEATURE_NET_KIND!r}); "
            "pass a file written by save_feature_net"
        )
    missing = sorted(_CHECKPOINT_KEYS - set(checkpoint))
    if missing:
        raise CheckpointError(f"feature-net file {path} lacks keys {missing}; re-save it")
    if not isinstance(checkpoint["metadata"], dict):
        raise CheckpointError(f"feature-net file {path} has no metadata mapping; re-save it")
    if checkpoint["format_version"] != FEATURE_NET_FORMAT_VERSION:
        raise CheckpointError(
            f"feature-net file {path} has format_version {checkpoint['format_version']!r}, "
            f"this skiptune reads {FEATURE_NET_FORMAT_VERSION}; retrain or upgrade skiptune"
        )
    return checkpoint


def _build_net(path: Path, checkpoint: dict[str, Any]) -> DigitFeatureNet:
    """The net described by a checked checkpoint dict, with its weights loaded."""
    try:
        net = DigitFeatureNet(FeatureNetConfig.from_dict(checkpoint["config"]))
    except (ConfigurationError, TypeError) as e:
        raise CheckpointError(f"feature-net file {path} has an invalid config: {e}") from e
    state_dict = checkpoint["state_dict"]
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"feature-net file {path} has no state_dict mapping; re-save it")
    try:
        net.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"feature-net file {path} has weights that do not fit its config "
            f"({first_line(e)}); re-save it"
        ) from e
    stored = checkpoint["metadata"].get("fingerprint")
    if stored is not None and stored != feature_net_fingerprint(net):
        raise CheckpointError(
            f"feature-net file {path} has weights whose fingerprint differs from the stored one; "
            "the file is corrupt, replace it"
        )
    return net


def load_feature_net(
    path: str | os.PathLike[str] | None = None,  # default: the shipped asset
    device: torch.device | str | None = None,  # default: CPU
) -> DigitFeatureNet:
    """Load a feature net saved by :func:`save_feature_net`, never unpickling code.

    Returns:
        The net in eval mode on ``device``; its checkpoint metadata (accuracy, split,
        fingerprint…) is on ``net.metadata``.

    Raises:
        CheckpointError: the file is missing, corrupt, carries code, or is not a feature net.
    """
    path = DEFAULT_FEATURE_NET_PATH if path is None else Path(path)
    checkpoint = _read_checkpoint(path)
    net = _build_net(path, checkpoint)
    net.metadata = dict(checkpoint["metadata"])
    return net.to(device or "cpu").eval()
