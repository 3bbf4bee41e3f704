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
``builtins.set`` / ``frozenset``                      ``set`` / ``frozenset`` (protocols 0-3)
``_codecs.encode``                                    latin-1 ``bytes`` (protocols 0-2)
``copyreg._reconstructor``, ``builtins.object``       a ModuleDict record (protocols 0-1)
====================================================  =====================================

Every length and size the file declares is checked against the bytes present before it is
allocated (pickle lengths, storage element counts, tensor extents, the weights' total), and
the record tree is walked once, depth-limited, refusing cycles and shared layers.

Every other global is refused with :class:`UnsafeSnapshotError` before anything is built, and
nothing is ever imported from the file's names. ``module_src`` must hash to a released EDM
``networks.py`` (:data:`KNOWN_NETWORK_SOURCES`): a modified network would be mis-computed by
skiptune's own implementation, so it is refused too.
"""

from __future__ import annotations

import collections
import hashlib
import io
import math
import os
import pickle
import pickletools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from skiptune._files import read_input
from skiptune.downloads import bad_file_fix
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


class _ObjectBase:
    """Stands for ``builtins.object`` in a protocol 0-1 pickle: only ``copyreg._reconstructor``
    accepts it (as the base of a ModuleDict); it cannot be called."""


_OBJECT = _ObjectBase()


def _reconstructor(cls: object, base: object, state: object) -> _ModuleDictRecord:
    # How protocols 0 and 1 pickle an object without __reduce__: object.__new__(cls), then
    # its __dict__ through BUILD. Only a ModuleDict takes this path in an EDM snapshot.
    if cls is not _ModuleDictRecord or base is not _OBJECT or state is not None:
        raise UnsafeSnapshotError("it rebuilds an object other than a ModuleDict by copyreg")
    return _ModuleDictRecord()


def _latin1_bytes(text: object, encoding: object = "latin1") -> bytes:
    # Protocols 0-2 have no bytes opcode: bytes pickle as _codecs.encode(text, 'latin1').
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafeSnapshotError("it encodes something other than latin-1 text as bytes")
    return text.encode("latin-1")


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


def _check_declared_lengths(stream: IO[bytes]) -> None:
    """Walk one pickle's opcodes from ``stream`` (running none), so that every length it
    declares (of bytes, strings, numbers, frames) is checked against the bytes that follow:
    Python's own unpickler allocates a declared length before reading it."""
    for _opcode, _arg, _position in pickletools.genops(stream):
        pass


_LEGACY_STORAGE_ITEMSIZE = {
    "DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2,
    "LongStorage": 8, "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1,
    "BoolStorage": 1, "ComplexFloatStorage": 8, "ComplexDoubleStorage": 16,
}
"""Bytes per element of the storage classes torch's legacy format names."""


class _StorageHeaderReader(pickle.Unpickler):
    """Reads the small pickles that head a legacy-format storage: names resolve to strings."""

    declared: tuple[Any, ...] = ()

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _LEGACY_STORAGE_ITEMSIZE:
            return name
        raise UnsafeSnapshotError(
            f"a tensor storage asks for the global {module}.{name}, which could run code"
        )

    def persistent_load(self, pid: Any) -> Any:
        self.declared = pid if isinstance(pid, tuple) else ()


def _check_storage_bytes(data: bytes) -> None:
    """A storage pickles as ``torch.save(storage)`` in torch's legacy format: five small
    pickles (magic, version, system info, the storage's persistent id with its element count,
    its key), an 8-byte element count, then the elements. torch allocates the declared count
    before reading, so both counts must equal what the bytes hold."""
    stream = io.BytesIO(data)
    reader = _StorageHeaderReader(stream)
    for _part in range(5):
        start = stream.tell()
        _check_declared_lengths(stream)
        stream.seek(start)
        keys = reader.load()
    pid = reader.declared
    if len(pid) < 5 or pid[0] != "storage" or pid[1] not in _LEGACY_STORAGE_ITEMSIZE \
            or not isinstance(pid[4], int) or keys != [pid[2]]:
        raise CheckpointError("a tensor storage without the record torch.save writes for it")
    kind, count = pid[1], pid[4]
    header = stream.read(8)
    body = len(data) - stream.tell()
    if len(header) != 8 or int.from_bytes(header, "little") != count or \
            count * _LEGACY_STORAGE_ITEMSIZE[kind] != body:
        raise CheckpointError(
            f"a tensor storage declares {count:,} elements of {kind} "
            f"({count * _LEGACY_STORAGE_ITEMSIZE[kind]:,} bytes) but holds {max(body, 0):,} bytes"
        )


def _load_storage(data: object) -> Any:
    if not isinstance(data, bytes):
        raise UnsafeSnapshotError("a tensor storage that is not bytes")
    _check_storage_bytes(data)
    storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(storage, torch.TypedStorage):
        raise UnsafeSnapshotError(f"a tensor storage that holds a {type(storage).__name__}")
    return storage


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> torch.Tensor:
    if not isinstance(storage, torch.TypedStorage):
        raise UnsafeSnapshotError("a tensor rebuilt from something other than a typed storage")
    shape, steps = _dimensions(size, "size"), _dimensions(stride, "stride")
    if len(shape) != len(steps) or not (isinstance(offset, int) and offset >= 0):
        raise CheckpointError("a tensor with a negative offset or a stride per dimension missing")
    # Elements present, not merely addressable: a zero stride would let a one-element storage
    # stand for a tensor of any size, which the network built from it would then allocate.
    numel = math.prod(shape)
    last = offset + sum((n - 1) * k for n, k in zip(shape, steps, strict=True))
    if numel and (numel > storage._size() - offset or last >= storage._size()):
        raise CheckpointError(
            f"a tensor of shape {list(shape)} declares {numel:,} elements from offset {offset:,} "
            f"but its storage holds {storage._size():,}"
        )
    tensor = torch.empty((0,), dtype=storage.dtype)
    return tensor.set_(storage._untyped_storage, offset, shape, steps)


def _dimensions(values: Any, what: str) -> tuple[int, ...]:
    if not isinstance(values, tuple) or len(values) > 16 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values
    ):
        raise CheckpointError(f"a tensor whose {what} is not a short tuple of whole numbers ≥ 0")
    return values


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
    # What the same snapshot needs once re-pickled at protocol 0-3, which name these by
    # their Python 2 modules (an overridden find_class sees the names as written):
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "frozenset"): frozenset,
    ("builtins", "object"): _OBJECT,
    ("__builtin__", "object"): _OBJECT,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("copy_reg", "_reconstructor"): _reconstructor,
    ("_codecs", "encode"): _latin1_bytes,
}


