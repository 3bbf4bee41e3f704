"""Read an NVlabs EDM ``network-snapshot-*.pkl`` as data, never as code.

A snapshot is ``pickle.dump(dict(ema, loss_fn, augment_pipe, dataset_kwargs))``. Each network
module is an EDM "persistent class": it pickles as a call of
``torch_utils.persistence._reconstruct_persistent_obj(meta)``, where ``meta`` holds the class
source (``module_src``, the text of EDM's ``training/networks.py``), ``class_name`` and
``state`` (the module's ``__dict__``: ``_init_kwargs``, ``_parameters``, ``_buffers``,
``_modules``). EDM's own loader ``exec``s ``module_src``; this reader instead resolves the
handful of globals the format needs to inert stand-ins:

====================================================  =====================================
global in the file                                    what this reader makes of it
====================================================  =====================================
``torch_utils.persistence._reconstruct_persistent_obj``  a :class:`PersistentRecord` (data)
``torch.nn.modules.container.ModuleDict``             a :class:`_ModuleDictRecord` (data)
``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter``  a plain tensor
``torch.storage._load_from_bytes``                    ``torch.load(..., weights_only=True)``
``collections.OrderedDict``                           ``OrderedDict``
``numpy.dtype``, ``numpy(._)core.multiarray.scalar``  a Python number (numeric dtypes only)
====================================================  =====================================

Every other global is refused with :class:`UnsafeSnapshotError` before anything is built, and
nothing is ever imported from the file's names. ``module_src`` must hash to a released EDM
``networks.py`` (:data:`KNOWN_NETWORK_SOURCES`): a modified network would be mis-computed by
skiptune's own implementation, so it is refused too.
"""

from __future__ import annotations

import collections
import hashlib
import io
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skiptune.errors import CheckpointError, first_line

__all__ = [
    "KNOWN_NETWORK_SOURCES",
    "TRUSTED_SOURCES_ENV",
    "EDMSnapshot",
    "PersistentRecord",
    "UnsafeSnapshotError",
    "looks_like_edm_snapshot",
    "read_snapshot",
]

KNOWN_NETWORK_SOURCES: dict[str, str] = {
    # SHA-256 of module_src (UTF-8) → where that text was published.
    "2294828d5f59f5fd008f7141e6b8af2095918f2ce019f280a933e4779b5c3cef":
        "NVlabs/edm training/networks.py as first released (35,791 characters; commit 0a2ff34)",
    "5db27dcd96674b95c72d5e6491b879cdc35e24039ada3411b4b46a28ed1fe284":
        "NVlabs/edm training/networks.py (35,832 characters; commits 008a4e5, b2a26c9): the "
        "first text with Conv2d's fused-upsampling padding fixed, a path no EDM preset takes",
}
"""Released texts of EDM's ``training/networks.py``, keyed by the SHA-256 of the text."""

TRUSTED_SOURCES_ENV = "SKIPTUNE_EDM_TRUSTED_SOURCES"
"""Comma-separated extra SHA-256 values of ``module_src`` texts the user vouches for.

The text is never executed whatever its hash; vouching only says that skiptune's own
networks compute what that text computes."""

_PERSISTENCE_MARKER = b"torch_utils.persistence"
_HEAD_BYTES = 1 << 16
_NUMERIC_DTYPES = frozenset(
    {"f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1"}
)


class UnsafeSnapshotError(CheckpointError):
    """The file asks the unpickler for something the EDM snapshot format does not need."""


@dataclass
class PersistentRecord:
    """An EDM persistent object as data: its class name, source text and ``__dict__``."""

    class_name: str
    module_src: str
    state: dict[str, Any]

    @property
    def source_sha256(self) -> str:
        return hashlib.sha256(self.module_src.encode("utf-8")).hexdigest()


class _ModuleDictRecord:
    """A pickled ``torch.nn.ModuleDict`` as data: its ``__dict__`` lands in ``state``."""

    state: dict[str, Any]

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.state = state


class _DTypeRecord:
    """A pickled ``numpy.dtype`` as data: only its type code is kept."""

    def __init__(self, code: object, *_flags: object) -> None:
        if not isinstance(code, str) or code.lstrip("<>=|") not in _NUMERIC_DTYPES:
            raise UnsafeSnapshotError(f"numpy dtype {code!r} is not a plain numeric type")
        self.code = code

    def __setstate__(self, state: object) -> None:
        # The state tuple (byte order, field names...) matters only for structured dtypes,
        # which the code check above already refused.
        self.byte_order = state[1] if isinstance(state, tuple) and len(state) > 1 else "="


