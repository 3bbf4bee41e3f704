"""Library errors name what a Python caller passes; the command line names its flags.

A caller of ``load_model``, ``open_storage``, ``build_objective`` or ``load_exported`` never
typed ``--device`` or ``--db``: the library's message names the keyword or configuration
field (``error.fields``), and the command line, which catches the same error at its edge,
spells each one as its flag. A static check keeps ``--flag`` text out of every message the
library raises.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

from skiptune import cli
from skiptune.errors import ConfigurationError, SkiptuneError, StorageError
from skiptune.exported import ExportedSchedule, load_exported
from skiptune.models import TunableModel, load_model
from skiptune.objectives import ObjectiveConfig, build_objective
from skiptune.schedule import TuningSchedule
from skiptune.storage import open_storage
from tests.tuner.helpers import DEMO, cli_env

PACKAGE = Path(__file__).resolve().parents[1] / "skiptune"
FLAG = re.compile(r"(?<![\w-])--[a-z]")


def _cli_error(*argv: str) -> str:
    """The one stderr line of ``python -m skiptune.cli ARGV``, which must fail cleanly."""
    result = subprocess.run([sys.executable, "-m", "skiptune.cli", *argv], env=cli_env(),
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0].removeprefix("error: ")


def _library_error(error: SkiptuneError, *fields: str) -> str:
    text = str(error)
    assert error.fields == fields
    assert "--" not in text and "\n" not in text, text
    for field in fields:
        assert field in text, text
    return text


# -- the same failure, from Python and from the command line ---------------------------------


def test_a_device_the_machine_cannot_use_names_the_keyword_then_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_model(DEMO, device="meta")
    text = _library_error(info.value, "device")
    assert text.endswith("use device cpu, cuda, cuda:N or mps (or leave it out: the GPU if "
                         "there is one)")
    line = _cli_error("sample", "--model", str(DEMO), "--device", "meta",
                      "-o", str(tmp_path / "x.png"))
    assert line == text.replace("use device cpu", "use --device cpu")
    assert line.startswith("device 'meta' cannot run a model here")


def test_a_database_that_is_a_folder_names_db_then_the_flag(tmp_path: Path) -> None:
    with pytest.raises(StorageError) as info:
        open_storage(tmp_path, read_only=True)
    text = _library_error(info.value, "db")
    assert text == f"db {str(tmp_path)!r} is a folder; pass a file path such as skiptune.db"
    assert info.value.__cause__ is None      # nothing foreign to chain
    line = _cli_error("studies", "--db", str(tmp_path))
    assert line == f"--db {str(tmp_path)!r} is a folder; pass a file path such as skiptune.db"


def test_a_model_without_a_reference_names_the_objective_fields(
    demo_model: TunableModel,
) -> None:
    bare = dataclasses.replace(demo_model, reference=None)
    config = ObjectiveConfig(sampler="heun", nfe=9, rungs=(8,), batch_size=8)
    with pytest.raises(ConfigurationError) as info:
        build_objective(bare, config, progress=False)
    text = _library_error(info.value, "objective.reference", "objective.features")
    # The command line catches this error at its edge and renders it with its flags.
    line = cli._message(info.value)
    assert line == text.replace("objective.reference", "--ref").replace(
        "objective.features", "--features")
    assert "pass --ref (a folder of real images" in line and "and --features (digits" in line


def test_an_export_with_a_bad_field_names_that_field(tmp_path: Path) -> None:
    data = ExportedSchedule(
        schedule=TuningSchedule(rho_bottom=0.6, rho_top=1.0), nfe=5, sampler="heun", value=12.5,
        baseline_value=20.0, metric="fid", num_samples=64, seed=0,
        model_fingerprint="ab" * 32, study="s",
    ).to_dict()
    path = tmp_path / "rho.json"
    path.write_text(json.dumps({**data, "nfe": "five"}))
    with pytest.raises(ConfigurationError) as info:
        load_exported(path)
    text = _library_error(info.value)
    assert "'nfe'" in text and text.endswith("export it again")
    # The file's own field is no flag: the command line says the same.
    line = _cli_error("sample", "--model", str(DEMO), "--from", str(path), "--device", "cpu",
                      "-o", str(tmp_path / "x.png"))
    assert line == text


def test_a_foreign_error_is_chained(tmp_path: Path) -> None:
    path = tmp_path / "rho.json"
    path.write_text("{not json")
    with pytest.raises(SkiptuneError) as info:
        load_exported(path)
    assert isinstance(info.value.__cause__, json.JSONDecodeError)


# -- how the command line spells fields ------------------------------------------------------


@pytest.mark.parametrize(("message", "fields", "line"), [
    ("db '/tmp/db/x.db' is a folder; pass a file path such as skiptune.db", ("db",),
     "--db '/tmp/db/x.db' is a folder; pass a file path such as skiptune.db"),
    ("study group 'my model' is bad; pass e.g. group mymodel", ("group",),
     "study group 'my model' is bad; pass e.g. --study mymodel"),
    ("it can run code. Pass trust_pickle=True only if you trust it", ("trust_pickle",),
     "it can run code. Pass --trust-pickle only if you trust it"),
    ("grace_period 19 is under two heartbeats (heartbeat_interval 10); pass grace_period 30",
     ("grace_period", "heartbeat_interval"),
     "--grace 19 is under two heartbeats (--heartbeat 10); pass --grace 30"),
    ("space.kind x needs y", ("space.kind", "not_a_flag"), "--space x needs y"),
    ("validation.num_samples 8 is small", (), "validation.num_samples 8 is small"),
])
def test_the_command_line_spells_each_field_as_its_flag(
    message: str, fields: tuple[str, ...], line: str
) -> None:
    assert cli._message(ConfigurationError(message, field=fields)) == line


def test_fields_survive_pickling_to_a_worker() -> None:
    error = StorageError("no database; pass the database it wrote with db", field="db")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.field, copy.fields) == ("db", ("db",))
    assert cli._message(copy) == "no database; pass the database it wrote with --db"


# -- no raised message of the library speaks of flags ----------------------------------------


def _raised_texts(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string constant (an f-string's literal parts joined, ``{}`` for each value)
    inside a ``raise`` statement, with its line."""
    texts = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Raise):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.JoinedStr):
                parts = [v.value if isinstance(v, ast.Constant) else "{}" for v in inner.values]
                texts.append((inner.lineno, "".join(str(p) for p in parts)))
            elif isinstance(inner, ast.Constant) and isinstance(inner.value, str):
                texts.append((inner.lineno, inner.value))
    return texts


def _library_files() -> list[Path]:
    script = PACKAGE / "objectives" / "mnist_reference.py"      # argparse: a script's own
    return [path for path in sorted(PACKAGE.rglob("*.py"))
            if path not in (PACKAGE / "cli.py", script) and "demo" not in path.parts]


def test_no_raised_message_of_the_library_names_a_flag() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {text!r}"
        for path in _library_files()
        for line, text in _raised_texts(ast.parse(path.read_text(), filename=str(path)))
        if FLAG.search(text) or re.search(r"(?<![\w-])--\{\}", text)
    ]
    assert not found, "\n".join(found)


def test_the_static_check_sees_flags_in_plain_and_formatted_messages() -> None:
    tree = ast.parse('raise ValueError(f"--{name} applies"); raise E("pass " "--db x")\n'
                     'x = "--not-raised"')
    texts = [text for _, text in _raised_texts(tree)]
    assert "--{} applies" in texts and "pass --db x" in texts
    assert "--not-raised" not in texts