class _SnapshotUnpickler(pickle.Unpickler):
    """Resolves only :data:`_ALLOWED`; never imports a module named by the file.

    A storage's bytes referenced by several records (the pickle memo allows it) are loaded
    once: the tensors share one storage, so memory stays bounded by the bytes in the file.
    """

    def __init__(self, handle: IO[bytes]) -> None:
        super().__init__(handle)
        self._storages: dict[int, tuple[object, Any]] = {}

    def _storage_once(self, data: object) -> Any:
        cached = self._storages.get(id(data))
        if cached is not None and cached[0] is data:
            return cached[1]
        storage = _load_storage(data)
        self._storages[id(data)] = (data, storage)    # holds data: its id stays unique
        return storage

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return self._storage_once
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
    """Whether ``path`` is a pickle of a dict naming EDM's persistence module near its start."""
    try:
        with path.open("rb") as handle:
            head = handle.read(_HEAD_BYTES)
    except OSError:
        return False
    # Protocol 2 and later open with PROTO (0x80); a snapshot re-pickled at protocol 0 or 1
    # opens with its dict: MARK then DICT, or EMPTY_DICT.
    return head[:1] in (b"\x80", b"(", b"}") and _PERSISTENCE_MARKER in head


def _trusted_sources() -> dict[str, str]:
    extra = os.environ.get(TRUSTED_SOURCES_ENV, "")
    vouched = {h.strip().lower(): f"${TRUSTED_SOURCES_ENV}" for h in extra.split(",")}
    vouched.pop("", None)
    return {**vouched, **KNOWN_NETWORK_SOURCES}


def _unpickle(path: Path) -> Any:
    where = f"EDM snapshot {str(path)!r}"
    fix = bad_file_fix(path, "copy or download it again")
    data = read_input(path, what="EDM snapshot", fix="pass a network-snapshot-*.pkl")
    try:
        _check_declared_lengths(io.BytesIO(data))
        return _SnapshotUnpickler(io.BytesIO(data)).load()
    except UnsafeSnapshotError as e:
        raise UnsafeSnapshotError(f"{where} was refused: {e}; nothing was loaded") from None
    except CheckpointError as e:
        raise CheckpointError(
            f"{where} is damaged or hand-made: {e}; {fix}"
        ) from None
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError,
            AttributeError, RuntimeError, KeyError) as e:
        reason = first_line(e)[:160]
        raise CheckpointError(
            f"{where} is truncated or damaged ({reason}); {fix}"
        ) from e


_MAX_DEPTH = 32
"""Deepest nesting of records (network → block → layer...) and of recorded arguments;
EDM's networks nest 4 deep, their arguments 2."""


_Record = PersistentRecord | _ModuleDictRecord