def _reconstruct_persistent_obj(meta: object) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise UnsafeSnapshotError("a persistent object's record is not a class record")
    src, name, state = meta.get("module_src"), meta.get("class_name"), meta.get("state")
    if not isinstance(src, str) or not isinstance(name, str) or not isinstance(state, dict):
        raise UnsafeSnapshotError("a persistent object's record lacks its source, name or state")
    return PersistentRecord(class_name=name, module_src=src, state=state)


def _numpy_scalar(dtype: object, data: object) -> int | float | bool:
    if not isinstance(dtype, _DTypeRecord) or not isinstance(data, bytes):
        raise UnsafeSnapshotError("a numpy scalar without a numeric dtype and its bytes")
    order = getattr(dtype, "byte_order", "=")
    code = dtype.code.lstrip("<>=|")
    return np.frombuffer(data, dtype=np.dtype(f"{order if order in '<>' else '='}{code}"))[0].item()


def _load_storage(data: object) -> Any:
    if not isinstance(data, bytes):
        raise UnsafeSnapshotError("a tensor storage that is not bytes")
    storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(storage, torch.TypedStorage):
        raise UnsafeSnapshotError(f"a tensor storage that holds a {type(storage).__name__}")
    return storage


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> torch.Tensor:
    if not isinstance(storage, torch.TypedStorage):
        raise UnsafeSnapshotError("a tensor rebuilt from something other than a typed storage")
    tensor = torch.empty((0,), dtype=storage.dtype)
    return tensor.set_(storage._untyped_storage, int(offset), tuple(size), tuple(stride))


def _rebuild_parameter(data: Any, *_rest: Any) -> torch.Tensor:
    # Hooks and requires_grad are training state; the weights are all that is kept.
    if not torch.is_tensor(data):
        raise UnsafeSnapshotError("a parameter rebuilt from something other than a tensor")
    return data


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("torch.nn.modules.container", "ModuleDict"): _ModuleDictRecord,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("numpy", "dtype"): _DTypeRecord,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,      # numpy < 2
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,     # numpy ≥ 2
}


class _SnapshotUnpickler(pickle.Unpickler):
    """Resolves only :data:`_ALLOWED`; never imports a module named by the file."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafeSnapshotError(
                f"it asks for the global {module}.{name}, which an EDM snapshot does not need "
                "and which could run code"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeSnapshotError("it uses pickle persistent ids, which EDM snapshots do not")


@dataclass(frozen=True)
class EDMSnapshot:
    """What skiptune needs of a snapshot's ``ema`` network.

    Attributes:
        class_name: the preconditioner's class (``EDMPrecond``, ``VPPrecond``...).
        init_kwargs: the keyword arguments it was built with (``model_type``, sizes...).
        init_args: positional arguments it was built with (EDM's code passes none).
        state_dict: dotted names → tensors, as ``nn.Module.state_dict()`` would give.
        source_sha256: SHA-256 of the network source text the file carries.
    """

    class_name: str
    init_kwargs: dict[str, Any]
    init_args: tuple[Any, ...]
    state_dict: dict[str, torch.Tensor]
    source_sha256: str


def looks_like_edm_snapshot(path: Path) -> bool:
    """Whether ``path`` is a plain pickle naming EDM's persistence module near its start."""
    try:
        with path.open("rb") as handle:
            head = handle.read(_HEAD_BYTES)
    except OSError:
        return False
    return head[:1] == b"\x80" and _PERSISTENCE_MARKER in head


def _trusted_sources() -> dict[str, str]:
    extra = os.environ.get(TRUSTED_SOURCES_ENV, "")
    vouched = {h.strip().lower(): f"${TRUSTED_SOURCES_ENV}" for h in extra.split(",")}
    vouched.pop("", None)
    return {**vouched, **KNOWN_NETWORK_SOURCES}


def _unpickle(path: Path) -> Any:
    where = f"EDM snapshot {str(path)!r}"
    try:
        with path.open("rb") as handle:
            return _SnapshotUnpickler(handle).load()
    except UnsafeSnapshotError as e:
        raise UnsafeSnapshotError(f"{where} was refused: {e}; nothing was loaded") from None
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError,
            AttributeError, RuntimeError, KeyError) as e:
        reason = first_line(e)[:160]
        raise CheckpointError(
            f"{where} is truncated or damaged ({reason}); copy or download it again"
        ) from None


