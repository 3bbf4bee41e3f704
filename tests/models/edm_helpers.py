"""The EDM snapshot fixtures (``$SKIPTUNE_EDM_FIXTURES``) and a writer of EDM-format pickles.

The writer lets a test vary a real snapshot (another class name, other kwargs, another
network source, a payload) and write it back in EDM's exact format. It dumps through a
stand-in ``torch_utils.persistence`` module that exists only while ``pickle`` writes, so
the module is never importable when skiptune reads the file.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from skiptune.models.edm._snapshot import PersistentRecord, _ModuleDictRecord, _unpickle

FIXTURE_NAMES = ("ddpmpp-edm-uncond", "ddpmpp-vp-cond", "adm-edm-cond")
ENV_DIR = "SKIPTUNE_EDM_FIXTURES"
ENV_REQUIRE = "SKIPTUNE_REQUIRE_EDM_FIXTURES"


def _unavailable(message: str) -> NoReturn:
    """Skip the test with ``message``, or fail it where CI requires the fixtures."""
    if os.environ.get(ENV_REQUIRE) == "1":
        pytest.fail(f"{message} ({ENV_REQUIRE}=1)")
    pytest.skip(message)


def fixtures_dir() -> Path:
    """The fixture folder named by $SKIPTUNE_EDM_FIXTURES (CI's set-up sets it); skip the test
    where it is not given or incomplete, fail it where CI requires it."""
    if not os.environ.get(ENV_DIR):
        _unavailable(f"EDM snapshot fixtures not given: set ${ENV_DIR} to their folder")
    folder = Path(os.environ[ENV_DIR])
    missing = [n for n in FIXTURE_NAMES if not (folder / f"{n}.pkl").is_file()]
    if missing:
        _unavailable(f"EDM snapshot fixtures {missing} not found in {folder} (set ${ENV_DIR})")
    return folder


def fixture_path(name: str) -> Path:
    return fixtures_dir() / f"{name}.pkl"


def read_tree(path: Path) -> dict[str, Any]:
    """A snapshot as skiptune reads it: records, ModuleDict records and tensors."""
    return _unpickle(path)


def _reconstruct_persistent_obj(meta: dict[str, Any]) -> Any:   # the stand-in's only name
    raise AssertionError("the stand-in persistence module must never be called")


@contextlib.contextmanager
def _stand_in_persistence() -> Iterator[types.FunctionType]:
    package = types.ModuleType("torch_utils")
    module = types.ModuleType("torch_utils.persistence")
    function = types.FunctionType(
        _reconstruct_persistent_obj.__code__, {}, "_reconstruct_persistent_obj"
    )
    function.__module__ = "torch_utils.persistence"
    function.__qualname__ = "_reconstruct_persistent_obj"
    module._reconstruct_persistent_obj = function
    package.persistence = module
    sys.modules["torch_utils"], sys.modules["torch_utils.persistence"] = package, module
    try:
        yield function
    finally:
        del sys.modules["torch_utils"], sys.modules["torch_utils.persistence"]


class _EDMPickler(pickle.Pickler):
    def __init__(self, handle: Any, reconstruct: types.FunctionType, protocol: int) -> None:
        super().__init__(handle, protocol=protocol)
        self.reconstruct = reconstruct

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, PersistentRecord):
            meta = {"type": "class", "version": 6, "module_src": obj.module_src,
                    "class_name": obj.class_name, "state": obj.state}
            return self.reconstruct, (meta,)
        return NotImplemented


def _as_module_dicts(value: Any) -> Any:
    """The tree with each ModuleDict record turned back into a real ``nn.ModuleDict``, which
    pickles as EDM's files hold it (a NEWOBJ of the class and its ``__dict__``)."""
    if isinstance(value, _ModuleDictRecord):
        from torch import nn

        module_dict = nn.ModuleDict.__new__(nn.ModuleDict)
        module_dict.__dict__.update(_as_module_dicts(value.state))
        return module_dict
    if isinstance(value, PersistentRecord):
        return PersistentRecord(value.class_name, value.module_src, _as_module_dicts(value.state))
    if isinstance(value, dict):
        return type(value)((k, _as_module_dicts(v)) for k, v in value.items())
    return value


def write_edm_pickle(path: Path, payload: Any, *, protocol: int = 4) -> Path:
    """Write ``payload`` (records as :func:`read_tree` returns them) in EDM's format, at pickle
    ``protocol`` (EDM's own files use 4; older tools re-pickle them at 1 to 3)."""
    with _stand_in_persistence() as reconstruct, path.open("wb") as handle:
        _EDMPickler(handle, reconstruct, protocol).dump(_as_module_dicts(payload))
    return path
