"""skiptune's own checkpoint format: tensors and plain config, loadable with ``weights_only``.

A checkpoint is a dict::

    {"format": "skiptune-checkpoint", "format_version": 1,
     "architecture": "edm-unet", "config": {...},      # plain types only
     "ema": {name: tensor}, "metadata": {...},       # resolution, channels, σ range…
     "ema_sha256": "..."}                            # fingerprint_state_dict(ema)

It is read with ``torch.load(..., weights_only=True)``, which refuses any pickled code.
``ema_sha256`` (written since skiptune 0.x; optional, so older checkpoints still load) is
checked on load: flipped bytes inside a tensor are refused instead of searched.
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from skiptune._files import read_input, save_torch_atomically
from skiptune.downloads import bad_file_fix
from skiptune.errors import CheckpointError, first_line
from skiptune.models._base import SkipSite, TunableModel, fingerprint_state_dict
from skiptune.models.unet import (
    ConsistencyEDMUNet,
    EDMUNet,
    PreconditionedEDMUNet,
    UNetConfig,
)

__all__ = ["ARCHITECTURES", "FORMAT", "FORMAT_VERSION", "build_net", "load", "save_checkpoint"]

FORMAT = "skiptune-checkpoint"
FORMAT_VERSION = 1
ARCHITECTURES = ("edm-unet", "edm-consistency-unet")
_REQUIRED_KEYS = ("format", "format_version", "architecture", "config", "ema", "metadata")
_REQUIRED_METADATA = ("resolution", "channels", "sigma_min", "sigma_max", "sigma_data")
CHECKSUM_KEY = "ema_sha256"
_FIX = "pass a skiptune .pt checkpoint"


def build_net(architecture: str, config: dict[str, Any]) -> PreconditionedEDMUNet:
    """Instantiate the preconditioned net of a registered architecture from its config."""
    if architecture == "edm-unet":
        unet_config = UNetConfig.from_dict(config)
        return PreconditionedEDMUNet(EDMUNet(unet_config), sigma_data=unet_config.sigma_data)
    if architecture == "edm-consistency-unet":
        # The U-Net's config and the boundary σ_min of the consistency scalings.
        values = dict(config)
        boundary = values.pop("boundary_sigma", None)
        if isinstance(boundary, bool) or not isinstance(boundary, (int, float)) \
                or not 0 < boundary < float("inf"):
            raise CheckpointError(
                f"a consistency U-Net's config needs boundary_sigma > 0, got {boundary!r}"
            )
        unet_config = UNetConfig.from_dict(values)
        return ConsistencyEDMUNet(EDMUNet(unet_config), sigma_data=unet_config.sigma_data,
                                  sigma_min=float(boundary))
    raise CheckpointError(
        f"unknown architecture {architecture!r}; this skiptune knows {', '.join(ARCHITECTURES)}"
    )


def save_checkpoint(
    path: str | Path,
    net: PreconditionedEDMUNet,
    *,
    sigma_min: float,
    sigma_max: float,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``net``'s weights (give the EMA weights) and config as a skiptune checkpoint.

    Args:
        path: destination ``.pt`` file; written to a temporary file first, then renamed, so
            a crash never leaves a half-written checkpoint.
        net: an :class:`PreconditionedEDMUNet` as built by :func:`build_net` (a
            :class:`ConsistencyEDMUNet` is saved as architecture ``edm-consistency-unet``).
        sigma_min, sigma_max: the σ range the model was trained for.
        metadata: anything else worth keeping (dataset, split, training record); plain types.
    """
    config = net.unet.config
    meta = {
        "resolution": config.img_resolution,
        "channels": config.in_channels,
        "sigma_min": float(sigma_min),
        "sigma_max": float(sigma_max),
        "sigma_data": float(net.sigma_data),
        **(metadata or {}),
    }
    ema = {k: v.detach().to("cpu").clone() for k, v in net.state_dict().items()}
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": "edm-unet",
        "config": config.to_dict(),
        "ema": ema,
        "metadata": meta,
        CHECKSUM_KEY: fingerprint_state_dict(ema),
    }
    if isinstance(net, ConsistencyEDMUNet):
        payload["architecture"] = "edm-consistency-unet"
        payload["config"]["boundary_sigma"] = net.sigma_min
    return save_torch_atomically(payload, path)