def _records(record: PersistentRecord, where: str) -> Iterator[tuple[str, _Record]]:
    """Every record of the network tree once, as (dotted prefix, record), depth first.

    A record listed inside itself (a cycle) or under two names (a shared, possibly
    exponentially repeated subtree) is refused: EDM networks are trees.
    """
    seen: dict[int, str] = {}
    pending: list[tuple[str, _Record, tuple[int, ...]]] = [("", record, ())]
    while pending:
        prefix, current, path = pending.pop()
        name = prefix.rstrip(".") or "the network"
        if id(current) in path:
            raise CheckpointError(
                f"{where}: submodule {name} contains itself (a cycle); an EDM network is a tree"
            )
        if id(current) in seen:
            raise CheckpointError(
                f"{where}: submodule {name} is also {seen[id(current)]}; an EDM network never "
                "lists one layer twice"
            )
        if len(path) > _MAX_DEPTH:
            raise CheckpointError(f"{where}: submodules nest deeper than {_MAX_DEPTH} levels")
        seen[id(current)] = name
        yield prefix, current
        # A _modules that is not a mapping fails here (AttributeError): read_snapshot names
        # the file as malformed.
        modules = current.state.get("_modules") or {}
        for child_name, child in reversed(list(modules.items())):
            if child is None:
                continue
            if not isinstance(child, (PersistentRecord, _ModuleDictRecord)):
                raise CheckpointError(
                    f"{where}: submodule {prefix}{child_name} is a {type(child).__name__}, not "
                    "an EDM network layer"
                )
            pending.append((f"{prefix}{child_name}.", child, (*path, id(current))))


def _check_plain(value: Any, where: str) -> None:
    """Recorded arguments are plain data (numbers, strings, lists, dicts), a finite tree of
    bounded depth: no container inside itself or repeated, which later copies would expand."""
    seen: set[int] = set()
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        current, depth = pending.pop()
        if current is None or isinstance(current, (bool, int, float, str)):
            continue
        if not isinstance(current, (list, tuple, dict)):
            raise CheckpointError(
                f"{where}: its recorded arguments hold a {type(current).__name__}, not plain data"
            )
        if depth > _MAX_DEPTH or (current and id(current) in seen):
            raise CheckpointError(
                f"{where}: its recorded arguments nest deeper than {_MAX_DEPTH} levels or "
                "repeat a list or dict inside themselves"
            )
        seen.add(id(current))
        items = list(current.items()) if isinstance(current, dict) else list(current)
        if isinstance(current, dict) and not all(isinstance(k, str) for k in current):
            raise CheckpointError(f"{where}: its recorded arguments have a key that is not text")
        pending.extend((v[1] if isinstance(current, dict) else v, depth + 1) for v in items)


def _state_dict(record: PersistentRecord, where: str) -> dict[str, torch.Tensor]:
    """The dotted-name tensors of a record tree, as ``state_dict()`` lists them."""
    tensors: dict[str, torch.Tensor] = {}
    for prefix, current in _records(record, where):
        state = current.state
        skipped = state.get("_non_persistent_buffers_set") or set()
        for group in ("_parameters", "_buffers"):
            for name, value in (state.get(group) or {}).items():
                if value is None or (group == "_buffers" and name in skipped):
                    continue
                if not torch.is_tensor(value):
                    raise CheckpointError(f"{where}: {prefix}{name} is not a tensor")
                tensors[prefix + name] = value
    return tensors


def _check_sources(record: PersistentRecord, where: str) -> None:
    """Every persistent class in the network must come from a known ``networks.py``."""
    known = _trusted_sources()
    for _prefix, current in _records(record, where):
        if isinstance(current, PersistentRecord) and current.source_sha256 not in known:
            raise CheckpointError(
                f"{where}: its network code (module_src of {current.class_name}, SHA-256 "
                f"{current.source_sha256}) is not a released NVlabs/edm training/networks.py, "
                "and skiptune would compute a modified network wrongly; if the file is an "
                f"unmodified EDM release, set {TRUSTED_SOURCES_ENV}={current.source_sha256} "
                "(the code is never run either way)"
            )


def _check_total_size(tensors: Mapping[str, torch.Tensor], path: Path, where: str) -> None:
    """The weights cannot hold more bytes than the file: storages shared between tensors
    would otherwise let a small file stand for a large network."""
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    size = path.stat().st_size
    if total > size:
        raise CheckpointError(
            f"{where}: its network's weights declare {total:,} bytes but the file holds only "
            f"{size:,}; the file is damaged or hand-made"
        )


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
        ) from e


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
    _check_plain([kwargs, args], where)
    tensors = _state_dict(ema, where)
    _check_total_size(tensors, path, where)
    return EDMSnapshot(
        class_name=ema.class_name,
        init_kwargs=dict(kwargs),
        init_args=tuple(args),
        state_dict=tensors,
        source_sha256=ema.source_sha256,
    )
