"""Issue 24: every input file is read bounded (time and memory) and exactly (types, dtypes).

One test per class of bad input, each with variants: self-referring and shared snapshot
trees; sizes declared in a file that its content does not hold; inputs that are not regular
files or exceed the JSON limits; export fields of the wrong type or range; EDM weights of a
non-real dtype; snapshots re-pickled at older protocols; non-ASCII digits on the command line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from skiptune._files import JSON_MAX_BYTES, JSON_MAX_DEPTH, read_input
from skiptune.errors import ConfigurationError, FileAccessError, SkiptuneError
from skiptune.exported import ExportedSchedule, load_exported
from skiptune.schedule import TuningSchedule
from tests.forked import Command, run_command
from tests.tuner.helpers import DEMO, cli_env


def _one_line(error: pytest.ExceptionInfo[BaseException], *phrases: str) -> str:
    text = str(error.value)
    assert "\n" not in text and len(text) < 600, text
    for phrase in phrases:
        assert phrase in text, text
    return text


def _cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_command(Command(argv, cwd))


def _cli_error(result: subprocess.CompletedProcess[str], *phrases: str) -> str:
    assert result.returncode not in (0, None), result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    return lines[0]


# -- export files: one schema, read strictly ---------------------------------------------------


def _export(**changes: Any) -> dict[str, Any]:
    data = ExportedSchedule(
        schedule=TuningSchedule(rho_bottom=0.6, rho_top=1.0), nfe=5, sampler="heun", value=12.5,
        baseline_value=20.0, metric="fid", num_samples=64, seed=0, model_fingerprint="ab" * 32,
        study="s", schedule_exponent=7.0, rho_factors={"skip0": 0.6, "skip1": 1.0},
    ).to_dict()
    data.update(changes)
    return data


def _write(tmp_path: Path, data: Any, name: str = "rho.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


WRONG_FIELDS = [
    ("nfe", "5"), ("nfe", 5.5), ("nfe", True), ("nfe", 0), ("nfe", None),
    ("seed", -1), ("seed", "0"), ("num_samples", 64.0), ("num_samples", False),
    ("value", "12.5"), ("value", True), ("value", None), ("baseline_value", "20"),
    ("schedule_exponent", 0), ("schedule_exponent", -7), ("schedule_exponent", "7"),
    ("schedule_exponent", False), ("sampler", 3), ("sampler", "heun2"), ("metric", 1),
    ("model_fingerprint", None), ("rho_factors", ["skip0"]), ("rho_factors", {"skip0": "0.6"}),
    ("enable_freeu", {"b1": 1.2}), ("validated", "yes"), ("validated", True),
    ("validation", [1]), ("format_version", "1"), ("format_version", 0), ("study", 5),
    ("unexpected", 1),
]
WRONG_SCHEDULE = [
    ("rho_bottom", True), ("rho_bottom", "0.6"), ("rho_bottom", None), ("rho_top", False),
    ("gamma", "1"), ("shape", 1), ("freeu", {"b1": 1, "b2": 1, "s1": 1, "s2": "1"}),
    ("sigma_lo", "0.1"), ("extra", 1),
]


@pytest.mark.parametrize(("field", "value"), WRONG_FIELDS)
def test_export_fields_of_the_wrong_type_or_range_are_refused_with_the_field_named(
    tmp_path: Path, field: str, value: Any
) -> None:
    path = _write(tmp_path, _export(**{field: value}))
    with pytest.raises(ConfigurationError) as error:
        load_exported(path)
    _one_line(error, str(path), repr(field), "export it again")


@pytest.mark.parametrize(("field", "value"), WRONG_SCHEDULE)
def test_export_schedule_fields_of_the_wrong_type_are_refused_with_the_field_named(
    tmp_path: Path, field: str, value: Any
) -> None:
    data = _export()
    data["schedule"][field] = value
    with pytest.raises(ConfigurationError) as error:
        load_exported(_write(tmp_path, data))
    _one_line(error, f"'schedule.{field}'")


@pytest.mark.parametrize("field", ["nfe", "sampler", "value", "seed", "schedule"])
def test_export_missing_required_field_is_named(tmp_path: Path, field: str) -> None:
    data = _export()
    del data[field]
    with pytest.raises(ConfigurationError) as error:
        load_exported(_write(tmp_path, data))
    _one_line(error, f"lacks field {field!r}")


def test_export_written_by_skiptune_reads_back_exactly(tmp_path: Path) -> None:
    data = _export(schedule_exponent=3)
    found = load_exported(_write(tmp_path, data))
    assert (found.nfe, found.sampler, found.seed, found.num_samples) == (5, "heun", 0, 64)
    assert found.schedule_exponent == 3.0 and found.schedule.rho_bottom == 0.6
    # Older files lack the optional fields: they still read.
    for optional in ("schedule_exponent", "rho_factors", "validation", "validated",
                     "enable_freeu", "baseline_value", "study", "skiptune_version"):
        del data[optional]
    assert load_exported(_write(tmp_path, data)).schedule_exponent is None


JSON_BEYOND_LIMITS = {
    "deep": ("[" * 200_000 + "]" * 200_000, "nests 200,000 levels deep"),
    "deep_objects": ('{"a":' * (JSON_MAX_DEPTH + 1) + "1" + "}" * (JSON_MAX_DEPTH + 1),
                     f"(at most {JSON_MAX_DEPTH})"),
    "long_integer": ('{"nfe": ' + "9" * 5000 + "}", "a number 5,000 characters long"),
    "long_float": ('{"value": 0.' + "1" * 300 + "}", "a number 302 characters long"),
    "nan": ('{"value": NaN}', "NaN is not a JSON number"),
    "infinity": ('{"value": -Infinity}', "-Infinity is not a JSON number"),
    "repeated_key": ('{"nfe": 5, "nfe": 9}', "key 'nfe' appears twice"),
    "huge": (" " * (JSON_MAX_BYTES + 1) + "{}", f"larger than the {JSON_MAX_BYTES:,} bytes"),
}


@pytest.mark.parametrize("case", sorted(JSON_BEYOND_LIMITS))
def test_export_json_beyond_the_documented_limits_is_one_line(tmp_path: Path, case: str) -> None:
    text, phrase = JSON_BEYOND_LIMITS[case]
    path = _write(tmp_path, text)
    with pytest.raises(SkiptuneError) as error:
        load_exported(path)
    _one_line(error, phrase, "pass a file written by skiptune export")


# -- inputs that are not regular files ---------------------------------------------------------


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "fifo"])
def test_inputs_that_are_not_regular_files_are_refused_before_reading(
    tmp_path: Path, device: str
) -> None:
    import os

    if device == "fifo":
        device = str(tmp_path / "pipe")
        os.mkfifo(device)     # opening it for reading would block until a writer came
    with pytest.raises(FileAccessError) as error:
        read_input(device, what="model file", fix="pass a checkpoint")
    _one_line(error, "is not a regular file", "pass a checkpoint")
    with pytest.raises(FileAccessError):
        load_exported(device)


@pytest.mark.slow
def test_cli_refuses_devices_and_hostile_json_in_one_line(tmp_path: Path) -> None:
    deep = _write(tmp_path, "[" * 200_000 + "]" * 200_000, "deep.json")
    digits = _write(tmp_path, '{"nfe": ' + "7" * 5000 + "}", "digits.json")
    grid = ("-o", str(tmp_path / "g.png"), "-n", "1", "--device", "cpu")
    _cli_error(_cli("sample", "--model", "/dev/zero", *grid, cwd=tmp_path),
               "is not a regular file")
    for path, phrase in ((deep, "nests 200,000 levels deep"), (digits, "5,000 characters")):
        _cli_error(_cli("sample", "--model", str(DEMO), "--from", str(path), *grid,
                        cwd=tmp_path), phrase)
    _cli_error(_cli("sample", "--model", str(DEMO), "--from", "/dev/zero", *grid, cwd=tmp_path),
               "is not a regular file")
    assert not (tmp_path / "g.png").exists()


# -- EDM snapshots: bounded walks, declared sizes, weight dtypes, older protocols ---------------


class _Reduce:
    """Pickles as ``function(*args)``: how a test writes a record the way a crafted file would."""

    def __init__(self, function: Any, *args: Any) -> None:
        self.function, self.args = function, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.function, self.args


def _tree(name: str = "adm-edm-cond") -> dict[str, Any]:
    """A fixture snapshot as records, converted so that any part may be replaced."""
    from tests.models.edm_helpers import _as_module_dicts, fixture_path, read_tree

    return {"ema": _as_module_dicts(read_tree(fixture_path(name)))["ema"]}


def _dump(path: Path, tree: Any, protocol: int = 4) -> Path:
    from tests.models.edm_helpers import _EDMPickler, _stand_in_persistence

    with _stand_in_persistence() as reconstruct, path.open("wb") as handle:
        _EDMPickler(handle, reconstruct, protocol).dump(tree)
    return path


def _module_dict(modules: dict[str, Any]) -> Any:
    from torch import nn

    module_dict = nn.ModuleDict.__new__(nn.ModuleDict)
    module_dict.__dict__.update({"training": False, "_parameters": {}, "_buffers": {},
                                 "_modules": modules})
    return module_dict


def _refusal(path: Path, *phrases: str, seconds: int = 60) -> str:
    """load_model's one-line CheckpointError for ``path``, within ``seconds`` (not a hang)."""
    import signal

    from skiptune.errors import CheckpointError
    from skiptune.models import load_model

    def hang(_signum: int, _frame: Any) -> None:
        raise TimeoutError(f"reading {path.name} took over {seconds} s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        with pytest.raises(CheckpointError) as error:
            load_model(path, device="cpu")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return _one_line(error, str(path), *phrases)


MARKER = "CRAFTED_MARKER"


def _append_item(path: Path, key: str, value_opcodes: bytes) -> None:
    """Before the pickle's STOP, set ``key`` to the value ``value_opcodes`` push in the dict
    that holds :data:`MARKER` as its last key: what a crafted file can say and a pickler
    cannot write (an object inside its own reduce arguments, a 100,000-deep list)."""
    import pickletools

    data = path.read_bytes()
    ops = list(pickletools.genops(data))
    memo = [pos for op, _arg, pos in ops if op.name == "MEMOIZE"]
    marker = next(pos for _op, arg, pos in ops if arg == MARKER)
    opened = max(pos for op, _arg, pos in ops if op.name == "EMPTY_DICT" and pos < marker)
    container = next(i for i, pos in enumerate(memo) if pos > opened)
    encoded = key.encode()
    tail = (b"j" + container.to_bytes(4, "little")                  # LONG_BINGET the dict
            + b"\x8c" + bytes([len(encoded)]) + encoded + value_opcodes + b"s0")  # SETITEM, POP
    stop = ops[-1][2]
    path.write_bytes(data[:stop] + tail + data[stop:])


def _last_memo(path: Path) -> int:
    import pickletools

    return sum(op.name == "MEMOIZE" for op, _arg, _pos in pickletools.genops(path.read_bytes())) - 1


def test_snapshot_trees_that_refer_to_themselves_or_share_a_subtree_are_refused_quickly(
    tmp_path: Path,
) -> None:
    # A ModuleDict listed in its own _modules.
    tree = _tree()
    loop = _module_dict({})
    loop.__dict__["_modules"]["itself"] = loop
    tree["ema"].state["_modules"]["model"].state["_modules"]["loop"] = loop
    _refusal(_dump(tmp_path / "self.pkl", tree), "contains itself (a cycle)", "model.loop.itself")

    # The network listed inside itself (ema is memoized last: the payload holds only it).
    tree = _tree()
    tree["ema"].state["_modules"]["holder"] = _module_dict({MARKER: None})
    path = _dump(tmp_path / "ema.pkl", tree)
    _append_item(path, "again", b"j" + _last_memo(path).to_bytes(4, "little"))
    _refusal(path, "contains itself (a cycle)", "holder.again")

    # Shared trees, each level listing the next twice: 20 levels (2^20 paths, 21 nodes)
    # meet a repeat first, 60 levels the depth limit first.
    for levels, phrase in ((20, "is also shared.a"), (60, "nest deeper than 32 levels")):
        node = _module_dict({})
        for _level in range(levels):
            node = _module_dict({"a": node, "b": node})
        tree = _tree()
        tree["ema"].state["_modules"]["shared"] = node
        _refusal(_dump(tmp_path / f"shared{levels}.pkl", tree), phrase)


def test_snapshot_arguments_that_nest_or_repeat_without_end_are_refused(tmp_path: Path) -> None:
    shared: list[Any] = [1]
    for _level in range(60):
        shared = [shared, shared]
    tree = _tree()
    tree["ema"].state["_init_kwargs"]["channel_mult"] = shared
    _refusal(_dump(tmp_path / "shared.pkl", tree), "nest deeper than 32 levels or repeat")

    for name, value in (("deep", b"]" * 100_000 + b"a" * 99_999),    # lists 100,000 deep
                        ("cycle", b"")):
        tree = _tree()
        tree["ema"].state["_init_kwargs"][MARKER] = None
        path = _dump(tmp_path / f"{name}.pkl", tree)
        if name == "cycle":     # a list that holds itself: EMPTY_LIST, MEMOIZE, GET it, APPEND
            index = _last_memo(path) + 1
            value = b"]\x94j" + index.to_bytes(4, "little") + b"a"
        _append_item(path, "channel_mult", value)
        _refusal(path, "nest deeper than 32 levels or repeat")


def _storage_bytes(values: Any, *, declared: int | None = None, header: int | None = None,
                   body: bytes | None = None) -> bytes:
    """The bytes torch pickles a storage of ``values`` as (its legacy torch.save format), with
    the element count in its record (``declared``), in its 8-byte header, or its elements
    (``body``) replaced as a crafted file would."""
    import io
    import pickle
    import pickletools
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")           # TypedStorage is deprecated
        genuine = values.storage().__reduce__()[1][0]
    stream = io.BytesIO(genuine)
    for _part in range(3):                         # magic, version, system info
        for _op in pickletools.genops(stream):
            pass
    prefix = genuine[: stream.tell()]
    count = values.numel()
    pid = ("storage", torch.FloatStorage, "0", "cpu", count if declared is None else declared,
           None)
    record = io.BytesIO()
    pickler = pickle.Pickler(record, protocol=2)
    pickler.persistent_id = lambda obj: pid if obj is pickler else None   # type: ignore[method-assign]
    pickler.dump(pickler)
    raw = values.numpy().tobytes() if body is None else body
    return (prefix + record.getvalue() + pickle.dumps(["0"], protocol=2)
            + (count if header is None else header).to_bytes(8, "little") + raw)


def _tensor_from(data: bytes, shape: tuple[int, ...]) -> _Reduce:
    import collections

    import torch

    storage = _Reduce(torch.storage._load_from_bytes, data)
    return _Reduce(torch._utils._rebuild_tensor_v2, storage, 0, shape, (1,) * len(shape),
                   False, collections.OrderedDict())


_BOUNDED_LOADER = """
import resource, sys
from skiptune.errors import SkiptuneError
from skiptune.models import load_model
load_model(sys.argv[1], device="cpu")                      # warm: every module imported
size = int(next(line for line in open("/proc/self/status")
                if line.startswith("VmSize")).split()[1]) * 1024
limit = size + (1 << 30)                                     # 1 GiB beyond what is mapped
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
for path in sys.argv[2:]:
    try:
        load_model(path, device="cpu")
        print("LOADED", path)
    except SkiptuneError as e:
        print("REFUSED", e)
    except MemoryError:
        print("OUT OF MEMORY", path)
"""


@pytest.mark.slow
def test_memory_stays_bounded_by_the_snapshot_not_by_what_it_declares(tmp_path: Path) -> None:
    import torch

    from tests.models.edm_helpers import fixture_path

    variants: dict[str, tuple[Any, str]] = {}

    def widen(tree: dict[str, Any]) -> None:    # 1.9 MB describing a network of gigabytes
        tree["ema"].state["_init_kwargs"]["model_channels"] = 4096

    def deepen(tree: dict[str, Any]) -> None:   # a million blocks: building alone never ends
        tree["ema"].state["_init_kwargs"]["num_blocks"] = 1_000_000

    def huge_storage(tree: dict[str, Any]) -> None:   # 16 bytes declared as 4 GiB
        data = _storage_bytes(torch.zeros(4), declared=1 << 30, header=1 << 30)
        tree["ema"].state["_buffers"]["crafted"] = _tensor_from(data, (4,))

    def short_header(tree: dict[str, Any]) -> None:   # the record and the header disagree
        data = _storage_bytes(torch.zeros(4), header=1 << 30)
        tree["ema"].state["_buffers"]["crafted"] = _tensor_from(data, (4,))

    def shared_bytes(tree: dict[str, Any]) -> None:   # one 4 MB storage's bytes loaded 4 times
        data = _storage_bytes(torch.zeros(1 << 20))
        for i in range(4):
            tree["ema"].state["_buffers"][f"crafted{i}"] = _tensor_from(data, (1 << 20,))

    def stretched(tree: dict[str, Any]) -> None:     # 4 elements standing for 2^30 (stride 0)
        import collections

        storage = _Reduce(torch.storage._load_from_bytes, _storage_bytes(torch.zeros(4)))
        tree["ema"].state["_buffers"]["crafted"] = _Reduce(
            torch._utils._rebuild_tensor_v2, storage, 0, (1 << 30,), (0,), False,
            collections.OrderedDict())

    variants = {
        "wide": (widen, "do not fit the network its kwargs describe"),
        "deep": (deepen, "describe a network of more than"),
        "huge_storage": (huge_storage, "declares 1,073,741,824 elements of FloatStorage"),
        "short_header": (short_header, "declares 4 elements of FloatStorage (16 bytes) but holds"),
        "shared_bytes": (shared_bytes, "bytes but the file holds only"),
        "stretched": (stretched, "declares 1,073,741,824 elements from offset 0"),
    }
    paths = []
    for name, (change, _phrase) in variants.items():
        tree = _tree()
        change(tree)
        paths.append(str(_dump(tmp_path / f"{name}.pkl", tree)))
    # A pickle declaring 8 GiB of bytes in a file of 40: Python's unpickler would allocate it.
    declared = tmp_path / "declared.pkl"
    declared.write_bytes(b"\x80\x04\x8e" + (8 << 30).to_bytes(8, "little")
                         + b"torch_utils.persistence" + b"\x00" * 8)
    paths.append(str(declared))
    result = subprocess.run(
        [sys.executable, "-c", _BOUNDED_LOADER, str(fixture_path("ddpmpp-vp-cond")), *paths],
        env=cli_env(), capture_output=True, text=True, timeout=300)
    lines = result.stdout.splitlines()
    assert result.returncode == 0 and len(lines) == len(paths), result.stdout + result.stderr
    phrases = [phrase for _change, phrase in variants.values()] + ["truncated or damaged"]
    for path, line, phrase in zip(paths, lines, phrases, strict=True):
        assert line.startswith("REFUSED") and path in line and phrase in line, line


@pytest.mark.parametrize("dtype", ["int64", "complex64", "bool", "int8"])
def test_edm_weights_of_a_type_that_is_not_real_floating_point_are_refused(
    tmp_path: Path, dtype: str
) -> None:
    import warnings

    import torch

    tree = _tree()
    conv = tree["ema"].state["_modules"]["model"].state["_modules"]["out_conv"]
    conv.state["_parameters"]["weight"] = conv.state["_parameters"]["weight"].to(
        getattr(torch, dtype))
    path = _dump(tmp_path / f"{dtype}.pkl", tree)
    with warnings.catch_warnings():
        warnings.simplefilter("error")         # no "imaginary part discarded" on the way
        _refusal(path, f"model.out_conv.weight is {dtype}, not torch.float32",
                 "real floating-point")


@pytest.mark.parametrize("protocol", [0, 1, 2, 3])
def test_genuine_snapshot_re_pickled_at_an_older_protocol_reads_the_same(
    tmp_path: Path, protocol: int
) -> None:
    from skiptune.models import load_model
    from tests.models.edm_helpers import fixture_path, read_tree, write_edm_pickle

    for name in ("adm-edm-cond", "ddpmpp-vp-cond"):
        path = write_edm_pickle(tmp_path / f"{name}-{protocol}.pkl",
                                read_tree(fixture_path(name)), protocol=protocol)
        assert load_model(path, device="cpu").fingerprint == \
            load_model(fixture_path(name), device="cpu").fingerprint


def test_older_protocol_stand_ins_still_refuse_what_runs_code(tmp_path: Path) -> None:
    import codecs

    from skiptune.models.edm import UnsafeSnapshotError
    from tests.models.edm_helpers import write_edm_pickle

    tree = _tree()
    tree["dataset_kwargs"] = {"name": _Reduce(codecs.encode, "payload", "rot13")}
    path = write_edm_pickle(tmp_path / "rot13.pkl", tree, protocol=2)
    with pytest.raises(UnsafeSnapshotError) as error:
        _refusal_free_load(path)
    _one_line(error, "latin-1")


def _refusal_free_load(path: Path) -> None:
    from skiptune.models import load_model

    load_model(path, device="cpu")


@pytest.mark.parametrize("text", ["٣", "３", "1,٣", "1_0", "²", "3.0", "0x3"])
def test_integer_options_accept_ascii_digits_only(text: str) -> None:
    import typer

    from skiptune.cli import _ints

    with pytest.raises(typer.BadParameter) as error:
        _ints(text, name="--class-labels")
    assert "expected whole numbers" in str(error.value)
    assert _ints(" 1, 5 ,7", name="--class-labels") == (1, 5, 7)
    assert _ints("-1", name="--class-labels") == (-1,)      # the library names the range


def test_checkpoint_archive_entries_that_unpack_beyond_the_file_are_refused(
    tmp_path: Path,
) -> None:
    import zipfile

    from skiptune.errors import CheckpointError
    from skiptune.models import load_model

    genuine = zipfile.ZipFile(DEMO)
    largest = max(genuine.infolist(), key=lambda entry: entry.file_size)
    for name, method in (("deflated", zipfile.ZIP_DEFLATED), ("bzip2", zipfile.ZIP_BZIP2)):
        path = tmp_path / f"{name}.pt"
        with zipfile.ZipFile(path, "w") as crafted:
            for entry in genuine.infolist():
                crafted.writestr(entry.filename, genuine.read(entry.filename),
                                 compress_type=method if entry is largest else zipfile.ZIP_STORED)
        with pytest.raises(CheckpointError) as error:
            load_model(path, device="cpu")
        _one_line(error, str(path), repr(largest.filename), "torch.save stores entries "
                  "uncompressed")
    assert load_model(DEMO, device="cpu").family == "skiptune"