_ZIP_MAGIC = b"PK\x03\x04"      # torch.save writes a zip archive (torch ≥ 1.6)
_PICKLE_PROTOCOL = 0x80          # ...or, in the legacy format, a pickle (protocol ≥ 2)


def _looks_like_torch_file(head: bytes) -> bool:
    """Whether the bytes start as torch.save output does: a zip archive or a pickle."""
    return head[:4] == _ZIP_MAGIC or (len(head) > 0 and head[0] == _PICKLE_PROTOCOL)


def _short_reason(error: BaseException) -> str:
    """The gist of a loader error: its first sentence, without torch's paragraph of advice."""
    return first_line(error).split(". ", 1)[0][:200]


def _not_torch(path: Path) -> CheckpointError:
    return CheckpointError(
        f"model file {str(path)!r} is not a readable torch checkpoint: it is neither a zip "
        f"archive (as torch.save writes) nor a pickle; {bad_file_fix(path, _FIX)}"
    )


def _damaged(path: Path, error: BaseException) -> CheckpointError:
    return CheckpointError(
        f"model file {str(path)!r} is not a readable torch checkpoint (truncated or damaged: "
        f"{_short_reason(error)}); "
        f"{bad_file_fix(path, 'copy it again, or pass another skiptune .pt checkpoint')}"
    )


_CODE_OPCODES = frozenset({"GLOBAL", "STACK_GLOBAL", "INST"})   # name a class or function


def _refuses_code(error: BaseException, data: bytes) -> bool:
    """Whether torch's safe loader refused a pickled global (a class or function to call),
    not bytes it cannot parse: only then does the file really hold Python objects.

    torch names the global in its message for what it parses; a raw pickle of a newer
    protocol it stops at earlier (an unsupported opcode), so the opcodes are listed, without
    executing any, to look for one that names code.
    """
    text = str(error)
    if "Unsupported global" in text or "GLOBAL" in text:
        return True
    try:
        names = {op.name for op, _arg, _pos in pickletools.genops(data)}   # the whole stream
    except Exception:  # not a well-formed pickle: damaged, not code
        return False
    return bool(names & _CODE_OPCODES)


