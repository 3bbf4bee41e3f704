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
from skiptune.schedule import RhoSchedule
from tests.tuner.helpers import DEMO, cli_env


def _one_line(error: pytest.ExceptionInfo[BaseException], *phrases: str) -> str:
    text = str(error.value)
    assert "\n" not in text and len(text) < 600, text
    for phrase in phrases:
        assert phrase in text, text
    return text


def _cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "skiptune.cli", *argv], cwd=cwd,
                          env=cli_env(), capture_output=True, text=True, timeout=240)


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
        schedule=RhoSchedule(rho_bottom=0.6, rho_top=1.0), nfe=5, sampler="heun", value=12.5,
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