def _state_dict(record: PersistentRecord, where: str) -> dict[str, torch.Tensor]:
    """The dotted-name tensors of a record tree, as ``state_dict()`` lists them."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(state: Mapping[str, Any], prefix: str) -> None:
        skipped = state.get("_non_persistent_buffers_set") or set()
        for group in ("_parameters", "_buffers"):
            for name, value in (state.get(group) or {}).items():
                if value is None or (group == "_buffers" and name in skipped):
                    continue
                if not torch.is_tensor(value):
                    raise CheckpointError(f"{where}: {prefix}{name} is not a tensor")
                tensors[prefix + name] = value
        for name, child in (state.get("_modules") or {}).items():
            if child is None:
                continue
            if not isinstance(child, (PersistentRecord, _ModuleDictRecord)):
                raise CheckpointError(
                    f"{where}: submodule {prefix}{name} is a {type(child).__name__}, not an EDM "
                    "network layer"
                )
            walk(child.state, f"{prefix}{name}.")

    walk(record.state, "")
    return tensors


def _check_sources(record: PersistentRecord, where: str) -> None:
    """Every persistent class in the network must come from a known ``networks.py``."""
    known = _trusted_sources()
    pending: list[PersistentRecord | _ModuleDictRecord] = [record]
    while pending:
        current = pending.pop()
        if isinstance(current, PersistentRecord) and current.source_sha256 not in known:
            raise CheckpointError(
                f"{where}: its network code (module_src of {current.class_name}, SHA-256 "
                f"{current.source_sha256}) is not a released NVlabs/edm training/networks.py, "
                "and skiptune would compute a modified network wrongly; if the file is an "
                f"unmodified EDM release, set {TRUSTED_SOURCES_ENV}={current.source_sha256} "
                "(the code is never run either way)"
            )
        modules = (current.state.get("_modules") or {}).values()
        pending.extend(m for m in modules if isinstance(m, (PersistentRecord, _ModuleDictRecord)))


def read_snapshot(path: str | Path) -> EDMSnapshot:
    """Read the ``ema`` network of an EDM snapshot as data.

    Raises:
        UnsafeSnapshotError: the file asks for a global the format does not need.
        CheckpointError: the file is truncated, holds something other than an EDM snapshot,
            has no ``ema`` network, or carries network code that is not a released EDM text.
    """
    path = Path(path)
    try:
        return _snapshot_of(path, _unpickle(path))
    except (AttributeError, TypeError, ValueError) as e:
        # Records whose parts have the wrong types: only a hand-made file gets here.
        raise CheckpointError(
            f"EDM snapshot {str(path)!r} is malformed ({type(e).__name__}: {e}); pass a "
            "network-snapshot-*.pkl written by EDM's training loop"
        ) from None


def _snapshot_of(path: Path, payload: Any) -> EDMSnapshot:
    where = f"EDM snapshot {str(path)!r}"
    if not isinstance(payload, dict):
        raise CheckpointError(
            f"{where} holds a pickled {type(payload).__name__}, not EDM's snapshot dict "
            "(ema, loss_fn, augment_pipe, dataset_kwargs); pass a network-snapshot-*.pkl"
        )
    ema = payload.get("ema")
    if ema is None:
        raise CheckpointError(
            f"{where} has no 'ema' network (keys: {', '.join(map(str, payload)) or 'none'}); "
            "pass a network-snapshot-*.pkl written by EDM's training loop"
        )
    if not isinstance(ema, PersistentRecord):
        raise CheckpointError(
            f"{where}: 'ema' is a {type(ema).__name__}, not an EDM persistent network"
        )
    _check_sources(ema, where)
    kwargs = ema.state.get("_init_kwargs", {})
    args = ema.state.get("_init_args", ())
    if not isinstance(kwargs, dict) or not isinstance(args, (tuple, list)):
        raise CheckpointError(f"{where}: 'ema' does not record how it was constructed")
    return EDMSnapshot(
        class_name=ema.class_name,
        init_kwargs=dict(kwargs),
        init_args=tuple(args),
        state_dict=_state_dict(ema, where),
        source_sha256=ema.source_sha256,
    )