def _check_stored_entries(path: Path, data: bytes) -> None:
    """torch.save stores its archive's entries uncompressed; a compressed entry could unpack
    to far more than the file holds (a megabyte of deflated zeros declaring a gigabyte), and
    torch would inflate it before comparing its size with the tensor's. Refused unread."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError):
        return          # torch.load names the damage in its own words
    for entry in entries:
        if entry.compress_type != zipfile.ZIP_STORED or entry.file_size != entry.compress_size:
            raise CheckpointError(
                f"model file {str(path)!r}: its entry {entry.filename!r} declares "
                f"{entry.file_size:,} bytes compressed into {entry.compress_size:,}, but "
                f"torch.save stores entries uncompressed; {_FIX}"
            )


def _read(path: Path, *, trust_pickle: bool) -> Any:
    data = read_input(path, what="model file", fix=_FIX)
    if not data:
        raise CheckpointError(f"model file {str(path)!r} is empty; {_FIX}")
    # Judged by the header before any loader runs: random bytes then get one clear line
    # instead of whatever the legacy unpickler trips over (IndexError, "pickled objects").
    if not _looks_like_torch_file(data[:4]):
        raise _not_torch(path)
    if data[:4] == _ZIP_MAGIC:
        _check_stored_entries(path, data)
    try:
        with warnings.catch_warnings():
            # torch warns about a pickle protocol its safe loader may not fully support; the
            # file is then read or refused in one line, and the warning would be a second.
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as e:
        if not trust_pickle and _refuses_code(e, data):
            raise CheckpointError(
                f"model file {str(path)!r} contains pickled Python objects, which can run code "
                "when loaded; it was not loaded. Pass trust_pickle=True only if you trust where "
                "it came from",
                field="trust_pickle",
            ) from e
        raise _damaged(path, e) from e
    except Exception as e:  # damaged bytes make the loaders raise anything
        raise _damaged(path, e) from e


def _check_checksum(path: Path, payload: dict[str, Any], fingerprint: str) -> None:
    """Refuse tensors whose bytes differ from the ones saved (old checkpoints carry none)."""
    stored = payload.get(CHECKSUM_KEY)
    if stored is not None and stored != fingerprint:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is damaged: its tensors' SHA-256 {fingerprint[:12]}… "
            f"differs from the one stored when it was saved ({str(stored)[:12]}…); "
            f"{bad_file_fix(path, 'copy it again or restore an earlier checkpoint')}"
        )


def _validate(path: Path, payload: Any) -> None:
    expected = "a skiptune checkpoint dict with keys " + ", ".join(_REQUIRED_KEYS)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"model file {str(path)!r} is a torch file but not {expected}; write checkpoints "
            "with skiptune.models.save_checkpoint, or load other nets with a module:attr adapter"
        )
    missing = [k for k in _REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} lacks {missing}; expected {expected}")
    version = payload["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {version!r}, newer than this "
            f"skiptune reads ({FORMAT_VERSION}); upgrade skiptune"
        )
    missing_meta = [k for k in _REQUIRED_METADATA if k not in payload["metadata"]]
    if missing_meta:
        raise CheckpointError(f"checkpoint {str(path)!r} metadata lacks {missing_meta}")
    meta = payload["metadata"]
    lo, hi = meta["sigma_min"], meta["sigma_max"]
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
        raise CheckpointError(
            f"checkpoint {str(path)!r} has an invalid σ range [{lo}, {hi}]; need 0 < σ_min < σ_max"
        )


def _wrap(
    net: PreconditionedEDMUNet, meta: dict[str, Any], fingerprint: str, source: str
) -> TunableModel:
    config = net.unet.config
    sites = tuple(SkipSite(name=f"skip{i}", module=tap) for i, tap in enumerate(net.unet.skip_taps))
    return TunableModel(
        net=net,
        denoise_fn=net,
        skip_sites=sites,
        image_shape=(config.in_channels, config.img_resolution, config.img_resolution),
        sigma_min=float(meta["sigma_min"]),
        sigma_max=float(meta["sigma_max"]),
        sigma_data=float(meta["sigma_data"]),
        fingerprint=fingerprint,
        family="skiptune",
        metadata=dict(meta),
        source=source,
        # The demo names its assets; other checkpoints may too (plain names in assets/).
        reference=_asset_name(meta, "reference"),
        feature_net=_asset_name(meta, "feature_net"),
        default_sampler="consistency" if isinstance(net, ConsistencyEDMUNet) else None,
    )


def _asset_name(meta: dict[str, Any], key: str) -> str | None:
    value = meta.get(key)
    return str(value) if value else None


def _from_payload(path: Path, payload: dict[str, Any], device: torch.device) -> TunableModel:
    _validate(path, payload)
    try:
        net = build_net(payload["architecture"], payload["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {str(path)!r} has an invalid config: {e}") from e
    state = payload["ema"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f"checkpoint {str(path)!r}: 'ema' must map names to tensors")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
        raise CheckpointError(
            f"checkpoint {str(path)!r}: its weights do not match its config ({first}); save it "
            "again with skiptune.models.save_checkpoint from the net that holds these weights"
        ) from e
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has non-finite weights (NaN or inf) in {bad[0]}"
            + (f" and {len(bad) - 1} more tensors" if len(bad) > 1 else "")
            + "; retrain or restore an earlier checkpoint"
        )
    fingerprint = fingerprint_state_dict(state)
    _check_checksum(path, payload, fingerprint)
    net.eval().requires_grad_(False).to(device)
    return _wrap(net, payload["metadata"], fingerprint, str(path))


def load(path: Path, *, device: torch.device, trust_pickle: bool = False) -> TunableModel:
    """Load a skiptune checkpoint; with ``trust_pickle`` also a pickled
    :class:`PreconditionedEDMUNet`."""
    payload = _read(path, trust_pickle=trust_pickle)
    if trust_pickle and isinstance(payload, nn.Module):
        if not isinstance(payload, PreconditionedEDMUNet):
            raise CheckpointError(
                f"model file {str(path)!r} holds a pickled {type(payload).__name__}; only a "
                "pickled skiptune PreconditionedEDMUNet can be wrapped. Write a custom adapter "
                "instead (docs/custom_models.md)"
            )
        config = payload.unet.config
        meta = {
            "resolution": config.img_resolution,
            "channels": config.in_channels,
            "sigma_min": 0.002,
            "sigma_max": 80.0,
            "sigma_data": payload.sigma_data,
        }
        payload = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "architecture": "edm-unet",
            "config": config.to_dict(),
            "ema": payload.state_dict(),
            "metadata": meta,
        }
    return _from_payload(path, payload, device)
